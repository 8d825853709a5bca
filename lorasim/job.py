"""The hydra-job plumbing that lorasim, lorasim-verify and lorasim-llm share.

An app is a root config plus ``check(cfg) -> plan`` (every check, no compute; a ``ConfigError``
names the bad field), ``work(plan, out_dir) -> text`` and a help text. ``main`` is its console
entry: ``--help``, then ``precheck`` (every job's config of a run or a sweep, data files included,
before hydra makes any folder), then hydra, whose task function is ``run_job``. Bad input is one
line on stderr, ``lorasim: error: <field>=<value>: allowed <what>``, and exit code 2.
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Callable, NoReturn, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import ConfigError, register_configs, type_error
from .io import atomic_write, write_json

# Every job's environment, set by hydra in the job's own process whatever the launcher; the root
# configs include it with `- hydra/job_env: lorasim`. NVLink multicast off: it can hang NCCL on
# multi-GPU hosts. Offline: the LLM stage's models and data come as wheels, never from a hub.
JOB_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
ConfigStore.instance().store(group="hydra/job_env", name="lorasim", package="hydra.job.env_set", node=JOB_ENV)
register_configs()  # the problem, init and run schemas that conf/<group>/*.yaml extend

_CLUSTER = 'pip install "lorasim[cluster]"'
# The launchers that come from a plugin: its module -> (its launcher names, the pip package, the install line).
LAUNCHER_PLUGINS = {
    "hydra_joblib_launcher": (("joblib",), "hydra-joblib-launcher", _CLUSTER),
    "hydra_submitit_launcher": (("submitit_slurm", "submitit_local"), "hydra-submitit-launcher", _CLUSTER),
    "hydra_ray_launcher": (("ray", "ray_aws"), "hydra-ray-launcher", "pip install hydra-ray-launcher"),
}


def conf_dir() -> str:
    """conf/ inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):
        if (cand / "config.yaml").is_file():
            return str(cand)
    raise FileNotFoundError("lorasim: conf/config.yaml not found next to the package")


def error(msg: str) -> NoReturn:
    sys.stderr.write(f"lorasim: error: {msg}\n")
    sys.exit(2)


# -- the console entry ------------------------------------------------------------------------------------
def main(hydra_main: Callable, help_text: Callable[[], str], check: Callable, config_name: str,
         config_dir: Optional[str] = None, prog: str = "lorasim", hint: Optional[Callable] = None,
         first: Optional[Callable] = None) -> None:
    """``prog [overrides]``: help, or ``first()`` and the precheck, then the hydra app. Informational
    flags (--cfg, --info, ...) and config-path flags go to hydra untouched (each job checks itself)."""
    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(help_text())
        return
    if not [a for a in argv if a.startswith("-") and a not in ("-m", "--multirun")]:
        try:
            if first is not None:
                first()
        except ConfigError as e:
            error(str(e))
        precheck([a for a in argv if not a.startswith("-")], any(a in ("-m", "--multirun") for a in argv),
                 config_name, check, config_dir, prog, hint)
    hydra_main()


# -- the precheck ----------------------------------------------------------------------------------------
def precheck(overrides: list[str], multirun: bool, config_name: str = "config", check: Optional[Callable] = None,
             config_dir: Optional[str] = None, prog: str = "lorasim", hint: Optional[Callable] = None) -> None:
    """Compose and check every job's config first, so each bad value is one line, exit 2, no folder.

    Also refused here: a launcher whose plugin is not installed, and a ``+key=value`` (or ``++``)
    whose top-level key no config group defines (hydra would add it and the app would ignore it);
    keys added below a group are checked by the app's ``check`` (by name); ``+hydra.*`` is hydra's.
    ``hint(given, key, cfg)`` may explain an unknown key the app's way (None: the generic line)."""
    config_dir = config_dir or conf_dir()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            parsed = OverridesParser.create().parse_overrides(overrides)
            plain = [o.input_line for o in parsed if not o.is_sweep_override()]
            base = compose(config_name=config_name, overrides=plain, return_hydra_config=True)
            # A preset (sweep=...) can make the run a multirun through hydra.sweeper.params.
            multirun = (multirun or len(plain) < len(parsed)
                        or str(OmegaConf.select(base, "hydra.mode")) == "RunMode.MULTIRUN")
            if multirun:
                _check_launcher(OmegaConf.select(base, "hydra.launcher._target_"), overrides)
                given = {o.split("=", 1)[0] for o in overrides}
                params = OmegaConf.select(base, "hydra.sweeper.params") or {}
                overrides = overrides + [f"{k}={v}" for k, v in params.items() if k not in given]
            points = sweep_points(overrides) if multirun else [overrides]
            if points is None:
                return  # not listable: each job still checks itself
            defined: dict = {}  # group choices -> the top-level keys they define
            for point in points:
                try:
                    _check_added(point, config_name, config_dir, defined, prog, hint)
                    if check is not None:
                        check(compose(config_name=config_name, overrides=point))
                except ConfigError as e:
                    where = f"job {' '.join(point)}: " if multirun and len(points) > 1 else ""
                    raise ConfigError(f"{where}{e}") from None
    except ConfigError as e:
        error(str(e))
    except MissingConfigException as e:
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        plugin = next((m for m, (names, _, _) in LAUNCHER_PLUGINS.items() if option in names), None)
        if group == "hydra/launcher" and plugin is not None:
            _check_launcher(f"hydra_plugins.{plugin}", overrides, option)
        allowed = ", ".join(e.options) if e.options else "see conf/" + group
        error(f"{group or 'config'}={option}: unknown option; allowed: {allowed}")
    except (HydraException, OmegaConfBaseException) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        match = re.match(r"Could not override '([^']+)'", first)
        if match:
            error(unknown_key(match.group(1), overrides, config_name, config_dir, prog, hint))
        error(str(type_error(e) or first))  # a wrong type on a schema field: field, value, allowed type


def sweep_points(overrides: list[str], limit: int = 1000) -> Optional[list[list[str]]]:
    """Every job's overrides of a multirun (the cartesian product of its sweeps), or None when
    a sweep cannot be listed (e.g. an interval for an optimizing sweeper) or there are too many."""
    choices = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if not o.is_sweep_override():
            choices.append([o.input_line])
            continue
        try:
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        except Exception:  # noqa: BLE001 - hydra refuses to list it
            return None
    if math.prod(len(c) for c in choices) > limit:
        return None
    return [list(point) for point in itertools.product(*choices)]


def installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it; a parent that cannot be imported, or a
    module set to None in sys.modules, counts as not installed."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _check_launcher(target, overrides: list[str], name: Optional[str] = None) -> None:
    """Exit with the install line when the launcher's module (``target``, a dotted path) comes from a
    plugin that is not installed; nothing when it is there or is no known plugin's."""
    module = str(target or "").split(".")
    if (len(module) < 2 or module[0] != "hydra_plugins" or module[1] not in LAUNCHER_PLUGINS
            or installed(".".join(module[:2]))):
        return
    names, package, install = LAUNCHER_PLUGINS[module[1]]
    chosen = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "hydra/launcher"),
                  name or names[0])
    error(f"hydra/launcher={chosen}: the {name or names[0]} launcher's plugin ({package}) is not installed: {install}")


def _is_group(name: str) -> bool:
    """Whether an override's key names a config group (group=option) rather than a config key."""
    if "/" in name:
        return True
    try:
        return bool(GlobalHydra.instance().config_loader().get_group_options(name))
    except Exception:  # noqa: BLE001 - not a group the loader knows
        return False


def _check_added(point: list[str], config_name: str, config_dir: str, defined: dict, prog: str, hint) -> None:
    """Refuse ``+key=...``/``++key=...`` when the top-level key is one no group of this point defines."""
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
            raise ConfigError(unknown_key(o.key_or_group, point, config_name, config_dir, prog, hint))


def unknown_key(key: str, overrides: list[str], config_name: str = "config", config_dir: Optional[str] = None,
                prog: str = "lorasim", hint: Optional[Callable] = None) -> str:
    """One line for a key no group defines: the app's ``hint``, or the keys allowed at the nearest
    level that exists."""
    given = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), key)
    others = [o for o in overrides if o != given]
    cfg = None
    looks_like_group = [o for o in others if "/" in o.split("=", 1)[0] or "." not in o.split("=", 1)[0]]
    for attempt in (others, looks_like_group, []):
        try:
            first = (sweep_points(attempt) or [attempt])[0]  # a sweep's first point stands for it
            if GlobalHydra.instance().is_initialized():
                cfg = compose(config_name=config_name, overrides=first)
            else:
                with initialize_config_dir(config_dir=config_dir or conf_dir(), version_base="1.3"):
                    cfg = compose(config_name=config_name, overrides=first)
            break
        except Exception:  # noqa: BLE001 - the other overrides are broken too; try with fewer
            continue
    explained = hint(given, key, cfg) if hint is not None else None
    if explained:
        return explained
    if cfg is None:
        return f"{given}: unknown key; see {prog} --cfg job"
    parts, node, depth = key.split("."), cfg, 0
    while depth < len(parts) - 1 and isinstance(node, DictConfig) and isinstance(node.get(parts[depth]), DictConfig):
        node, depth = node[parts[depth]], depth + 1
    parent = ".".join(parts[:depth])
    allowed = ", ".join(sorted(k for k in node.keys() if k != "hydra")) if isinstance(node, DictConfig) else ""
    return f"{given}: unknown key; allowed keys{' in ' + parent if parent else ''}: {allowed or 'none'}"


# -- the job ---------------------------------------------------------------------------------------------
def run_job(cfg: DictConfig, check: Callable, work: Callable, prog: str = "lorasim") -> None:
    """The task function of every app: ``work(check(cfg), out_dir)`` returns the text to print.

    A finished multirun job (done.json holds its config's hash) is skipped before anything else, so a
    resumed sweep never touches a finished folder. A config that fails ``check`` removes the job's
    folder when the job made it (hydra's .hydra/ and log only; a folder holding earlier results keeps
    them, and error.txt marks it); a single run then ends with one line and exit 2. In a multirun any
    job's failure is one stderr line and error.txt, and the sweep goes on. done.json is written last."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun, done = _multirun(hc), out_dir / "done.json"
    # A hash of the job's own config (hydra's settings excluded), to recognise a finished job.
    config = OmegaConf.to_yaml({k: cfg[k] for k in cfg if k != "hydra"}, resolve=True)
    fingerprint = hashlib.sha256(config.encode()).hexdigest()
    try:
        finished = multirun and json.loads(done.read_text()).get("config_sha256") == fingerprint
    except (OSError, ValueError):  # no done.json, or an unreadable one
        finished = False
    if finished:
        print(f"job {hc.job.num}: complete in {out_dir}, skipped")
        return
    # The folder may hold another config's markers (an earlier sweep into it): they go before the job
    # runs, so a job killed midway never reads as that other config's finished (or failed) job.
    for stale in (done, out_dir / "error.txt"):
        stale.unlink(missing_ok=True)
    try:
        plan = check(cfg)
        print(share_cores(hc, OmegaConf.select(cfg, "run.threads", default="auto")))
        text = work(plan, out_dir)
    except Exception as e:  # noqa: BLE001 - a sweep records any job's failure and goes on
        refused = isinstance(e, ConfigError)
        # Bad input found only in the job: no folder, as from the precheck, where the folder holds only
        # what hydra wrote for this job (.hydra/ and the job's log).
        if refused and out_dir.is_dir() and set(os.listdir(out_dir)) <= {".hydra", f"{hc.job.name}.log"}:
            _remove_folder(out_dir)
        if not multirun:
            if refused:
                error(str(e))
            raise
        message = str(e) if refused else f"{type(e).__name__}: {e}"
        if out_dir.is_dir():
            atomic_write(out_dir / "error.txt", lambda tmp: Path(tmp).write_text(message + "\n"))
        sys.stderr.write(f"{prog}: job {hc.job.num}: {message}\n")
        return
    write_json({"config_sha256": fingerprint}, done)  # last, atomically: every output of this config is complete
    print(text)
    print(f"outputs: {out_dir}")


def _multirun(hc) -> bool:
    return hc.mode is not None and hc.mode.name == "MULTIRUN"


def _remove_folder(out_dir: Path) -> None:
    """Remove the job's folder, and the parents hydra made for it that are now empty (inside cwd)."""
    for handler in logging.getLogger().handlers[:]:  # hydra's file handler holds the job's log open
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == out_dir.resolve():
            logging.getLogger().removeHandler(handler)
            handler.close()
    shutil.rmtree(out_dir, ignore_errors=True)
    cwd, parent = Path.cwd().resolve(), out_dir.resolve().parent
    while parent != cwd and cwd in parent.parents and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def sweep_cache_dir() -> Optional[Path]:
    """Where a multirun's jobs share results: <sweep dir>/.lorasim-cache (None outside a multirun)."""
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    return Path(hc.sweep.dir) / ".lorasim-cache" if hc is not None and _multirun(hc) else None


# -- threads and GPUs ------------------------------------------------------------------------------------
def available_cores() -> int:
    """The CPU cores this process may use: its affinity mask (taskset, SLURM, containers that pin),
    capped by a cgroup v2 CPU quota (docker --cpus) where one is set; os.cpu_count() elsewhere."""
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
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    threads = max(1, cores // max(1, workers))
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        threads = min(threads, int(env))
    return threads


def launcher_workers(hc, cores: int) -> tuple[int, str]:
    """How many jobs of this sweep share the cores at once, and the launcher's word for it."""
    target = str(OmegaConf.select(hc, "launcher._target_", default="") or "").lower()
    if "joblib" in target:
        n_jobs = OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1
        n_jobs = max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs  # joblib: -1 = all cores, -2 = all but one
        return n_jobs, f"{n_jobs} joblib workers"
    # Each job holds its cores: submitit's cpus_per_task (SLURM also pins them), ray's remote num_cpus.
    for key, word in (("launcher.cpus_per_task", "cpus_per_task"), ("launcher.ray.remote.num_cpus", "ray num_cpus")):
        cpus = OmegaConf.select(hc, key, default=None)
        if isinstance(cpus, int) and cpus >= 1:
            return max(1, cores // cpus), f"{word}={cpus}"
    return 1, "1 job at a time"


def share_cores(hc, setting="auto") -> str:
    """Set torch's and numpy's BLAS thread counts for this job (``pick_threads``) and return the log line saying it.
    Parallel local workers split the machine: the cores (instead of each taking them all, which
    oversubscribes), and, where several GPUs are visible, the GPUs — job n runs on GPU n mod count,
    so a joblib sweep with n_jobs = #GPUs keeps every GPU busy with one job."""
    import torch

    from .linalg import set_threads

    cores = available_cores()
    workers, how = launcher_workers(hc, cores)
    threads = pick_threads(setting, cores, workers)
    set_threads(threads)
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


# -- help ------------------------------------------------------------------------------------------------
def group_options(group: str, config_dir: Optional[str] = None, default: Optional[str] = None) -> str:
    """A conf group's options as one line, the default first (read from the conf folder, so never stale)."""
    names = sorted(p.stem for p in Path(config_dir or conf_dir(), group).glob("*.yaml"))
    if default in names:
        names = [f"{default} (default)"] + [n for n in names if n != default]
    return ", ".join(names)


def wrap_help(rows: list[tuple[str, str, str]], width: int = 100) -> str:
    """``  name  description`` then the options, indented, wrapped at ``width``."""
    pad = max(len(name) for name, _, _ in rows) + 4
    out = []
    for name, what, options in rows:
        out.append(f"  {name:<{pad - 2}}{what}")
        if options:
            out += textwrap.wrap(options, width, initial_indent=" " * pad, subsequent_indent=" " * pad,
                                 break_on_hyphens=False)
    return "\n".join(out)
