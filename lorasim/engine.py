"""The training loop: problem + starts + solver → one Trajectory (a tidy frame) per run.

``train_batch`` advances several runs that share a problem (same Σ̂, G, ΔW) together, stacked
along a leading batch dimension, A: (b, d, r) and B: (b, r, k); ``train`` is the same loop on one
run, whose factors keep no batch dimension (so its products are the plain 2-D ones). Runs may
differ in init, step size and rank: ranks below the batch's largest are zero-padded, and padding
stays exactly zero under every solver (no gradient reaches it, and the preconditioner's Gram gets
1 on its diagonal).

Step t records the state (A_t, B_t) *before* update t: row 0 is the init, the last row the state
after the final update. Rows are logged every ``log_every`` steps and at the last step. Then:

- **divergence** (the one rule): non-finite factors, or a logged loss (the risk under ``metrics=align`` and
  ``figure``, which log no loss) that is non-finite or above ``diverge_factor``·max(loss₀, 1), ends a run with
  status ``diverged`` at that step; it never raises. Factors are checked every step on the eager path,
  at log steps under CUDA graphs.
- **stop** (``stop=``): a rule on each logged row (``risk_below(ε)``, ``plateau(n)``, or any
  callable row → bool) ends a run at that row, with ``stopped_step`` set.

An ended run of a batch is frozen (its factors and its slice of the solver state are zeroed) while
the others go on; the batch ends when all have ended. Between log steps nothing is copied to the
host; on CUDA those steps are captured once as a CUDA graph and replayed (at small d the launch
overhead dominates otherwise). A log step keeps a copy of the runs' factors; the rows of many log
steps are computed later in one batched pass over steps × runs on the device (metrics.record_batch,
record_lean_batch, record_align_batch, record_figure_batch, record_risk_batch: the column sets of
``metrics=``), in the storage dtype's full precision (under dtype tf32 only training's products take tf32),
and the rules above are then applied to them in step order, so every row, stop and divergence is what a
row-by-row loop gives.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Sequence, Union

import pandas as pd
import torch

from .config import Config, InitConfig, build, checked, fail, register
from .inits import Init, make_init
from .linalg import finite_sum_check, slot_copier
from .metrics import (METRIC_SETS, AlignmentTargets, record_align_batch, record_batch, record_figure_batch,
                      record_lean_batch, record_risk_batch)
from .problems.base import Problem, check_factors
from .solvers import Solver, SolverConfig, make_solver

# The column sets whose rows come from the r×r Grams of the factors (metrics.METRIC_SETS), and no loss in two of them.
GRAM_ROWS = {"lean": record_lean_batch, "align": record_align_batch, "figure": record_figure_batch}
NO_LOSS = ("align", "figure")

GRAPHS = ("auto", "on", "off")
# Logged states are kept and their rows computed together, one batched pass over steps × runs: at every-step
# logging the per-row cost is then the linear algebra, not the launch of ~40 small ops per row. A flush comes
# at least every LOG_CHUNK_STEPS steps (an ended run steps on until then, its extra steps discarded: runs of a
# batch share no state) or when the kept factors reach LOG_BUFFER_BYTES; a batched pass takes at most
# METRIC_BLOCK_ELEMS scratch elements (Problem.metric_elems per run).
LOG_CHUNK_STEPS = 256
LOG_BUFFER_BYTES = 64 * 2**20
METRIC_BLOCK_ELEMS = 2**22


@register("run", "default")
@dataclass
class RunConfig(Config):
    rank: int = checked(8, "int", 1)  # LoRA rank r
    steps: int = checked(500, "int", 0)
    log_every: int = checked(1, "int", 1)
    seed: int = checked(0, "int", 0)  # init seed; the problem has its own (problem.seed)
    risk_eps: float = checked(1e-10, "num", 0, lo_open=True)  # risk threshold for "iterations to ε" (steps_to_eps)
    diverge_factor: float = checked(1e8, "num", 1, lo_open=True)  # a loss above this × max(loss₀, 1) diverged
    quiet: bool = checked(False, "bool")
    metrics: str = checked("full", "choice", METRIC_SETS)  # the logged columns (metrics.METRIC_SETS)
    figure: bool = checked(True, "bool")  # draw figure.png per run (a sweep's aggregate draws its own figures)
    threads: Any = checked("auto", "int", 1, allow=("auto",))  # torch CPU threads: "auto" (the job's share) or N ≥ 1
    eps: Optional[float] = checked(None, "renamed", "risk_eps")  # deprecated (0.2 name of risk_eps)
    where: ClassVar[str] = "run"


@dataclass
class Trajectory:
    method: str
    init: str
    solver: str
    rows: list = field(default_factory=list)
    status: str = "ok"
    diverged_step: Optional[int] = None
    stopped_step: Optional[int] = None  # where a stop= rule ended the run
    steps: int = 0
    wall_s: float = 0.0
    graph_error: Optional[str] = None  # why CUDA-graph capture fell back to eager, if it did
    A: Optional[torch.Tensor] = None
    B: Optional[torch.Tensor] = None
    factors: list = field(default_factory=list)  # (step, A_t, B_t) at logged steps, with keep_factors

    def to_frame(self) -> pd.DataFrame:
        """One row per logged step; see README 'Outputs' for the columns."""
        df = pd.DataFrame(self.rows)
        df.insert(0, "method", self.method)
        df.insert(1, "init", self.init)
        df.insert(2, "solver", self.solver)
        df.insert(4, "status", self.status)
        return df

    def summary(self, risk_eps: float = 1e-10) -> dict:
        """One line per run: final values, best alignment, and iterations to risk < risk_eps."""
        df = pd.DataFrame(self.rows)
        last = df.iloc[-1]
        hit = df.index[df["risk"] < risk_eps]
        has_align = "align_A" in df and df["align_A"].notna().any()
        amin = df["align_A"].idxmin() if has_align else None
        return {
            "method": self.method, "init": self.init, "solver": self.solver, "status": self.status,
            "diverged_step": self.diverged_step, "steps": self.steps,
            "risk_0": float(df["risk"].iloc[0]), "risk_final": float(last["risk"]),
            "loss_final": float(last.get("loss", math.nan)),  # metrics=align and figure log no loss
            "align_A_final": float(last.get("align_A", math.nan)),
            "align_A_min": math.nan if amin is None else float(df.loc[amin, "align_A"]),
            "align_A_argmin": math.nan if amin is None else int(df.loc[amin, "step"]),
            "align_A_star_final": float(last.get("align_A_star", math.nan)),
            "steps_to_eps": int(df.loc[hit[0], "step"]) if len(hit) else math.nan,
            "wall_s": self.wall_s,
        }


def all_finite(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Whether each run's factors (A: b×d×r, B: b×r×k) are all finite, as a (b,) bool tensor. A run's sum
    is non-finite when one of its entries is, so the exact check runs only where a sum is not finite (a
    finite overflow only costs that check): one reduction instead of an elementwise test."""
    ok = torch.isfinite(A.flatten(1).sum(1) + B.flatten(1).sum(1))
    if not bool(ok.all()):
        ok = torch.isfinite(A).flatten(1).all(1) & torch.isfinite(B).flatten(1).all(1)
    return ok


def check_metrics(problem: Problem, metrics: str, where: str = "") -> None:
    """metrics=align and figure log no loss, so their risk is the divergence signal: refused where ΔW is unknown
    (NaN)."""
    if metrics in NO_LOSS and problem.delta_L is None:
        fail(where, "metrics", metrics, f"full, lean or risk: {metrics} logs no loss, and its risk needs a known ΔW, "
             "which this problem has not")


def diverged(loss: float, loss0: float, factor: float = 1e8) -> bool:
    """The divergence rule (the theory loop's and the LLM loop's): a loss that is not finite, or
    above ``factor``·max(loss₀, 1)."""
    return not math.isfinite(loss) or loss > factor * max(loss0, 1.0)


# -- stop rules: each run gets its own copy (a rule may keep state, as plateau does) -------------------
@dataclass
class risk_below:
    """Stop at the first logged row with risk < eps (iterations to ε)."""

    eps: float

    def __call__(self, row: dict) -> bool:
        return row["risk"] < self.eps


@dataclass
class plateau:
    """Stop once no new minimum of ``column`` has come for ``steps`` steps (the round-off floor)."""

    steps: int
    column: str = "risk"
    _best: float = math.inf
    _best_step: int = 0

    def __call__(self, row: dict) -> bool:
        if row[self.column] < self._best:
            self._best, self._best_step = row[self.column], row["step"]
        return row["step"] - self._best_step >= self.steps


# -- starts: the one init description ------------------------------------------------------------------
@dataclass
class Start:
    A: torch.Tensor
    B: torch.Tensor
    offset: Optional[tuple]  # (L, R): the run's frozen weight is W0 − L R (offset inits)
    init: str  # the init's name in the frame
    n_sv: int  # singular values logged per factor


def resolve_start(problem: Problem, start, where: str = "inits", full_weight: bool = False) -> Start:
    """One run's start: an ``Init``, an (A0, B0) pair, or a dict ``{init, rank, seed, **init params}``.

    ``full_weight`` (full fine-tuning): None or ``{"rank": r}`` (how many singular values are logged);
    the run starts at A = W − W0 = 0 (d×k) with B = I_k, which the solver never moves."""
    if full_weight:
        if not (start is None or (isinstance(start, dict) and set(start) <= {"rank"})):
            fail("", where, start, "None or {'rank': r} with solver full_ft (it starts at W = W0)")
        n_sv = (start or {}).get("rank") or min(8, problem.d, problem.k)
        A = torch.zeros(problem.d, problem.k, dtype=problem.dtype, device=problem.device)
        return Start(A, torch.eye(problem.k, dtype=problem.dtype, device=problem.device), None, "full", n_sv)
    if isinstance(start, Init):
        return Start(start.A, start.B, start.offset, "custom", start.A.shape[-1])
    if isinstance(start, dict):
        values = dict(start)
        name, rank, seed = values.pop("init", "small_random"), values.pop("rank", None), values.pop("seed", 0)
        if rank is None:
            fail(where, "rank", rank, "an integer ≥ 1")
        cfg = build(InitConfig, dict(values, name=name), where=where)
        got = make_init(problem, rank, cfg, seed=seed)
        return Start(got.A, got.B, got.offset, name, got.A.shape[-1])
    if isinstance(start, (tuple, list)) and len(start) == 2:
        A0, B0 = check_factors(problem, *start)
        return Start(A0, B0, None, "explicit", A0.shape[-1])
    fail("", where, type(start).__name__, "an Init, an (A0, B0) pair, or a dict with init and rank")


def _same_offset(offsets) -> Optional[tuple]:
    first = offsets[0]
    for off in offsets[1:]:
        if (off is None) != (first is None) or (off is not None and not all(
                torch.equal(x, y) for x, y in zip(off, first))):
            fail("", "inits", "runs with different frozen-weight offsets",
                 "runs sharing one problem (offset inits such as lora_ga/pissa batch only with the same offset)")
    return first


def _padded(start: Start, rank_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    pad = rank_max - start.A.shape[-1]
    if pad == 0:
        return start.A, start.B
    return torch.nn.functional.pad(start.A, (0, pad)), torch.nn.functional.pad(start.B, (0, 0, 0, pad))


def as_solver_config(solver, lr=None, solver_kwargs=None) -> SolverConfig:
    """A ``SolverConfig``, or a name with keyword settings (lr, damping, order, ...)."""
    if isinstance(solver, SolverConfig):
        if lr is not None or solver_kwargs:
            fail("", "solver", "SolverConfig with extra keywords", "either a SolverConfig or a name with keywords")
        return solver
    values = dict(solver_kwargs or {}, name=solver)
    if lr is not None:
        values["lr"] = lr
    return build(SolverConfig, values, where="solver")


# -- stepping --------------------------------------------------------------------------------------------
class Stepper:
    """Advances the factors in place by n steps: eagerly, or by replaying a captured CUDA graph.

    ``on_step(taken)`` (eager only) is called after every step; returning False ends ``advance`` early."""

    def __init__(self, problem: Problem, solver: Solver, A, B, use_graphs: bool = False):
        self.problem, self.solver, self.A, self.B = problem, solver, A, B
        self.state = solver.init(A, B)
        self.use_graphs = use_graphs
        self.graph_error: Optional[str] = None  # why capture failed, if it did
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def step(self) -> None:
        if self.solver.descend_in_place(self.problem.descend, self.A, self.B, self.state):
            return
        if self.solver.trains_B:
            gA, gB = self.problem.grads(self.A, self.B)
        else:  # full fine-tuning: only ∇_W is needed
            gA, gB = self.problem.full_grad(self.A), None
        self.solver.step_(self.A, self.B, gA, gB, self.state)

    def _capture(self, n: int) -> torch.cuda.CUDAGraph:
        # Warm up on scratch copies (cuBLAS handles, Triton compilation), never on the run itself.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            scratch = Stepper(self.problem, self.solver, self.A.clone(), self.B.clone())
            scratch.state = copy.deepcopy(self.state)
            for _ in range(2):
                scratch.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(n):
                self.step()
        return graph

    def advance(self, n: int, on_step: Optional[Callable[[int], bool]] = None) -> int:
        """Take up to n steps; returns how many were taken."""
        if self.use_graphs and n not in self.graphs:
            try:
                self.graphs[n] = self._capture(n)
            except RuntimeError as err:  # an op that cannot be captured: run this batch eagerly
                torch.cuda.synchronize()
                self.use_graphs, self.graph_error = False, f"{type(err).__name__}: {err}".splitlines()[0]
        if self.use_graphs:
            self.graphs[n].replay()
            return n
        for i in range(n):
            self.step()
            if on_step is not None and not on_step(i + 1):
                return i + 1
        return n

    def freeze(self, i: int) -> None:
        """Stop run i of a batch: zero its factors and its slice of the solver state."""
        self.A[i].zero_()
        self.B[i].zero_()
        self.solver.freeze(self.state, i)


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


# -- the loop --------------------------------------------------------------------------------------------
def run(problem: Problem, starts: Sequence[Start], solver: SolverConfig, *, lrs: Optional[Sequence[float]] = None,
        stacked: bool = True, steps: int = 500, log_every: int = 1, methods: Optional[Sequence[str]] = None,
        diverge_factor: float = 1e8, metrics: str = "full", graphs: str = "auto", progress: bool = False,
        keep_factors: bool = False, stop=None) -> list[Trajectory]:
    """Train ``starts`` on ``problem`` together; ``stacked=False`` (one start) keeps 2-D factors."""
    b = len(starts)
    check_metrics(problem, metrics)
    offset = _same_offset([s.offset for s in starts])
    ranks = [s.A.shape[-1] for s in starts]
    rank_max = max(ranks)
    run_problem = problem.shifted(*offset) if offset is not None else problem
    dev = problem.device
    rules = [] if stop is None else list(stop) if isinstance(stop, (list, tuple)) else [stop]
    if not all(callable(rule) for rule in rules):
        fail("", "stop", stop, "risk_below(eps), plateau(steps), a callable row -> bool, or a list of these")
    names = list(methods) if methods is not None else [f"{s.init}+{solver.name}" for s in starts]
    trajs = [Trajectory(method=names[i], init=starts[i].init, solver=solver.name, steps=steps) for i in range(b)]

    if stacked:
        padded = [_padded(s, rank_max) for s in starts]
        A = torch.stack([p[0] for p in padded]).contiguous()
        B = torch.stack([p[1] for p in padded]).contiguous()
        lr = torch.tensor(list(lrs) if lrs is not None else [solver.lr] * b, dtype=problem.dtype, device=dev)
        lr = lr[:, None, None]
        shift = None
        if rank_max > min(ranks):
            pad_rows = torch.arange(rank_max, device=dev)[None, :] >= torch.tensor(ranks, device=dev)[:, None]
            shift = torch.diag_embed(pad_rows.to(problem.dtype))
        slv = make_solver(solver, lr=lr, gram_shift=shift)
    else:
        A, B = starts[0].A.clone(), starts[0].B.clone()
        slv = make_solver(solver, lr=None if lrs is None else lrs[0])
    A0, B0 = A.clone(), B.clone()
    as_batch = (lambda X: X) if stacked else (lambda X: X[None])
    use_graphs = graphs == "on" or (graphs == "auto" and dev.type == "cuda" and not slv.step_dependent)
    if use_graphs and (dev.type != "cuda" or slv.step_dependent):
        fail("", "graphs", graphs, "auto or off (CUDA graphs need a CUDA problem and a solver without "
             "Adam's bias correction)")

    # Alignment is measured in the top-r_align subspace, r_align = min(r*, rank): runs group by it.
    n_sv = [s.n_sv for s in starts]
    sv_max = max(n_sv)
    refs, group_of = {}, []
    if metrics != "risk":
        for r in n_sv:
            ref = AlignmentTargets.from_problem(problem, r)
            refs.setdefault(ref.r_align, ref)
            group_of.append(ref.r_align)
    alive = list(range(b))
    loss0: list[Optional[float]] = [None] * b
    signals = ("risk",) if metrics in NO_LOSS else ("loss", "risk")  # the divergence rule reads the first
    run_stops = [[copy.deepcopy(rule) for rule in rules] for _ in range(b)]
    stepper = Stepper(run_problem, slv, A, B, use_graphs)
    factors_sum_finite = finite_sum_check(A, B)

    # Logged states wait in a preallocated buffer (slot n: the whole batch at the n-th pending log step), so
    # keeping a state is one copy and a flush reads it in place.
    bA, bB = as_batch(A), as_batch(B)
    bytes_per_log = (bA.numel() + bB.numel()) * bA.element_size()
    capacity = max(1, min(LOG_CHUNK_STEPS // log_every + 2, LOG_BUFFER_BYTES // bytes_per_log))
    kept_A, kept_B = bA.new_empty((capacity, *bA.shape)), bB.new_empty((capacity, *bB.shape))
    keep = slot_copier((kept_A, bA), (kept_B, bB))
    pending: list = []  # (step, runs logged) per slot
    block = max(1, METRIC_BLOCK_ELEMS // max(1, run_problem.metric_elems(rank_max)))

    def end(i: int, t: int, diverged: bool, A_t, B_t) -> None:
        """End run i at step t; its result is its state at t (A_t, B_t), not the live factors, which may
        have gone on to the flush."""
        if diverged:
            trajs[i].status, trajs[i].diverged_step = "diverged", t
        else:
            trajs[i].stopped_step = t
        alive.remove(i)
        trajs[i].A, trajs[i].B = A_t[..., :ranks[i]].clone(), B_t[..., :ranks[i], :].clone()
        if stacked:
            stepper.freeze(i)

    def log(t: int, only: Optional[list] = None) -> None:
        """Keep the state of the runs at step t (all alive ones, or ``only``) for the next flush."""
        if len(pending) == capacity:
            flush()
        keep(len(pending))
        pending.append((t, list(alive) if only is None else only))

    def take(X, idx: Optional[list]):
        if idx is None:
            return X
        if idx == list(range(idx[0], idx[0] + len(idx))):  # a block of consecutive rows: a view, no copy
            return X[idx[0]:idx[0] + len(idx)]
        return X.index_select(0, torch.tensor(idx, device=dev))

    def rows_of(As, Bs, runs: list) -> list:
        """The metric rows of the states (As[j], Bs[j]) of runs[j], batched by alignment group and block."""
        out: list = [None] * len(runs)
        groups: dict = {}
        for j, i in enumerate(runs):
            groups.setdefault(0 if metrics == "risk" else group_of[i], []).append(j)
        for g, members in sorted(groups.items()):
            for at in range(0, len(members), block):
                js = members[at:at + block]
                whole = len(js) == len(runs)  # one pass over everything: no gathering copy
                fa, fb = take(As, None if whole else js), take(Bs, None if whole else js)
                if metrics == "risk":
                    got = record_risk_batch(run_problem, fa, fb)
                elif metrics in GRAM_ROWS:
                    got = GRAM_ROWS[metrics](run_problem, refs[g], fa, fb, frozen_B=not slv.trains_B)
                else:
                    who = [runs[j] for j in js]
                    got = record_batch(run_problem, refs[g], fa, fb, take(as_batch(A0), who), take(as_batch(B0), who),
                                       max(n_sv[i] for i in who), frozen_B=not slv.trains_B)
                for j, row in zip(js, got):
                    if n_sv[runs[j]] < sv_max:  # a padded run reports its own values only
                        for m in range(n_sv[runs[j]] + 1, sv_max + 1):
                            row.pop(f"sv_A_{m}", None), row.pop(f"sv_B_{m}", None)
                    out[j] = row
        return out

    def flush() -> None:
        """Compute every pending row in one batched pass, then apply the divergence and stop rules to
        them in step order, as if each row had been checked when it was logged."""
        if not pending:
            return
        nb = bA.shape[0]
        pairs = [(t, i, n * nb + i) for n, (t, runs) in enumerate(pending) for i in runs]  # (step, run, flat index)
        flat = [p for _, _, p in pairs]
        everything = flat == list(range(len(pending) * nb))
        As = take(kept_A[:len(pending)].flatten(0, 1), None if everything else flat)
        Bs = take(kept_B[:len(pending)].flatten(0, 1), None if everything else flat)
        pending.clear()
        finite = all_finite(As, Bs).tolist()
        ok = [j for j, f in enumerate(finite) if f]
        clean = len(ok) == len(finite)
        with run_problem.matmul_mode(training=False):
            rows = dict(zip(ok, rows_of(take(As, None if clean else ok), take(Bs, None if clean else ok),
                                        [pairs[j][1] for j in ok]))) if ok else {}
        signal = signals[0]
        for j, (t, i, _) in enumerate(pairs):
            if i not in alive:  # ended at an earlier row of this flush
                continue
            row = {"step": t, **rows[j]} if finite[j] else {"step": t, **{c: math.inf for c in signals}}
            trajs[i].rows.append(row)
            if keep_factors:
                trajs[i].factors.append((t, As[j].clone(), Bs[j].clone()))
            loss = row[signal]
            if loss0[i] is None:
                loss0[i] = loss
            if not finite[j] or diverged(loss, loss0[i], diverge_factor):
                end(i, t, True, As[j], Bs[j])
            elif run_stops[i] and any([rule(row) for rule in run_stops[i]]):  # every rule sees every row
                end(i, t, False, As[j], Bs[j])

    def log_and_maybe_flush(t: int) -> None:
        log(t)
        if t >= steps or t - pending[0][0] >= LOG_CHUNK_STEPS or len(pending) == capacity:
            flush()

    def factors_finite(t: int) -> bool:
        """After each eager step (each log step under CUDA graphs): a run whose factors went non-finite
        is logged and ended now, so no solver ever steps from non-finite factors. One reduction per
        factor finds whether any run did (a sum is non-finite when any term is; a finite overflow only
        costs the exact check)."""
        if factors_sum_finite():
            return True
        flush()
        fa, fb = as_batch(A), as_batch(B)
        bad = (~all_finite(fa, fb)).tolist()
        gone = [i for i in alive if bad[i]]
        if gone:
            log(t, only=gone)
            flush()
        return bool(alive) and not gone  # a flush may have ended every run (a single run is never frozen)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        desc = names[0] if b == 1 else f"{b} runs: {', '.join(names)}"
        bar = tqdm(total=steps, desc=desc if len(desc) <= 40 else desc[:39] + "…", unit="step", leave=False)
    start = time.perf_counter()
    with problem.matmul_mode(), capturable_linalg(dev):
        log_and_maybe_flush(0)
        t = 0
        while t < steps and alive:
            target = min((t // log_every + 1) * log_every, steps)  # the next log step
            first = t
            t += stepper.advance(target - t, lambda taken: factors_finite(first + taken))
            if stepper.use_graphs and alive:  # a graph's steps were not checked one by one
                factors_finite(t)
            if t == target and alive:
                log_and_maybe_flush(t)
            if bar is not None:
                bar.update(t - first)
        flush()
    if bar is not None:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    wall = time.perf_counter() - start
    for i, tr in enumerate(trajs):
        tr.wall_s = wall
        tr.graph_error = stepper.graph_error
        if tr.A is None:  # still running at the last step (an ended run kept its factors at the end)
            tr.A, tr.B = (A[i, :, :ranks[i]].clone(), B[i, :ranks[i]].clone()) if stacked else (A, B)
    return trajs


def _loop_settings(steps, log_every, diverge_factor, metrics, graphs, rank=1, seed=0) -> RunConfig:
    # The loop's own settings get the same checks as the CLI's run group, before any compute.
    if graphs not in GRAPHS:
        fail("", "graphs", graphs, "one of " + ", ".join(GRAPHS))
    return build(RunConfig, {"rank": rank, "steps": steps, "log_every": log_every, "seed": seed,
                             "diverge_factor": diverge_factor, "metrics": metrics}, where="")


def train_batch(problem: Problem, inits: Sequence[Union[Init, tuple, dict]], *,
                solver: Union[str, SolverConfig] = "gd", lr: Union[float, Sequence[float], None] = None,
                steps: int = 500, log_every: int = 1, methods: Optional[Sequence[str]] = None,
                diverge_factor: float = 1e8, metrics: str = "full", graphs: str = "auto",
                progress: bool = False, keep_factors: bool = False, stop=None, **solver_kwargs) -> list[Trajectory]:
    """Train ``len(inits)`` adapter pairs on ``problem`` together; one Trajectory per run.

    ``inits``: each an ``Init`` (from lorasim.make_init), an (A0, B0) pair, or a dict such as
    ``{"init": "small_random", "rank": 8, "seed": 3, "alpha": 1e-4}``. ``lr``: one step size or
    one per run. ``solver`` and its keywords are shared (gd, precgd, adam, scaled_adam, or full_ft,
    whose runs start at W = W0: each init None or ``{"rank": r}``). ``graphs``: "auto" captures
    CUDA graphs on CUDA unless the solver depends on the step count (Adam with bias correction);
    "on" insists; "off" runs eagerly. ``stop``: see the module docstring. Each Trajectory's
    ``wall_s`` is the batch's.
    """
    scfg = as_solver_config(solver, None, solver_kwargs)
    loop = _loop_settings(steps, log_every, diverge_factor, metrics, graphs)
    if len(inits) < 1:
        fail("", "inits", "[]", "at least one run")
    b = len(inits)
    lrs = [scfg.lr] * b if lr is None else ([float(lr)] * b if isinstance(lr, (int, float)) else list(lr))
    if len(lrs) != b or not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in lrs):
        fail("", "lr", lr, f"a positive number or {b} positive numbers (one per run)")
    if methods is not None and len(methods) != b:
        fail("", "methods", methods, f"{b} names (one per run) or None")
    starts = [resolve_start(problem, s, f"inits[{i}]", scfg.name == "full_ft") for i, s in enumerate(inits)]
    return run(problem, starts, scfg, lrs=lrs, steps=loop.steps, log_every=loop.log_every, methods=methods,
               diverge_factor=loop.diverge_factor, metrics=metrics, graphs=graphs, progress=progress,
               keep_factors=keep_factors, stop=stop)


def train(problem: Problem, A0=None, B0=None, *, init: Union[str, dict, tuple, InitConfig, Init, None] = None,
          rank: Optional[int] = None, init_seed: int = 0, init_kwargs: Optional[dict] = None,
          solver: Union[str, SolverConfig] = "gd", lr: Optional[float] = None, steps: int = 500,
          log_every: int = 1, method: Optional[str] = None, diverge_factor: float = 1e8,
          progress: bool = False, keep_factors: bool = False, metrics: str = "full", stop=None,
          graphs: str = "off", **solver_kwargs) -> Trajectory:
    """Train one adapter pair on ``problem``: ``train_batch``'s loop on a batch of one.

    The start is what ``train_batch`` takes for one run (``init=`` a dict such as
    ``{"init": "spectral", "rank": 4, "seed": 0, "zeta": 1.0}``, an ``Init``, or an (A0, B0) pair),
    or, equivalently, explicit ``A0``, ``B0``, or a named ``init`` with ``rank``, ``init_kwargs`` and
    ``init_seed``. ``solver`` is a name (gd, precgd, adam, scaled_adam, full_ft) with keyword
    settings (lr, damping, order, ...) or a ``SolverConfig``. ``full_ft`` trains W itself and
    refuses an init; ``rank`` then sets how many singular values are logged. ``keep_factors``
    keeps (A_t, B_t) at every logged step in ``Trajectory.factors``. ``metrics="risk"`` logs only
    loss, risk and the error norms (no SVDs). ``stop``: see the module docstring.
    """
    scfg = as_solver_config(solver, lr, solver_kwargs)
    loop = _loop_settings(steps, log_every, diverge_factor, metrics, graphs, 1 if rank is None else rank, init_seed)
    rank = None if rank is None else loop.rank
    explicit = A0 is not None or B0 is not None
    if explicit and init is not None:
        fail("", "init", init, "None when A0 and B0 are given")
    if scfg.name == "full_ft" and (explicit or init is not None):
        fail("", "init", "explicit A0/B0" if explicit else init, "None with solver full_ft (it starts at W = W0)")

    if scfg.name == "full_ft":
        start = resolve_start(problem, None if rank is None else {"rank": rank}, full_weight=True)
    elif explicit:
        if A0 is None or B0 is None:
            fail("", "B0" if B0 is None else "A0", None, "an array (give both A0 and B0, or neither)")
        start = resolve_start(problem, (A0, B0))
    elif isinstance(init, (Init, dict, tuple, list)):
        start = resolve_start(problem, init, "init")
    else:
        cfg = init if isinstance(init, InitConfig) else build(
            InitConfig, dict(init_kwargs or {}, name=init if init is not None else "small_random"), where="init")
        if rank is None:
            fail("", "rank", rank, "an integer ≥ 1 when a named init is used")
        got = make_init(problem, rank, cfg, seed=init_seed)
        start = Start(got.A.clone(), got.B.clone(), got.offset, cfg.name, got.A.shape[-1])
    return run(problem, [start], scfg, stacked=False, steps=loop.steps, log_every=loop.log_every,
               methods=None if method is None else [method], diverge_factor=loop.diverge_factor, metrics=metrics,
               graphs=graphs, progress=progress, keep_factors=keep_factors, stop=stop)[0]
