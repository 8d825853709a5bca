"""The ``lorasim`` hydra app: one problem, several (init, solver) methods, tidy outputs.

    lorasim                                   # headline comparison, 4 methods
    lorasim methods=single init=spectral solver=precgd problem.kappa=10
    lorasim problem=npz problem.path=data.npz

Writes into the hydra run dir: results.csv (one row per method × logged step),
summary.csv (one row per method), problem.json and figure.png. Bad config values
end the run before any compute with one line on stderr and exit code 2.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, InitConfig, RunConfig, SolverConfig, build, fail


def conf_dir() -> str:
    """conf/ inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):
        if (cand / "config.yaml").is_file():
            return str(cand)
    raise FileNotFoundError("lorasim: conf/config.yaml not found next to the package")


@dataclass
class Spec:
    problem: dict
    run: RunConfig
    methods: dict  # name -> (InitConfig | None, SolverConfig)


def _container(node, where: str):
    from omegaconf.errors import OmegaConfBaseException

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


def validate(cfg: DictConfig) -> Spec:
    """All config checks, before anything is generated or trained."""
    from .problems import KINDS

    problem = _container(cfg.problem, "problem")
    kind = problem.get("kind", "linear")
    if kind not in KINDS:
        fail("problem", "kind", kind, "one of " + ", ".join(KINDS))
    probe = dict(problem)
    probe.pop("kind", None)
    build(KINDS[kind][0], probe, where="problem")
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
    spec = Spec(problem, run, methods)
    dims = _dims(problem)
    if dims is not None:
        check_ranks(spec, *dims)
    return spec


def check_ranks(spec: Spec, d: int, k: int) -> None:
    """The LoRA rank fits every method: r ≤ min(d, k), and 2r ≤ min(d, k) for lora_ga."""
    for init, _ in spec.methods.values():
        if init is None:
            continue
        limit = min(d, k) // 2 if init.name == "lora_ga" and init.direction == "ArB2r" else min(d, k)
        if spec.run.rank > limit:
            what = "min(d, k)/2 for lora_ga" if limit < min(d, k) else "min(d, k)"
            fail("run", "rank", spec.run.rank, f"integer in [1, {what} = {limit}]")


OFFSET_INITS = ("lora_ga", "pissa")  # they move W0, so each defines its own problem


def batch_groups(problem, spec: Spec) -> list[list]:
    """Methods that can run as one batch (lorasim.batch): the same solver settings apart from the
    step size, an init that leaves W0 alone, and factors to batch (not full_ft). Every other
    method is a group of its own. Groups keep the methods' order."""
    groups: dict = {}
    for name, (init, solver) in spec.methods.items():
        alone = init is None or init.name in OFFSET_INITS or solver.name == "full_ft"
        settings = {k: v for k, v in solver.__dict__.items() if k not in ("lr", "where")}
        key = ("alone", name) if alone else ("batch", repr(sorted(settings.items())))
        groups.setdefault(key, []).append((name, (init, solver)))
    return list(groups.values())


def execute(spec: Spec, out_dir: Path, cache_dir: Optional[Path] = None):
    """Build the problem once, train every method on it, write the outputs; returns (results, summary).

    ``cache_dir`` (a multirun's sweep folder gives one): rank-free methods (full_ft) are trained
    once per distinct problem and settings, kept there, and reused by every later job (see
    ``RankFreeCache``); their summary row names the job that computed them in ``reused_from``."""
    import pandas as pd
    import torch

    from . import plots
    from .io import write_csv, write_json
    from .metrics import Reference, sin_theta
    from .problems import make_problem
    from .engine import train_batch
    from .inits import make_init
    from .engine import train

    problem = make_problem(spec.problem)
    run = spec.run
    check_ranks(spec, problem.d, problem.k)  # an .npz's sizes are known only now, still before training
    facts = problem.describe()
    ref = Reference.from_problem(problem, run.rank)
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

    for group in batch_groups(problem, spec):
        name, (init, solver) = group[0]
        if cache is not None and len(group) == 1 and solver.name == "full_ft":
            # Rank-free: the first job of the sweep that gets here computes it, the others reuse it.
            key = full_ft_key(spec, name, solver, full_ft_rank(problem, run.rank))
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
        solver = group[0][1][1]
        got = train_batch(problem, [make_init(problem, run.rank, init, seed=run.seed) for _, (init, _) in group],
                          solver=solver, lr=[s.lr for _, (_, s) in group], steps=run.steps,
                          log_every=run.log_every, methods=names, diverge_factor=run.diverge_factor,
                          metrics=run.metrics, progress=not run.quiet)
        for name, (init, _), traj in zip(names, (m for _, m in group), got):
            traj.init = init.name
            trajs[name] = traj
    for name, key, init, solver in deferred:
        trajs[name], reused[name] = cache.fetch(key, lambda: alone(name, init, solver), wait=True)
    frames = [trajs[name].to_frame() for name in spec.methods]
    rows = [dict(trajs[name].summary(run.eps), reused_from=reused.get(name)) for name in spec.methods]
    results = pd.concat(frames, ignore_index=True)
    summary = pd.DataFrame(rows)
    for col in ("diverged_step", "steps_to_eps", "align_A_argmin"):
        summary[col] = summary[col].astype("Int64")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, out_dir / "results.csv")
    write_csv(summary, out_dir / "summary.csv")
    run_settings = {k: v for k, v in run.__dict__.items() if k != "where"}
    write_json({"problem": spec.problem, "facts": facts, "run": run_settings, "threads": torch.get_num_threads()},
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


def full_ft_key(spec: Spec, name: str, solver: SolverConfig, n_sv: int) -> str:
    """A hash of everything a full_ft trajectory depends on: the problem config (seed, dtype and
    device included; an .npz's bytes too), the solver, the loop settings, the logged rank, the
    thread count (bitwise results change with it) and the versions. Not run.rank nor run.seed."""
    import hashlib
    import json

    import torch

    from . import __version__

    problem = dict(spec.problem)
    path = problem.get("path")
    if isinstance(path, str) and Path(path).is_file():
        problem["path_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    run = spec.run
    payload = {"problem": problem, "method": name,
               "solver": {k: v for k, v in solver.__dict__.items() if k != "where"},
               "run": {"steps": run.steps, "log_every": run.log_every, "metrics": run.metrics, "eps": run.eps,
                       "diverge_factor": run.diverge_factor},
               "n_sv": n_sv, "threads": torch.get_num_threads(), "torch": torch.__version__, "lorasim": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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
        import json

        from .engine import Trajectory

        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("key") != key:
            return None
        traj = Trajectory(method=saved["method"], init=saved["init"], solver=saved["solver"], rows=saved["rows"],
                          status=saved["status"], diverged_step=saved["diverged_step"], steps=saved["steps"],
                          wall_s=saved["wall_s"])
        return traj, saved["origin"]

    def fetch(self, key: str, compute, wait: bool):
        """(trajectory, reused_from): from the cache (reused_from = the computing job's folder), or
        computed now and stored (reused_from = None). None when ``wait`` is false and another job
        holds the key's lock."""
        from .io import write_json

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
            write_json({"key": key, "origin": self._origin(), "method": traj.method, "init": traj.init,
                        "solver": traj.solver, "status": traj.status, "diverged_step": traj.diverged_step,
                        "steps": traj.steps, "wall_s": traj.wall_s, "rows": traj.rows}, path)
        return traj, None


def format_summary(summary) -> str:
    cols = ["method", "status", "risk_0", "risk_final", "steps_to_eps", "align_A_min", "align_A_final"]
    return summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}")


def _error(msg: str) -> None:
    sys.stderr.write(f"lorasim: error: {msg}\n")
    sys.exit(2)


def run_job(cfg: DictConfig, work, prog: str = "lorasim") -> None:
    """The body of a hydra job shared by lorasim and lorasim-llm: ``work(cfg, out_dir)`` returns the
    text to print. A finished multirun job (same config) is skipped; a config error in a single run
    is one line with exit code 2; in a multirun any job's failure is left in its folder as error.txt
    and the sweep goes on; done.json is written last."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
    fingerprint = _fingerprint(cfg)
    if multirun and _already_done(out_dir, fingerprint):
        print(f"job {hc.job.num}: complete in {out_dir}, skipped")
        return
    # The folder may hold another config's markers (an earlier sweep into it): they go before the job
    # runs, so a job killed midway never reads as that other config's finished (or failed) job.
    for stale in ("done.json", "error.txt"):
        (out_dir / stale).unlink(missing_ok=True)
    print(_share_cores(hc, OmegaConf.select(cfg, "run.threads", default="auto")))
    try:
        text = work(cfg, out_dir)
    except Exception as e:  # noqa: BLE001 - a sweep records any job's failure and goes on
        if not multirun:
            if isinstance(e, ConfigError):
                _error(str(e))
            raise
        # One bad job must not end the sweep: leave the reason in its folder.
        from .io import atomic_write

        message = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
        atomic_write(out_dir / "error.txt", lambda tmp: Path(tmp).write_text(message + "\n"))
        sys.stderr.write(f"{prog}: job {hc.job.num}: {message}\n")
        return
    _mark_done(out_dir, fingerprint)
    print(text)
    print(f"outputs: {out_dir}")


def _work(cfg: DictConfig, out_dir: Path) -> str:
    _, summary = execute(validate(cfg), out_dir, cache_dir=_sweep_cache_dir())
    return format_summary(summary)


def _sweep_cache_dir() -> Optional[Path]:
    """Where a multirun's jobs share rank-free trajectories: <sweep dir>/.lorasim-cache."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    return Path(hc.sweep.dir) / ".lorasim-cache"


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run_job(cfg, _work)


def available_cores() -> int:
    """The CPU cores this process may use: its affinity mask (taskset, SLURM, containers that pin),
    capped by a cgroup v2 CPU quota (docker --cpus) where one is set; os.cpu_count() elsewhere."""
    import math
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def pick_threads(setting, cores: int, workers: int = 1) -> int:
    """torch's thread count for one job: ``setting`` if an integer, else ("auto") the job's share
    of the cores, cores // workers (at least 1), so that workers × threads ≤ cores; an
    OMP_NUM_THREADS in the environment caps it further."""
    import os

    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    threads = max(1, cores // max(1, workers))
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        threads = min(threads, int(env))
    return threads


def _launcher_workers(hc, cores: int) -> tuple[int, str]:
    """How many jobs of this sweep share the cores at once, and the launcher's word for it."""
    target = str(OmegaConf.select(hc, "launcher._target_", default="") or "").lower()
    if "joblib" in target:
        n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1
        n_jobs = max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs  # joblib: -1 = all cores, -2 = all but one
        return n_jobs, f"{n_jobs} joblib workers"
    if "submitit" in target:  # each job has its cpus_per_task (SLURM also pins them: the affinity shows it)
        cpus = OmegaConf.select(hc, "launcher.cpus_per_task", default=None)
        if isinstance(cpus, int) and cpus >= 1:
            return max(1, cores // cpus), f"cpus_per_task={cpus}"
    return 1, "1 job at a time"


def _share_cores(hc, setting="auto") -> str:
    """Set torch's thread count for this job (``pick_threads``) and return the log line saying it.
    Parallel local workers split the machine: the cores (instead of each taking them all, which
    oversubscribes), and, where several GPUs are visible, the GPUs — job n runs on GPU n mod count,
    so a joblib sweep with n_jobs = #GPUs keeps every GPU busy with one job."""
    import os

    import torch

    cores = available_cores()
    workers, how = _launcher_workers(hc, cores)
    threads = pick_threads(setting, cores, workers)
    torch.set_num_threads(threads)
    if "joblib" in how:
        gpu = assigned_gpu(hc.job.num, torch.cuda.device_count())
        if gpu is not None:
            torch.cuda.set_device(gpu)
    why = "run.threads" if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1 else \
        f"auto: {cores} core{'s' if cores > 1 else ''}, {how}" + \
        (", OMP_NUM_THREADS" if threads < cores // workers else "")
    line = f"threads: {threads} ({why})"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    if threads > 1 and load >= cores + 1:  # more runnable processes than cores, even counting a previous job's
        line += (f"; load average {load:.1f} on {cores} cores: under contention run.threads=1 (or "
                 "OMP_WAIT_POLICY=PASSIVE) can be much faster")
    return line


def assigned_gpu(job_num: int, visible: int):
    """The GPU index of a local sweep job (None with fewer than two GPUs: nothing to choose)."""
    return None if visible < 2 else job_num % visible


def _fingerprint(cfg: DictConfig) -> str:
    """A hash of the job's own config (hydra's settings excluded), to recognise a finished job."""
    import hashlib

    text = OmegaConf.to_yaml({k: cfg[k] for k in cfg if k != "hydra"}, resolve=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _already_done(out_dir: Path, fingerprint: str) -> bool:
    import json

    marker = out_dir / "done.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("config_sha256") == fingerprint
    except ValueError:
        return False


def _mark_done(out_dir: Path, fingerprint: str) -> None:
    """Written last, atomically: its presence means every output of this config is complete."""
    from .io import write_json

    write_json({"config_sha256": fingerprint}, out_dir / "done.json")


def _sweep_points(overrides: list[str], limit: int = 1000) -> Optional[list[list[str]]]:
    """Every job's overrides of a multirun (the cartesian product of its sweeps), or None when
    a sweep cannot be listed (e.g. an interval for an optimizing sweeper) or there are too many."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:
                return None
            choices.append([f"{key}={v}" for v in values])
        else:
            choices.append([o.input_line])
    total = 1
    for c in choices:
        total *= len(c)
    if total > limit:
        return None
    return [list(point) for point in itertools.product(*choices)]


def _precheck(overrides: list[str], multirun: bool, config_name: str = "config", check=None,
              config_dir: Optional[str] = None) -> None:
    """Compose and validate every job's config first, so each config error is one line, exit 2.

    Also refused here: a ``+key=value`` (or ``++``) whose top-level key no config group defines
    (hydra would add it and every app would ignore it); keys added below a group are checked by
    the app's own ``check`` (by name), and ``+hydra.*`` is hydra's own business."""
    check = check or validate
    config_dir = config_dir or conf_dir()
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            # A preset (sweep=...) can make the run a multirun through hydra.sweeper.params.
            from hydra.core.override_parser.overrides_parser import OverridesParser

            parsed = OverridesParser.create().parse_overrides(overrides)
            plain = [o.input_line for o in parsed if not o.is_sweep_override()]
            multirun = multirun or len(plain) < len(parsed)
            base = compose(config_name=config_name, overrides=plain, return_hydra_config=True)
            params = OmegaConf.select(base, "hydra.sweeper.params") or {}
            if str(OmegaConf.select(base, "hydra.mode")) == "RunMode.MULTIRUN" or multirun:
                multirun = True
                given = {o.split("=", 1)[0] for o in overrides}
                overrides = overrides + [f"{k}={v}" for k, v in params.items() if k not in given]
            points = _sweep_points(overrides) if multirun else [overrides]
            if points is None:
                return  # not listable: each job still validates itself
            defined: dict = {}  # group choices -> the top-level keys they define
            for point in points:
                try:
                    cfg = compose(config_name=config_name, overrides=point)
                    _check_added(point, config_name, config_dir, defined)
                    check(cfg)
                except ConfigError as e:
                    where = f"job {' '.join(point)}: " if multirun and len(points) > 1 else ""
                    raise ConfigError(f"{where}{e}") from None
    except ConfigError as e:
        _error(str(e))
    except MissingConfigException as e:
        missing = e.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        hint = _missing_plugin(group, option, overrides)
        if hint:
            _error(hint)
        allowed = ", ".join(e.options) if e.options else "see conf/" + group
        _error(f"{group or 'config'}={option}: unknown option; allowed: {allowed}")
    except (HydraException, OmegaConfBaseException) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        match = re.match(r"Could not override '([^']+)'", first)
        if match:
            _error(_unknown_override(match.group(1), overrides, config_name, config_dir))
        _error(first)


def _is_group(name: str) -> bool:
    """Whether an override's key names a config group (group=option) rather than a config key."""
    from hydra.core.global_hydra import GlobalHydra

    if "/" in name:
        return True
    try:
        return bool(GlobalHydra.instance().config_loader().get_group_options(name))
    except Exception:  # noqa: BLE001 - not a group the loader knows
        return False


def _check_added(point: list[str], config_name: str, config_dir: str, defined: dict) -> None:
    """Refuse ``+key=...``/``++key=...`` when the top-level key is one no group of this point defines."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(point)
    added = [o for o in parsed if (o.is_add() or o.is_force_add()) and not _is_group(o.key_or_group)
             and o.key_or_group.split(".")[0] != "hydra"]
    if not added:
        return
    choices = tuple(o.input_line for o in parsed if _is_group(o.key_or_group))
    if choices not in defined:
        defined[choices] = set(compose(config_name=config_name, overrides=list(choices)).keys())
    for o in added:
        if o.key_or_group.split(".")[0] not in defined[choices]:
            raise ConfigError(_unknown_override(o.key_or_group, point, config_name, config_dir))


# Launchers that come from a plugin: (the preset or plugin name) -> the pip package, and its install line.
_CLUSTER = 'pip install "lorasim[cluster]"'
LAUNCHER_PLUGINS = {"joblib": ("hydra-joblib-launcher", _CLUSTER),
                    "submitit_slurm": ("hydra-submitit-launcher", _CLUSTER),
                    "submitit_local": ("hydra-submitit-launcher", _CLUSTER),
                    "ray": ("hydra-ray-launcher", "pip install hydra-ray-launcher"),
                    "rq": ("hydra-rq-launcher", "pip install hydra-rq-launcher")}


def _missing_plugin(group: str, option: str, overrides: list[str]) -> Optional[str]:
    """The install hint when a launcher preset (conf/hydra/launcher/) or a launcher name needs a plugin
    that is not installed; None for any other missing config."""
    if group != "hydra/launcher" or option not in LAUNCHER_PLUGINS:
        return None
    chosen = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "hydra/launcher"),
                  option)
    package, install = LAUNCHER_PLUGINS[option]
    return f"hydra/launcher={chosen}: the {option} launcher's plugin ({package}) is not installed: {install}"


def _first_values(overrides: list[str]) -> list[str]:
    """The overrides with each sweep replaced by its first value (composable by hydra's compose)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            try:
                first = next(iter(o.sweep_string_iterator()))
            except Exception:  # noqa: BLE001 - e.g. an interval: leave it out
                continue
            out.append(f"{o.get_key_element()}={first}")
        else:
            out.append(o.input_line)
    return out


def _unknown_override(key: str, overrides: list[str], config_name: str = "config",
                      config_dir: Optional[str] = None) -> str:
    """One line for a key no group defines: where the key lives instead (a group field under several
    methods: each method's own path), or the keys allowed at the nearest level that exists."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    given = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)
    if key in ("init", "solver") and config_name == "config":
        return f"{given}: the {key} group is chosen per method; use methods=single {given}, or methods.<name>.{key}.<field>=..."
    others = [o for o in overrides if o != given]
    cfg = None
    for attempt in (others, [o for o in others if _looks_like_group(o)], []):
        try:
            if GlobalHydra.instance().is_initialized():
                cfg = compose(config_name=config_name, overrides=_first_values(attempt))
            else:
                with initialize_config_dir(config_dir=config_dir or conf_dir(), version_base="1.3"):
                    cfg = compose(config_name=config_name, overrides=_first_values(attempt))
            break
        except Exception:  # noqa: BLE001 - the other overrides are broken too; try with fewer
            continue
    if cfg is None:
        return f"{given}: unknown key; see {_PROGS.get(config_name, 'lorasim')} --cfg job"
    top, _, rest = key.partition(".")
    if config_name == "config" and top in ("init", "solver") and top not in cfg and rest:
        return _per_method(given, top, rest, cfg)
    parts, node, depth = key.split("."), cfg, 0
    while depth < len(parts) - 1 and isinstance(node, DictConfig) and isinstance(node.get(parts[depth]), DictConfig):
        node, depth = node[parts[depth]], depth + 1
    parent = ".".join(parts[:depth])
    allowed = ", ".join(sorted(k for k in node.keys() if k != "hydra")) if isinstance(node, DictConfig) else ""
    return f"{given}: unknown key; allowed keys{' in ' + parent if parent else ''}: {allowed or 'none'}"


_PROGS = {"config": "lorasim", "verify": "lorasim-verify", "llm": "lorasim-llm"}


def _looks_like_group(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return "/" in key or "." not in key


def _per_method(given: str, group: str, field: str, cfg: DictConfig) -> str:
    """``init.<field>=v`` where each method has its own init: name the methods whose init has the field,
    and the per-method path to set it."""
    from .config import INIT_PARAMS, SOLVER_PARAMS

    value = given.split("=", 1)[1] if "=" in given else "..."
    methods = cfg.get("methods")
    takers = []
    if isinstance(methods, DictConfig):
        for name in methods:
            entry = methods.get(name)
            node = entry.get(group) if isinstance(entry, DictConfig) else None
            if isinstance(node, DictConfig) and field.split(".")[0] in node:
                takers.append(str(name))
    names = [n for n, params in (INIT_PARAMS if group == "init" else SOLVER_PARAMS).items() if field in params]
    single = (f"or one method: methods=single {group}={names[0] if len(names) == 1 else '<name>'} "
              f"{group}.{field}={value}")
    head = f"{given}: unknown key; each method has its own {group} here"
    if not names:
        fields = sorted({f for params in (INIT_PARAMS if group == "init" else SOLVER_PARAMS).values() for f in params})
        return f"{head} (methods.<name>.{group}.<field>), and no {group} has {field}; fields: {', '.join(fields)}"
    if not takers:
        return f"{head} (methods.<name>.{group}.<field>) and none has {field}; {single}"
    if len(takers) == 1:
        return f"{head}, and {field} is in {takers[0]}'s: use methods.{takers[0]}.{group}.{field}={value}; {single}"
    return (f"{head}, and {field} is in the {group} of {', '.join(takers)}: use methods.<name>.{group}.{field}={value}, "
            f"e.g. methods.{takers[0]}.{group}.{field}={value}; {single}")


def group_options(group: str, config_dir: Optional[str] = None, default: Optional[str] = None) -> str:
    """A conf group's options as one line, the default first (read from the conf folder, so never stale)."""
    folder = Path(config_dir or conf_dir(), group)
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    if default in names:
        names = [f"{default} (default)"] + [n for n in names if n != default]
    return ", ".join(names)


def wrap_help(rows: list[tuple[str, str, str]], width: int = 100) -> str:
    """``  name  description`` then the options, indented, wrapped at ``width``."""
    import textwrap

    pad = max(len(name) for name, _, _ in rows) + 4
    out = []
    for name, what, options in rows:
        out.append(f"  {name:<{pad - 2}}{what}")
        if options:
            out += textwrap.wrap(options, width, initial_indent=" " * pad, subsequent_indent=" " * pad,
                                 break_on_hyphens=False)
    return "\n".join(out)


def help_text() -> str:
    """``lorasim --help``: the groups a user sets, their options, the presets, examples."""
    rows = [
        ("problem", "the teacher-student problem; its fields: problem.<field>=...", group_options("problem", default="linear")),
        ("methods", "which (init, solver) pairs train on the one problem", group_options("methods", default="headline")),
        ("init", "the adapters' init, with methods=single (init.<field>=...)", group_options("init", default="small_random")),
        ("solver", "the update rule, with methods=single (solver.<field>=...)", group_options("solver", default="gd")),
        ("run", "rank, steps, log_every, seed, eps, ... (run.<field>=...)", group_options("run", default="default")),
        ("experiment", "presets of problem + methods + run (the paper's toy setups, ...)", group_options("experiment")),
        ("sweep", "multirun presets (lorasim sweep=<name>)", group_options("sweep")),
        ("hydra/launcher", 'with -m: parallel or SLURM jobs; pip install "lorasim[cluster]"',
         group_options("hydra/launcher")),
    ]
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


def wants_help(argv: list[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def main() -> None:
    """Console entry point: ``lorasim [overrides]`` and ``python -m lorasim``."""
    argv = sys.argv[1:]
    if wants_help(argv):
        print(help_text())
        return
    multirun = any(a in ("-m", "--multirun") for a in argv)
    others = [a for a in argv if a.startswith("-") and a not in ("-m", "--multirun")]
    # Informational flags (--cfg, --info, ...) go to hydra untouched.
    if not others:
        _precheck([a for a in argv if not a.startswith("-")], multirun)
    _hydra_main()
