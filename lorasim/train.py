"""The training loop: problem + init + solver → Trajectory (a tidy frame of logged metrics).

Step t records the state (A_t, B_t) *before* update t, so row 0 is the init and the
last row (t = steps) is the state after the final update. Divergence (a non-finite
loss, non-finite factors, or a loss above ``diverge_factor``·max(loss₀, 1)) ends the
run with status ``diverged`` and the step where it was seen; it never raises.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Union

import pandas as pd
import torch

from .config import InitConfig, RunConfig, SolverConfig, build, fail
from .inits import Init, make_init
from .metrics import Reference, record, record_risk
from .problems.base import Problem, check_factors
from .solvers import Solver

LEADING_COLUMNS = ["method", "init", "solver", "step", "status"]


@dataclass
class Trajectory:
    method: str
    init: str
    solver: str
    rows: list = field(default_factory=list)
    status: str = "ok"
    diverged_step: Optional[int] = None
    steps: int = 0
    wall_s: float = 0.0
    graph_error: Optional[str] = None  # train_batch: why CUDA-graph capture fell back to eager
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

    def summary(self, eps: float = 1e-10) -> dict:
        """One line per run: final values, best alignment, and iterations to risk < eps."""
        df = pd.DataFrame(self.rows)
        last = df.iloc[-1]
        hit = df.index[df["risk"] < eps]
        has_align = "align_A" in df and df["align_A"].notna().any()
        amin = df["align_A"].idxmin() if has_align else None
        return {
            "method": self.method, "init": self.init, "solver": self.solver, "status": self.status,
            "diverged_step": self.diverged_step, "steps": self.steps,
            "risk_0": float(df["risk"].iloc[0]), "risk_final": float(last["risk"]), "loss_final": float(last["loss"]),
            "align_A_final": float(last.get("align_A", math.nan)),
            "align_A_min": math.nan if amin is None else float(df.loc[amin, "align_A"]),
            "align_A_argmin": math.nan if amin is None else int(df.loc[amin, "step"]),
            "align_A_star_final": float(last.get("align_A_star", math.nan)),
            "steps_to_eps": int(df.loc[hit[0], "step"]) if len(hit) else math.nan,
            "wall_s": self.wall_s,
        }


def _as_solver_config(solver, lr, solver_kwargs) -> SolverConfig:
    if isinstance(solver, SolverConfig):
        if lr is not None or solver_kwargs:
            fail("", "solver", "SolverConfig with extra keywords", "either a SolverConfig or a name with keywords")
        return solver
    values = dict(solver_kwargs, name=solver)
    if lr is not None:
        values["lr"] = lr
    return build(SolverConfig, values, where="solver")


def _resolve_init(problem, init, rank, init_seed, init_kwargs) -> tuple[Init, str]:
    if isinstance(init, Init):
        return init, "custom"
    cfg = init if isinstance(init, InitConfig) else build(InitConfig, dict(init_kwargs or {}, name=init), where="init")
    if rank is None:
        fail("", "rank", rank, "an integer ≥ 1 when a named init is used")
    return make_init(problem, rank, cfg, seed=init_seed), cfg.name


def train(problem: Problem, A0=None, B0=None, *, init: Union[str, InitConfig, Init, None] = None,
          rank: Optional[int] = None, init_seed: int = 0, init_kwargs: Optional[dict] = None,
          solver: Union[str, SolverConfig] = "gd", lr: Optional[float] = None, steps: int = 500,
          log_every: int = 1, method: Optional[str] = None, diverge_factor: float = 1e8,
          progress: bool = False, keep_factors: bool = False, metrics: str = "full",
          **solver_kwargs) -> Trajectory:
    """Train one adapter pair on ``problem`` and log metrics every ``log_every`` steps.

    Start from explicit arrays (``A0``, ``B0``), or a named ``init`` with ``rank`` (and
    ``init_kwargs``, ``init_seed``). ``solver`` is a name (gd, precgd, adam, scaled_adam,
    full_ft) with keyword settings (lr, damping, order, ...) or a ``SolverConfig``.
    ``full_ft`` trains W itself and refuses an init; ``rank`` then sets how many
    singular values are logged. ``keep_factors`` keeps a copy of (A_t, B_t) at every
    logged step in ``Trajectory.factors`` (for small problems and closed-form checks).
    ``metrics="risk"`` logs only loss, risk and the error norms (no SVDs): for long runs
    that only need iteration counts.
    """
    scfg = _as_solver_config(solver, lr, solver_kwargs)
    # The loop's own settings get the same checks as the CLI's run group.
    loop = build(RunConfig, {"rank": 1 if rank is None else rank, "steps": steps, "log_every": log_every,
                             "seed": init_seed, "diverge_factor": diverge_factor, "metrics": metrics}, where="")
    steps, log_every, init_seed, diverge_factor = loop.steps, loop.log_every, loop.seed, loop.diverge_factor
    rank = None if rank is None else loop.rank
    explicit = A0 is not None or B0 is not None
    if explicit and init is not None:
        fail("", "init", init, "None when A0 and B0 are given")
    if scfg.name == "full_ft" and (explicit or init is not None):
        fail("", "init", "explicit A0/B0" if explicit else init, "None with solver full_ft (it starts at W = W0)")

    offset = None
    if scfg.name == "full_ft":
        init_name = "full"
        A0 = torch.zeros(problem.d, problem.k, dtype=problem.dtype, device=problem.device)
        B0 = torch.eye(problem.k, dtype=problem.dtype, device=problem.device)
        n_sv = rank if rank is not None else min(8, problem.d, problem.k)
    elif explicit:
        if A0 is None or B0 is None:
            fail("", "B0" if B0 is None else "A0", None, "an array (give both A0 and B0, or neither)")
        A0, B0 = check_factors(problem, A0, B0)
        init_name, n_sv = "explicit", A0.shape[1]
    else:
        got, init_name = _resolve_init(problem, init if init is not None else "small_random", rank, init_seed, init_kwargs)
        A0, B0, offset = got.A.clone(), got.B.clone(), got.offset
        n_sv = A0.shape[1]
    ref = Reference.from_problem(problem, n_sv) if metrics == "full" else None  # needs G's SVD
    run_problem = problem.shifted(*offset) if offset is not None else problem

    traj = Trajectory(method=method or f"{init_name}+{scfg.name}", init=init_name, solver=scfg.name, steps=steps)
    slv = Solver(scfg)
    state = slv.init(A0, B0)
    A, B = A0, B0
    frozen = slv.freeze_B
    loss0 = None
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=traj.method, leave=False)
    with run_problem.matmul_mode():
        for t in range(steps + 1):
            factors_ok = bool(torch.isfinite(A).all()) and bool(torch.isfinite(B).all())
            if t % log_every == 0 or t == steps or not factors_ok:
                if not factors_ok:
                    row = {"step": t, "loss": math.inf, "risk": math.inf}
                elif metrics == "risk":
                    row = {"step": t, **record_risk(run_problem, A, B)}
                else:
                    row = {"step": t, **record(run_problem, ref, A, B, A0, B0, n_sv, frozen_B=frozen)}
                traj.rows.append(row)
                if keep_factors:
                    traj.factors.append((t, A.clone(), B.clone()))
                loss = row["loss"]
                if loss0 is None:
                    loss0 = loss
                if not factors_ok or not math.isfinite(loss) or loss > diverge_factor * max(loss0, 1.0):
                    traj.status, traj.diverged_step = "diverged", t
                    break
            if t == steps:
                break
            if frozen:  # full fine-tuning: only ∇_W is needed
                gA, gB = run_problem.full_grad(A), None
            else:
                gA, gB = run_problem.grads(A, B)
            A, B = slv.step(A, B, gA, gB, state)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    traj.wall_s = time.perf_counter() - start
    traj.A, traj.B = A, B
    return traj
