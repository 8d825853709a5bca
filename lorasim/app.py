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


def execute(spec: Spec, out_dir: Path):
    """Build the problem once, train every method on it, write the outputs; returns (results, summary)."""
    import pandas as pd

    from . import plots
    from .io import write_csv, write_json
    from .metrics import Reference, sin_theta
    from .problems import make_problem
    from .batch import train_batch
    from .inits import make_init
    from .train import train

    problem = make_problem(spec.problem)
    run = spec.run
    check_ranks(spec, problem.d, problem.k)  # an .npz's sizes are known only now, still before training
    facts = problem.describe()
    ref = Reference.from_problem(problem, run.rank)
    if ref.U_star is not None:
        # Where GD's alignment settles with finite N (SPEC R1): sinΘ(U_{r*}(G♮), U*).
        facts["sin_theta_G_Ustar"] = float(sin_theta(ref.U_star, ref.U_G))
    trajs = {}
    for group in batch_groups(problem, spec):
        if len(group) == 1:
            name, (init, solver) = group[0]
            trajs[name] = train(problem, init=init, rank=run.rank, init_seed=run.seed, solver=solver,
                                steps=run.steps, log_every=run.log_every, method=name,
                                diverge_factor=run.diverge_factor, progress=not run.quiet, metrics=run.metrics)
            continue
        names = [name for name, _ in group]
        solver = group[0][1][1]
        got = train_batch(problem, [make_init(problem, run.rank, init, seed=run.seed) for _, (init, _) in group],
                          solver=solver, lr=[s.lr for _, (_, s) in group], steps=run.steps,
                          log_every=run.log_every, methods=names, diverge_factor=run.diverge_factor,
                          metrics=run.metrics)
        for name, (init, _), traj in zip(names, (m for _, m in group), got):
            traj.init = init.name
            trajs[name] = traj
    frames = [trajs[name].to_frame() for name in spec.methods]
    rows = [trajs[name].summary(run.eps) for name in spec.methods]
    results = pd.concat(frames, ignore_index=True)
    summary = pd.DataFrame(rows)
    for col in ("diverged_step", "steps_to_eps", "align_A_argmin"):
        summary[col] = summary[col].astype("Int64")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(results, out_dir / "results.csv")
    write_csv(summary, out_dir / "summary.csv")
    run_settings = {k: v for k, v in run.__dict__.items() if k != "where"}
    write_json({"problem": spec.problem, "facts": facts, "run": run_settings}, out_dir / "problem.json")
    if run.figure:
        plots.risk_and_alignment(results, out_dir / "figure.png",
                                 title=f"{problem.kind}: d={problem.d}, k={problem.k}, r*={problem.r_star}, r={run.rank}")
    return results, summary


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
    _share_cores(hc)
    fingerprint = _fingerprint(cfg)
    if multirun and _already_done(out_dir, fingerprint):
        print(f"job {hc.job.num}: complete in {out_dir}, skipped")
        return
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
    _, summary = execute(validate(cfg), out_dir)
    return format_summary(summary)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run_job(cfg, _work)


def _share_cores(hc) -> None:
    """Parallel local workers split the machine: the cores (instead of each taking them all, which
    oversubscribes), and, where several GPUs are visible, the GPUs — job n runs on GPU n mod count,
    so a joblib sweep with n_jobs = #GPUs keeps every GPU busy with one job."""
    target = str(OmegaConf.select(hc, "launcher._target_", default="") or "")
    if "joblib" in target.lower():
        import os

        import torch

        n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1
        n_jobs = os.cpu_count() if n_jobs < 0 else n_jobs
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, n_jobs)))
        gpu = assigned_gpu(hc.job.num, torch.cuda.device_count())
        if gpu is not None:
            torch.cuda.set_device(gpu)


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
    """Compose and validate every job's config first, so each config error is one line, exit 2."""
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
            for point in points:
                try:
                    check(compose(config_name=config_name, overrides=point))
                except ConfigError as e:
                    where = f"job {' '.join(point)}: " if multirun and len(points) > 1 else ""
                    raise ConfigError(f"{where}{e}") from None
    except ConfigError as e:
        _error(str(e))
    except MissingConfigException as e:
        missing = e.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        allowed = ", ".join(e.options) if e.options else "see conf/" + group
        _error(f"{group or 'config'}={option}: unknown option; allowed: {allowed}")
    except (HydraException, OmegaConfBaseException) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        match = re.match(r"Could not override '([^']+)'", first)
        if match:
            _error(_unknown_override(match.group(1), overrides, config_name, config_dir))
        _error(first)


def _unknown_override(key: str, overrides: list[str], config_name: str = "config",
                      config_dir: Optional[str] = None) -> str:
    """One line for an override hydra could not place: a group outside methods=single, or an unknown key."""
    from hydra import compose, initialize_config_dir

    given = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)
    if key in ("init", "solver") and config_name == "config":
        return f"{given}: the {key} group is chosen per method; use methods=single {given}, or methods.<name>.{key}.<field>=..."
    parent = key.rpartition(".")[0]
    others = [o for o in overrides if o != given]
    try:
        with initialize_config_dir(config_dir=config_dir or conf_dir(), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=others)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        allowed = ", ".join(sorted(node.keys())) if isinstance(node, DictConfig) else "none"
    except Exception:  # the other overrides are broken too; report the first problem only
        allowed = "see lorasim --cfg job"
    return f"{given}: unknown key; allowed keys{' in ' + parent if parent else ''}: {allowed}"


def main() -> None:
    """Console entry point: ``lorasim [overrides]`` and ``python -m lorasim``."""
    argv = sys.argv[1:]
    multirun = any(a in ("-m", "--multirun") for a in argv)
    others = [a for a in argv if a.startswith("-") and a not in ("-m", "--multirun")]
    # Informational flags (--cfg, --help, --info, ...) go to hydra untouched.
    if not others:
        _precheck([a for a in argv if not a.startswith("-")], multirun)
    _hydra_main()
