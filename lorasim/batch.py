"""Many runs on one problem as one batched computation (the GPU backend's training loop).

Runs that share a problem (same Σ̂, G, ΔW) are stacked along a leading batch dimension,
A: (b, d, r) and B: (b, r, k), and advance together: one kernel stream for all of them, and
on CUDA with float32 factors the linear model reads G once per step for the whole batch
(lorasim.kernels). The runs may differ in init (seed, scale, method), step size and rank;
ranks below the batch's largest are zero-padded, and padding stays exactly zero under every
solver (the zero rows and columns get no gradient, and the preconditioner's Gram gets 1 on
their diagonal).

Between two log steps nothing is copied to the host. On CUDA the steps between logs are
captured once as a CUDA graph and replayed, which removes the launch overhead that dominates
at small d. At a log step the metrics of all runs are computed on the device and copied in one
transfer (metrics.record_batch). Divergence is therefore seen at log steps: a run whose loss
is non-finite or above ``diverge_factor``·max(loss₀, 1) there is marked diverged at that step,
frozen (its factors and step size are zeroed), and the others go on.

``train`` (lorasim.train) is the one-run loop that checks every step; both share the problem's
gradients, the solvers and the metrics, and give the same trajectories (tests/test_batch.py).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Optional, Sequence, Union

import torch

from .config import InitConfig, RunConfig, SolverConfig, build, fail
from .inits import Init, make_init
from .metrics import Reference, record_batch, record_risk_batch
from .problems.base import Problem, check_factors
from .solvers import Solver
from .train import Trajectory, _as_solver_config

GRAPHS = ("auto", "on", "off")


def _resolve(problem: Problem, spec, i: int) -> tuple[torch.Tensor, torch.Tensor, Optional[tuple], str]:
    """One run's start: an Init, an (A0, B0) pair, or a dict {init, rank, seed, **init params}."""
    if isinstance(spec, Init):
        return spec.A, spec.B, spec.offset, "custom"
    if isinstance(spec, dict):
        values = dict(spec)
        name, rank, seed = values.pop("init", "small_random"), values.pop("rank", None), values.pop("seed", 0)
        if rank is None:
            fail(f"inits[{i}]", "rank", rank, "an integer ≥ 1")
        cfg = build(InitConfig, dict(values, name=name), where=f"inits[{i}]")
        got = make_init(problem, rank, cfg, seed=seed)
        return got.A, got.B, got.offset, name
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        A0, B0 = check_factors(problem, *spec)
        return A0, B0, None, "explicit"
    fail("", f"inits[{i}]", type(spec).__name__, "an Init, an (A0, B0) pair, or a dict with init and rank")


def _same_offset(offsets) -> Optional[tuple]:
    first = offsets[0]
    for off in offsets[1:]:
        if (off is None) != (first is None) or (off is not None and not all(
                torch.equal(x, y) for x, y in zip(off, first))):
            fail("", "inits", "runs with different frozen-weight offsets",
                 "runs sharing one problem (offset inits such as lora_ga/pissa batch only with the same offset)")
    return first


def _pad(A0, B0, rank_max):
    r = A0.shape[-1]
    if r == rank_max:
        return A0, B0
    A = torch.nn.functional.pad(A0, (0, rank_max - r))
    B = torch.nn.functional.pad(B0, (0, 0, 0, rank_max - r))
    return A, B


class _Stepper:
    """Advances the stacked factors in place by n steps: eagerly, or by replaying a CUDA graph."""

    def __init__(self, problem: Problem, solver: Solver, A, B, use_graphs: bool):
        self.problem, self.solver, self.A, self.B = problem, solver, A, B
        self.state = solver.init(A, B)
        self.use_graphs = use_graphs
        self.graph_error: Optional[str] = None  # why capture failed, if it did
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def _one(self):
        gA, gB = self.problem.grads(self.A, self.B)
        A_next, B_next = self.solver.step(self.A, self.B, gA, gB, self.state)
        self.A.copy_(A_next)
        self.B.copy_(B_next)

    def _capture(self, n: int) -> torch.cuda.CUDAGraph:
        # Warm up on scratch copies (cuBLAS handles, Triton compilation), never on the run itself.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            scratch = _Stepper(self.problem, self.solver, self.A.clone(), self.B.clone(), False)
            scratch.state = copy.deepcopy(self.state)
            for _ in range(2):
                scratch._one()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(n):
                self._one()
        return graph

    def advance(self, n: int) -> None:
        if self.use_graphs and n not in self.graphs:
            try:
                self.graphs[n] = self._capture(n)
            except RuntimeError as err:  # an op that cannot be captured: run this batch eagerly
                torch.cuda.synchronize()
                self.use_graphs, self.graph_error = False, f"{type(err).__name__}: {err}".splitlines()[0]
        if not self.use_graphs:
            for _ in range(n):
                self._one()
            return
        self.graphs[n].replay()

    def freeze(self, i: int) -> None:
        """Stop run i: zero its factors, step sizes and Adam moments."""
        self.A[i].zero_()
        self.B[i].zero_()
        for lr in (self.solver.lr_A, self.solver.lr_B):
            if isinstance(lr, torch.Tensor):
                lr[i] = 0
        for mom in (self.state.a, self.state.b):
            if mom is not None:
                mom.m[i].zero_()
                mom.v[i].zero_()


@contextlib.contextmanager
def capturable_linalg(device):
    """On CUDA, route small batched solves to cuSOLVER/cuBLAS: torch's MAGMA path for batched
    LU solves cannot be captured in a CUDA graph. Eager and captured steps use the same library."""
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cuda.preferred_linalg_library()
    torch.backends.cuda.preferred_linalg_library("cusolver")
    try:
        yield
    finally:
        torch.backends.cuda.preferred_linalg_library(old)


def train_batch(problem: Problem, inits: Sequence[Union[Init, tuple, dict]], *,
                solver: Union[str, SolverConfig] = "gd", lr: Union[float, Sequence[float], None] = None,
                steps: int = 500, log_every: int = 1, methods: Optional[Sequence[str]] = None,
                diverge_factor: float = 1e8, metrics: str = "full", graphs: str = "auto",
                progress: bool = False, **solver_kwargs) -> list[Trajectory]:
    """Train ``len(inits)`` adapter pairs on ``problem`` together; one Trajectory per run.

    ``inits``: each an ``Init`` (from lorasim.make_init), an (A0, B0) pair, or a dict such as
    ``{"init": "small_random", "rank": 8, "seed": 3, "alpha": 1e-4}``. ``lr``: one step size or
    one per run. ``solver`` and its keywords are shared (gd, precgd, adam, scaled_adam; full
    fine-tuning has no factors to batch). ``graphs``: "auto" captures CUDA graphs on CUDA
    unless the solver depends on the step count (Adam with bias correction); "on" insists;
    "off" runs eagerly. Each Trajectory's ``wall_s`` is the whole batch's wall time.
    ``progress``: a tqdm bar over the steps on stderr (as ``train``'s), advanced at log steps.
    """
    scfg = _as_solver_config(solver, None, solver_kwargs)
    if scfg.name == "full_ft":
        fail("", "solver", "full_ft", "gd, precgd, adam or scaled_adam (full fine-tuning has no factors to batch)")
    loop = build(RunConfig, {"rank": 1, "steps": steps, "log_every": log_every,
                             "diverge_factor": diverge_factor, "metrics": metrics}, where="")
    if graphs not in GRAPHS:
        fail("", "graphs", graphs, "one of " + ", ".join(GRAPHS))
    if len(inits) < 1:
        fail("", "inits", "[]", "at least one run")
    b = len(inits)
    lrs = [scfg.lr] * b if lr is None else ([float(lr)] * b if isinstance(lr, (int, float)) else list(lr))
    if len(lrs) != b or not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in lrs):
        fail("", "lr", lr, f"a positive number or {b} positive numbers (one per run)")
    if methods is not None and len(methods) != b:
        fail("", "methods", methods, f"{b} names (one per run) or None")

    starts = [_resolve(problem, spec, i) for i, spec in enumerate(inits)]
    offset = _same_offset([s[2] for s in starts])
    ranks = [s[0].shape[-1] for s in starts]
    rank_max = max(ranks)
    padded = [_pad(s[0], s[1], rank_max) for s in starts]
    A = torch.stack([p[0] for p in padded]).contiguous()
    B = torch.stack([p[1] for p in padded]).contiguous()
    A0, B0 = A.clone(), B.clone()
    run_problem = problem.shifted(*offset) if offset is not None else problem
    dev = problem.device

    slv = Solver(scfg)
    slv.set_lr(torch.tensor(lrs, dtype=problem.dtype, device=dev)[:, None, None])
    if slv.precond is not None and rank_max > min(ranks):
        pad_rows = torch.arange(rank_max, device=dev)[None, :] >= torch.tensor(ranks, device=dev)[:, None]
        slv.precond.shift = torch.diag_embed(pad_rows.to(problem.dtype))
    use_graphs = graphs == "on" or (graphs == "auto" and dev.type == "cuda" and not slv.step_dependent)
    if use_graphs and (dev.type != "cuda" or slv.step_dependent):
        fail("", "graphs", graphs, "auto or off (CUDA graphs need a CUDA problem and a solver without "
             "Adam's bias correction)")

    names = list(methods) if methods is not None else [f"{s[3]}+{scfg.name}" for s in starts]
    trajs = [Trajectory(method=names[i], init=starts[i][3], solver=scfg.name, steps=loop.steps) for i in range(b)]
    # Alignment is measured in the top-r_align subspace, r_align = min(r*, rank): runs group by it.
    refs, group_of = {}, []
    if metrics == "full":
        for r in ranks:
            ref = Reference.from_problem(problem, r)
            refs.setdefault(ref.r_align, ref)
            group_of.append(ref.r_align)
    alive = list(range(b))
    loss0: list[Optional[float]] = [None] * b
    stepper = _Stepper(run_problem, slv, A, B, use_graphs)

    def log(t: int) -> None:
        finite = torch.isfinite(A).flatten(1).all(1) & torch.isfinite(B).flatten(1).all(1)
        finite = finite.tolist()
        rows: dict[int, dict] = {}
        ok = [i for i in alive if finite[i]]
        if metrics == "risk" and ok:
            rows.update(zip(ok, record_risk_batch(run_problem, A[ok], B[ok])))
        elif ok:
            for r_align in sorted({group_of[i] for i in ok}):
                idx = [i for i in ok if group_of[i] == r_align]
                got = record_batch(run_problem, refs[r_align], A[idx], B[idx], A0[idx], B0[idx], rank_max)
                rows.update(zip(idx, got))
            for i in ok:  # a padded run reports its own singular values only
                for j in range(ranks[i] + 1, rank_max + 1):
                    del rows[i][f"sv_A_{j}"], rows[i][f"sv_B_{j}"]
        for i in list(alive):
            row = {"step": t, **rows[i]} if finite[i] else {"step": t, "loss": math.inf, "risk": math.inf}
            trajs[i].rows.append(row)
            loss = row["loss"]
            if loss0[i] is None:
                loss0[i] = loss
            if not finite[i] or not math.isfinite(loss) or loss > loop.diverge_factor * max(loss0[i], 1.0):
                trajs[i].status, trajs[i].diverged_step = "diverged", t
                alive.remove(i)
                stepper.freeze(i)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        desc = names[0] if b == 1 else f"{b} runs: {', '.join(names)}"
        bar = tqdm(total=loop.steps, desc=desc if len(desc) <= 40 else desc[:39] + "…", unit="step", leave=False)
    start = time.perf_counter()
    with problem.matmul_mode(), capturable_linalg(dev):
        t = 0
        log(0)
        while t < loop.steps and alive:
            n = min(loop.log_every, loop.steps - t)
            stepper.advance(n)
            t += n
            log(t)
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - start
    for i, tr in enumerate(trajs):
        tr.wall_s = wall
        tr.graph_error = stepper.graph_error
        tr.A, tr.B = A[i, :, :ranks[i]].clone(), B[i, :ranks[i]].clone()
    return trajs
