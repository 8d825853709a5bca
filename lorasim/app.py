"""The ``lorasim`` hydra app: one problem, several (init, solver) methods, tidy outputs.

    lorasim                                   # headline comparison, 4 methods
    lorasim methods=single init=spectral solver=precgd problem.kappa=10
    lorasim problem=npz problem.path=data.npz

Writes into the hydra run dir: results.csv (one row per method × logged step),
summary.csv (one row per method), problem.json and figure.png. Bad config values
end the run before any compute with one line on stderr and exit code 2.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import __version__, job, plots
from .config import ConfigError, InitConfig, build, defaults, fail
from .engine import RunConfig, Trajectory, check_metrics, train, train_batch
from .inits import make_init
from .io import write_csv, write_json
from .job import conf_dir, group_options, wrap_help
from .metrics import AlignmentTargets, sin_theta
from .problems import KINDS, make_problem
from .solvers import SolverConfig


@dataclass
class Plan:
    """A validated run: the problem's config, the loop settings and the methods that share the problem."""

    problem: dict
    run: RunConfig
    methods: dict  # name -> (InitConfig | None, SolverConfig)


def _container(node, where: str):
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or where
        raise ConfigError(f"{key}: {str(e).splitlines()[0]}") from None


def _dims(problem: dict) -> Optional[tuple[int, int]]:
    kind = problem.get("kind", "linear")
    if kind == "sensing":
        return problem.get("n1"), problem.get("n2")
    if kind in ("linear", "relu"):
        return problem.get("d"), problem.get("k")
    return None  # npz, arrays: known once the data is read


def validate(cfg: DictConfig) -> Plan:
    """All config checks, before anything is generated or trained."""
    problem = _container(cfg.problem, "problem")
    kind = problem.get("kind", "linear")
    if kind not in KINDS:
        fail("problem", "kind", kind, "one of " + ", ".join(KINDS))
    build(KINDS[kind][0], {k: v for k, v in problem.items() if k != "kind"}, where="problem")
    run = build(RunConfig, _container(cfg.run, "run"), where="run")
    raw_methods = _container(cfg.methods, "methods")
    if not isinstance(raw_methods, dict) or not raw_methods:
        fail("", "methods", raw_methods, "a non-empty mapping name -> {init, solver}")
    methods = {}
    for name, entry in raw_methods.items():
        where = f"methods.{name}"
        if not isinstance(entry, dict) or set(entry) - {"init", "solver"} or "solver" not in entry:
            fail("methods", name, entry, "a mapping with keys init (or null) and solver")
        solver = build(SolverConfig, entry["solver"] or {}, where=f"{where}.solver")
        init = None
        if solver.name != "full_ft":
            if not entry.get("init"):
                fail(where, "init", entry.get("init"), "an init mapping (only full_ft runs without one)")
            init = build(InitConfig, entry["init"], where=f"{where}.init")
        methods[name] = (init, solver)
    plan = Plan(problem, run, methods)
    if _dims(problem) is not None:
        check_ranks(plan, *_dims(problem))
    return plan


def check_ranks(plan: Plan, d: int, k: int) -> None:
    """The LoRA rank fits every method: r ≤ min(d, k), and 2r ≤ min(d, k) for lora_ga."""
    for init, _ in plan.methods.values():
        if init is None:
            continue
        limit = min(d, k) // 2 if init.name == "lora_ga" and init.direction == "ArB2r" else min(d, k)
        if plan.run.rank > limit:
            what = "min(d, k)/2 for lora_ga" if limit < min(d, k) else "min(d, k)"
            fail("run", "rank", plan.run.rank, f"integer in [1, {what} = {limit}]")


def check_problem(plan: Plan, problem) -> None:
    """What a problem read from data decides: the rank fits its sizes, an arrays init its shapes, and
    metrics=align or figure a known ΔW."""
    check_ranks(plan, problem.d, problem.k)
    check_metrics(problem, plan.run.metrics, "run")
    for name, (init, _) in plan.methods.items():
        if init is not None and init.name == "arrays":
            try:
                make_init(problem, plan.run.rank, init, seed=plan.run.seed)
            except ConfigError as e:  # A0/B0 named under the method; a rank that disagrees is run.rank's
                raise ConfigError(str(e) if str(e).startswith("run.") else f"methods.{name}.init.{e}") from None


def batch_groups(problem, plan: Plan) -> list[list]:
    """Methods that can run as one batch (lorasim.batch): the same solver settings apart from the
    step size, an init that leaves W0 alone, and factors to batch (not full_ft). Every other
    method is a group of its own. Groups keep the methods' order."""
    groups: dict = {}
    for name, (init, solver) in plan.methods.items():
        alone = init is None or init.shifts_w0 or solver.name == "full_ft"
        settings = {k: v for k, v in solver.__dict__.items() if k not in ("lr", "where")}
        key = ("alone", name) if alone else ("batch", repr(sorted(settings.items())))
        groups.setdefault(key, []).append((name, (init, solver)))
    return list(groups.values())


def execute(plan: Plan, out_dir: Path, cache_dir: Optional[Path] = None):
    """Build the problem once, train every method on it, write the outputs; returns (results, summary).

    ``cache_dir`` (a multirun's sweep folder gives one): rank-free methods (full_ft) are trained
    once per distinct problem and settings, kept there, and reused by every later job (see
    ``RankFreeCache``); their summary row names the job that computed them in ``reused_from``."""
    problem = make_problem(plan.problem)
    run = plan.run
    check_problem(plan, problem)  # where the precheck did not run (flags such as -cn), still before training
    facts = problem.describe()
    ref = AlignmentTargets.from_problem(problem, run.rank)
    if ref.U_star is not None:
        # Where GD's alignment settles with finite N (SPEC R1): sinΘ(U_{r*}(G♮), U*).
        facts["sin_theta_G_Ustar"] = float(sin_theta(ref.U_star, ref.U_G))
    trajs, reused, deferred = {}, {}, []
    cache = RankFreeCache(cache_dir, out_dir) if cache_dir is not None else None

    def alone(name, init, solver):
        rank = full_ft_rank(problem, run.rank) if solver.name == "full_ft" else run.rank
        return train(problem, init=init, rank=rank, init_seed=run.seed, solver=solver, steps=run.steps,
                     log_every=run.log_every, method=name, diverge_factor=run.diverge_factor,
                     progress=not run.quiet, metrics=run.metrics)

    for group in batch_groups(problem, plan):
        name, (init, solver) = group[0]
        if cache is not None and len(group) == 1 and solver.name == "full_ft":
            # Rank-free: the first job of the sweep that gets here computes it, the others reuse it.
            key = full_ft_key(plan, name, solver, full_ft_rank(problem, run.rank))
            got = cache.fetch(key, lambda: alone(name, init, solver), wait=False)
            if got is None:  # another job is computing it now: train the other methods meanwhile
                deferred.append((name, key, init, solver))
            else:
                trajs[name], reused[name] = got
            continue
        if len(group) == 1:
            trajs[name] = alone(name, init, solver)
            continue
        names = [name for name, _ in group]
        got = train_batch(problem, [make_init(problem, run.rank, init, seed=run.seed) for _, (init, _) in group],
                          solver=solver, lr=[s.lr for _, (_, s) in group], steps=run.steps,
                          log_every=run.log_every, methods=names, diverge_factor=run.diverge_factor,
                          metrics=run.metrics, progress=not run.quiet)
        for name, (init, _), traj in zip(names, (m for _, m in group), got):
            traj.init = init.name
            trajs[name] = traj
    for name, key, init, solver in deferred:
        trajs[name], reused[name] = cache.fetch(key, lambda: alone(name, init, solver), wait=True)
    results = pd.concat([trajs[name].to_frame() for name in plan.methods], ignore_index=True)
    summary = pd.DataFrame([dict(trajs[name].summary(run.risk_eps), reused_from=reused.get(name))
                            for name in plan.methods])
    for col in ("diverged_step", "steps_to_eps", "align_A_argmin"):
        summary[col] = summary[col].astype("Int64")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, out_dir / "results.csv")
    write_csv(summary, out_dir / "summary.csv")
    run_settings = {k: v for k, v in run.__dict__.items() if k != "where"}
    write_json({"problem": plan.problem, "facts": facts, "run": run_settings, "threads": torch.get_num_threads()},
               out_dir / "problem.json")
    if run.figure:
        plots.risk_and_alignment(results, out_dir / "figure.png",
                                 title=f"{problem.kind}: d={problem.d}, k={problem.k}, r*={problem.r_star}, r={run.rank}")
    return results, summary


def full_ft_rank(problem, rank: int) -> int:
    """The rank full_ft is logged at: its singular values sv_A_1..n and the alignment subspace.
    Full fine-tuning has no LoRA rank, so when the problem knows r* this is max(8, r*) (capped at
    min(d, k)), the same in every job of a rank sweep; otherwise the LoRA rank."""
    if problem.r_star is None:
        return rank
    return min(problem.d, problem.k, max(8, problem.r_star))


def full_ft_key(plan: Plan, name: str, solver: SolverConfig, n_sv: int) -> str:
    """A hash of everything a full_ft trajectory depends on: the problem config (seed, dtype and
    device included; an .npz's bytes too), the solver, the loop settings, the logged rank, the
    thread count (bitwise results change with it) and the versions. Not run.rank nor run.seed."""
    problem = dict(plan.problem)
    path = problem.get("path")
    if isinstance(path, str) and Path(path).is_file():
        problem["path_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    run = plan.run
    payload = {"problem": problem, "method": name,
               "solver": {k: v for k, v in solver.__dict__.items() if k != "where"},
               "run": {"steps": run.steps, "log_every": run.log_every, "metrics": run.metrics, "risk_eps": run.risk_eps,
                       "diverge_factor": run.diverge_factor},
               "n_sv": n_sv, "threads": torch.get_num_threads(), "torch": torch.__version__, "lorasim": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


TRAJECTORY_FIELDS = ("method", "init", "solver", "status", "diverged_step", "steps", "wall_s", "rows")


class RankFreeCache:
    """Trajectories of rank-free methods shared by the jobs of one sweep: ``<dir>/<key>.json``
    (rows, status, wall time and the folder of the job that computed it), written atomically.
    A lock file per key (POSIX ``flock``; released if its holder dies) makes concurrent jobs
    (joblib, SLURM arrays on one file system) compute each key once; without ``fcntl`` two jobs
    may both compute it, with the same result."""

    def __init__(self, folder: Path, out_dir: Path):
        self.folder, self.out_dir = Path(folder), Path(out_dir)

    def _origin(self) -> str:
        """The computing job's folder, relative to the sweep folder ("0/"; the slash keeps it a
        string in the CSV), or absolute where it lies elsewhere."""
        try:
            return f"{self.out_dir.resolve().relative_to(self.folder.resolve().parent)}/"
        except ValueError:
            return f"{self.out_dir.resolve()}/"

    def _load(self, path: Path, key: str):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("key") != key:
            return None
        return Trajectory(**{k: saved[k] for k in TRAJECTORY_FIELDS}), saved["origin"]

    def fetch(self, key: str, compute, wait: bool):
        """(trajectory, reused_from): from the cache (reused_from = the computing job's folder), or
        computed now and stored (reused_from = None). None when ``wait`` is false and another job
        holds the key's lock."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        got = self._load(path, key)
        if got is not None:
            return got
        try:
            import fcntl
        except ImportError:  # no advisory locks: compute unless already there
            fcntl = None
        with open(self.folder / f"{key}.lock", "a") as lock:
            if fcntl is not None:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    return None
                except OSError:  # a file system without locks: compute, as without fcntl
                    pass
            got = self._load(path, key)  # finished by the job that held the lock
            if got is not None:
                return got
            traj = compute()
            write_json({"key": key, "origin": self._origin(), **{k: getattr(traj, k) for k in TRAJECTORY_FIELDS}}, path)
        return traj, None


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    job.run_job(cfg, validate, _work)


def _work(plan: Plan, out_dir: Path) -> str:
    _, summary = execute(plan, out_dir, cache_dir=job.sweep_cache_dir())
    cols = ["method", "status", "risk_0", "risk_final", "steps_to_eps", "align_A_min", "align_A_final"]
    return summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}")


def checker():
    """``validate``, plus what only the data can tell, for the precheck: an .npz or inline arrays
    readable, finite and of consistent shapes, the rank and any arrays init fitting them. Each distinct
    problem is read once however many sweep points share it."""
    problems: dict = {}

    def check(cfg: DictConfig) -> Plan:
        plan = validate(cfg)
        if _dims(plan.problem) is None:
            key = repr(sorted(plan.problem.items()))
            if key not in problems:
                problems[key] = make_problem(plan.problem)
            check_problem(plan, problems[key])
        return plan

    return check


def unknown_key_hint(given: str, key: str, cfg) -> Optional[str]:
    """init/solver keys while each method has its own: where they live instead (``job.unknown_key``).
    For ``init.<field>=v``, the methods whose init has the field and the per-method path to set it."""
    group, _, field = key.partition(".")
    if key in ("init", "solver"):
        return (f"{given}: the {key} group is chosen per method; use methods=single {given}, "
                f"or methods.<name>.{key}.<field>=...")
    if group not in ("init", "solver") or not field or not isinstance(cfg, DictConfig) or group in cfg:
        return None
    value = given.split("=", 1)[1] if "=" in given else "..."
    methods = cfg.get("methods")
    entries = methods.items() if isinstance(methods, DictConfig) else []
    takers = [str(name) for name, entry in entries if isinstance(entry, DictConfig)
              and isinstance(entry.get(group), DictConfig) and field.split(".")[0] in entry.get(group)]
    options = defaults(group)
    names = [n for n, params in options.items() if field in params]
    single = (f"or one method: methods=single {group}={names[0] if len(names) == 1 else '<name>'} "
              f"{group}.{field}={value}")
    head = f"{given}: unknown key; each method has its own {group} here"
    if not names:
        fields = sorted({f for params in options.values() for f in params})
        return f"{head} (methods.<name>.{group}.<field>), and no {group} has {field}; fields: {', '.join(fields)}"
    if not takers:
        return f"{head} (methods.<name>.{group}.<field>) and none has {field}; {single}"
    if len(takers) == 1:
        return f"{head}, and {field} is in {takers[0]}'s: use methods.{takers[0]}.{group}.{field}={value}; {single}"
    return (f"{head}, and {field} is in the {group} of {', '.join(takers)}: use methods.<name>.{group}.{field}={value}, "
            f"e.g. methods.{takers[0]}.{group}.{field}={value}; {single}")


def help_text() -> str:
    """``lorasim --help``: the groups a user sets, their options, the presets, examples."""
    rows = [(group, what, group_options(group, default=default)) for group, what, default in (
        ("problem", "the teacher-student problem; its fields: problem.<field>=...", "linear"),
        ("methods", "which (init, solver) pairs train on the one problem", "headline"),
        ("init", "the adapters' init, with methods=single (init.<field>=...)", "small_random"),
        ("solver", "the update rule, with methods=single (solver.<field>=...)", "gd"),
        ("run", "rank, steps, log_every, seed, risk_eps, ... (run.<field>=...)", "default"),
        ("experiment", "presets of problem + methods + run (the paper's toy setups, ...)", None),
        ("sweep", "multirun presets (lorasim sweep=<name>)", None),
        ("hydra/launcher", 'with -m: parallel, SLURM or ray jobs (pip install "lorasim[cluster]"; hydra-ray-launcher)',
         None))]
    return "\n".join([
        "lorasim: simulate LoRA-One's theory. One teacher-student problem, several (init, solver) methods",
        "trained on it; results.csv, summary.csv, problem.json and figure.png in the run folder.",
        "",
        "Usage:  lorasim [group=option ...] [key=value ...]      one run (outputs/<date>/<time>/)",
        "        lorasim -m key=v1,v2 [...]                      a sweep, one job per point (multirun/...)",
        "",
        "Groups (group=option):",
        wrap_help(rows),
        "",
        "Fields: problem.<field>=... and run.<field>=...; with methods=single also init.<field>=... and",
        "solver.<field>=...; under the other method sets each method has its own init and solver:",
        "methods.<name>.init.<field>=... (e.g. methods.vanilla_gd.init.alpha=1e-5).",
        "lorasim --cfg job prints the composed config, every field with its value.",
        "",
        "Examples:",
        "  lorasim problem.kappa=10 run.steps=1000                        the headline comparison at kappa=10",
        "  lorasim methods=single init=spectral solver=precgd run.rank=4  one method: LoRA-One + ScaledGD",
        "  lorasim sweep=rank_dim                                         a preset sweep; then lorasim-plot",
        "  lorasim experiment=paper_t1                                    the paper's toy T1",
        "",
        "Flags: -m/--multirun, --cfg job, --info, --hydra-help (hydra's own options). A bad value stops",
        "the run before any compute with one line naming it (exit code 2). More: README.md, 'The CLI'.",
    ])


def main() -> None:
    """Console entry point: ``lorasim [overrides]`` and ``python -m lorasim``."""
    job.main(_hydra_main, help_text, checker(), "config", hint=unknown_key_hint)
