"""Multirun folders: the sweep's job list, every job's results in one tidy table, the sweep figures,
resuming a stopped sweep.

    lorasim -m run.rank=1,2,4,8 problem.d=64,128,256     # prints its resume command; aggregates when it ends
    lorasim-plot SWEEP_DIR                               # redraw from the saved results, no recompute
    lorasim-resume SWEEP_DIR                             # run the jobs a stopped sweep did not finish

When a multirun starts, the callback writes ``sweep_jobs.json`` into the sweep folder: the program,
its command-line overrides, the resume command and ``jobs`` (``jobs[n]`` = job n's override list,
expanded the way hydra's basic sweeper numbers its jobs). The aggregate holds exactly those jobs:

- a job folder counts only if it is listed and its ``.hydra/overrides.yaml`` equals the recorded
  overrides; any other folder (left by an earlier, larger sweep into the same folder, or a
  same-numbered folder still holding another config) is ignored and named in one warning line;
- a listed job without a folder is a row with ``job_status=not_started``.

``aggregate.csv`` has one row per job × method × logged step: the job's results.csv columns plus
``job`` (its number), ``job_status`` (ok, error, incomplete, not_started), ``error`` and the job's
config flattened to ``problem.*`` and ``run.*`` columns. ``aggregate_summary.csv`` is the same per
job × method from each summary.csv. A job that raised, was stopped or never started still has its
row, with the reason, so a sweep's table accounts for every job. A folder written before job lists
were recorded is aggregated from every job folder in it, with a warning.
"""
from __future__ import annotations

import importlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Optional

import pandas as pd
import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .io import write_csv, write_json
from .job import error
from .plots import sweep_figures

RECORD = "sweep_jobs.json"
PROGRESS = ".progress"  # one empty file per ended job while a sweep runs (jobs may end in other processes)
PROGRAMS = {"config": "lorasim", "llm": "lorasim-llm"}  # hydra config name -> the program that composes it
ENTRY_POINTS = {"lorasim": "lorasim.app", "lorasim-llm": "lorasim.llm.app"}  # program -> module with main()
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _warn(message: str) -> None:
    sys.stderr.write(f"lorasim: warning: {message}\n")


# --- the job list --------------------------------------------------------------------------------

def list_jobs(overrides: list[str], params: dict, max_batch_size: Optional[int] = None,
              config_loader=None) -> list[list[str]]:
    """Every job's override list, in hydra's job numbering: exactly what the basic sweeper does
    (its ``params`` first, then the command-line overrides, expanded by its own split_arguments),
    so ``jobs[n]`` equals job n's ``.hydra/overrides.yaml``. Raises where the sweeper would."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(overrides)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size)
    return [list(job) for batch in batches for job in batch]  # numbering runs on across batches


def resume_argv(overrides: list[str], hydra_overrides: list[str], sweep_dir) -> list[str]:
    """The arguments that rerun a sweep into its folder (finished jobs are skipped by done.json): its
    overrides and hydra overrides (a launcher, say), with -m and the folder made explicit."""
    kept = [o for o in hydra_overrides if o.split("=", 1)[0] not in ("hydra.mode", "hydra.sweep.dir")]
    return ["-m", *overrides, *kept, f"hydra.sweep.dir={sweep_dir}"]


def record_sweep(config, config_name: Optional[str]) -> dict:
    """Write ``sweep_jobs.json`` for the multirun that ``config`` (its composed config) describes.
    Always written, so a job list left by an earlier sweep into the folder never outlives it; where
    the jobs cannot be listed (another sweeper, a sweep hydra expands later) ``jobs`` is null."""
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    overrides = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    hydra_overrides = list(OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False))
    program = PROGRAMS.get(config_name, str(config_name))  # an unknown one is refused by lorasim-resume
    # hydra's default job folders are named by job number; a custom hydra.sweep.subdir names them otherwise
    subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
    record = {"format": 1, "program": program, "config_name": config_name, "cwd": os.getcwd(),
              "sweep_dir": str(sweep_dir), "overrides": overrides, "hydra_overrides": hydra_overrides,
              "resume_command": shlex.join([program, *resume_argv(overrides, hydra_overrides, sweep_dir)]),
              "numbered": subdir == "${hydra.job.num}", "jobs": None, "unlisted_reason": ""}
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if target != BASIC_SWEEPER:
        record["unlisted_reason"] = f"hydra.sweeper is {target or 'unknown'}: only the basic sweeper's jobs are listed"
    else:
        try:
            loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
            params = config.hydra.sweeper.params
            params = OmegaConf.to_container(params, resolve=True) if params else {}
            record["jobs"] = list_jobs(overrides, params, config.hydra.sweeper.max_batch_size, loader)
        except Exception as e:  # noqa: BLE001 - the sweeper itself reports a bad sweep; the list is best effort
            record["unlisted_reason"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    write_json(record, sweep_dir / RECORD)
    return record


def read_record(sweep_dir) -> Optional[dict]:
    """The folder's ``sweep_jobs.json``, or None where there is none (a sweep from before job lists)."""
    path = Path(sweep_dir) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("jobs", []), (list, type(None))):
        raise ValueError(f"{path}: not a lorasim job list (expected an object with a 'jobs' list)")
    return record


# --- gathering -----------------------------------------------------------------------------------

def _flat(prefix: str, node) -> dict:
    if not isinstance(node, dict):
        return {prefix: node if not isinstance(node, list) else str(node)}
    return {k: v for key, value in node.items()
            for k, v in _flat(f"{prefix}.{key}" if prefix else str(key), value).items()}


def _job_dirs(sweep_dir: Path) -> list:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()),
                  key=lambda p: (len(p.name), p.name))


def _folder_overrides(job: Path) -> Optional[list]:
    """The job's override list as hydra saved it when the job started (None: unreadable)."""
    path = job / ".hydra" / "overrides.yaml"
    try:
        got = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [] if got is None else (list(got) if isinstance(got, list) else None)


def match_jobs(jobs: list, folders: list, numbered: bool = True) -> tuple[list, list, list]:
    """(listed jobs with their folder [(n, folder)], listed jobs without one [(n, overrides)], folders
    that belong to no listed job). A folder is job n's when its overrides equal ``jobs[n]`` and, with
    hydra's default numbered folders (``numbered``), its name is n."""
    by_overrides: dict = {}
    for n, overrides in enumerate(jobs):
        by_overrides.setdefault(tuple(overrides), []).append(n)
    found, stale = {}, []
    for folder in folders:
        got = _folder_overrides(folder)
        candidates = by_overrides.get(tuple(got), []) if got is not None else []
        if numbered:
            candidates = [n for n in candidates if folder.name == str(n)]
        n = next((n for n in candidates if n not in found), None)
        if n is None:
            stale.append(folder)
        else:
            found[n] = folder
    missing = [(n, jobs[n]) for n in range(len(jobs)) if n not in found]
    return sorted(found.items()), missing, stale


def _status(job: Path) -> tuple[str, str]:
    error, done = job / "error.txt", job / "done.json"
    # A job that failed and then finished on a rerun keeps its old error.txt: the newer file wins.
    if error.is_file() and not (done.is_file() and done.stat().st_mtime_ns > error.stat().st_mtime_ns):
        return "error", error.read_text().strip()
    if done.is_file():
        return "ok", ""
    return "incomplete", "no results (the job was stopped or crashed before writing them)"


def _override_labels(overrides: list, groups: tuple) -> dict:
    """The config columns a never-started job's overrides give (``group.field=value`` only: a bare
    ``group=option`` chooses a config file, not a value)."""
    labels = {}
    for line in overrides:
        key, _, value = line.partition("=")
        key = key.lstrip("+~")
        if "." in key and key.split(".", 1)[0] in groups:
            labels[key] = _scalar(value)
    return labels


def _scalar(text: str):
    """An override's value as the config would hold it (YAML alone reads 1e-3 as a string)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def gather_tables(sweep_dir, tables: tuple[str, ...], groups: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """{table: every job's ``<table>.csv`` stacked} over the jobs of a multirun (the ones its
    sweep_jobs.json lists; see the module doc), each row labelled with ``job``, ``job_status`` (ok,
    error, incomplete, not_started), ``error`` and the job's config groups flattened
    (``<group>.<field>``; top-level scalars keep their name). A job without results keeps one row."""
    sweep_dir = Path(sweep_dir)
    folders = _job_dirs(sweep_dir)
    record = read_record(sweep_dir)
    jobs = record.get("jobs") if record else None
    if jobs is None:
        why = (f"its job list could not be recorded ({record.get('unlisted_reason')})" if record
               else f"it has no {RECORD} (a sweep from before job lists were recorded)")
        if folders:
            _warn(f"{sweep_dir}: {why}: aggregating every job folder in it, including any an earlier sweep left")
        listed = [(int(f.name) if f.name.isdigit() else f.name, f) for f in folders]
        missing = []
    else:
        listed, missing, stale = match_jobs(jobs, folders, numbered=record.get("numbered", True))
        if stale:
            names = ", ".join(f.name for f in stale[:30]) + (f" and {len(stale) - 30} more" if len(stale) > 30 else "")
            _warn(f"{sweep_dir}: ignored {len(stale)} job folder(s) that are not jobs of the sweep in {RECORD} "
                  f"(left by an earlier sweep, or holding another config): {names}")
    if not listed and not missing:
        raise FileNotFoundError(f"{sweep_dir}: no hydra job folders (with .hydra/config.yaml) inside")
    rows = []  # (job, {table: frame})
    for n, job in listed:
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {}
        labels = {"job": n}
        for key in groups:
            node = cfg.get(key, {})
            labels.update(_flat(key, node) if isinstance(node, dict) else {key: node})
        status, error = _status(job)
        labels.update(job_status=status, error=error)
        frames = {}
        for t in tables:
            path = job / f"{t}.csv"
            ok = status == "ok" and path.is_file() and path.stat().st_size > 1
            frames[t] = pd.read_csv(path).assign(**labels) if ok else pd.DataFrame([labels])
        rows.append((n, frames))
    for n, overrides in missing:
        labels = {"job": n, **_override_labels(overrides, groups), "job_status": "not_started",
                  "error": f"not started: no folder (the sweep stopped first, or the job refused its config: "
                           f"its stderr line says why) ({' '.join(overrides)}); "
                           f"lorasim-resume {sweep_dir} runs it"}
        rows.append((n, {t: pd.DataFrame([labels]) for t in tables}))
    rows.sort(key=lambda item: (0, item[0], "") if isinstance(item[0], int) else (1, 0, item[0]))
    return {t: pd.concat([frames[t] for _, frames in rows], ignore_index=True) for t in tables}


def gather(sweep_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-step table, per-method summary) over the jobs of a ``lorasim`` multirun."""
    out = gather_tables(sweep_dir, ("results", "summary"), ("problem", "run"))
    return out["results"], out["summary"]


def aggregate(sweep_dir) -> Path:
    """Gather, write aggregate.csv and aggregate_summary.csv, draw the figures; returns the table's path."""
    sweep_dir = Path(sweep_dir)
    results, summary = gather(sweep_dir)
    write_csv(results, sweep_dir / "aggregate.csv")
    write_csv(summary, sweep_dir / "aggregate_summary.csv")
    sweep_figures(results, summary, sweep_dir)
    return sweep_dir / "aggregate.csv"


# --- callbacks -----------------------------------------------------------------------------------

class SweepRecordCallback(Callback):
    """Hydra callback for any lorasim program's multirun: records the job list and prints the resume
    command when it starts, prints a line per ended job (off with ``run.quiet=true``)."""

    def on_multirun_start(self, config, config_name: Optional[str] = None, **kwargs) -> None:
        record = record_sweep(config, config_name)
        sweep_dir = Path(record["sweep_dir"])
        shutil.rmtree(sweep_dir / PROGRESS, ignore_errors=True)  # counts of an earlier sweep into this folder
        size = f"{len(record['jobs'])} jobs" if record["jobs"] is not None else "jobs not listed"
        print(f"sweep: {size} into {sweep_dir}; resume a stopped sweep with\n  {record['resume_command']}\n"
              f"  (or: lorasim-resume {shlex.quote(str(sweep_dir))})", flush=True)

    def on_job_end(self, config, job_return=None, **kwargs) -> None:
        multirun = str(OmegaConf.select(config, "hydra.mode", default="")) == "RunMode.MULTIRUN"
        if not multirun or OmegaConf.select(config, "run.quiet", default=False) is True:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        num = OmegaConf.select(config, "hydra.job.num")
        try:
            # Jobs may end in other processes (joblib, submitit): count ended jobs on disk, not in memory.
            (sweep_dir / PROGRESS).mkdir(exist_ok=True)
            (sweep_dir / PROGRESS / str(num)).touch()
            ended = len(os.listdir(sweep_dir / PROGRESS))
            record = read_record(sweep_dir)
        except (OSError, ValueError):
            return  # progress is a courtesy: never fail a job over it
        total = len(record["jobs"]) if record and record.get("jobs") is not None else "?"
        print(f"sweep: job {ended}/{total} done (job {num} ended)", flush=True)

    def on_multirun_end(self, config, **kwargs) -> None:
        shutil.rmtree(Path(str(config.hydra.sweep.dir)) / PROGRESS, ignore_errors=True)


class AggregateCallback(SweepRecordCallback):
    """Hydra callback of ``lorasim`` (conf/config.yaml registers it): the job list and progress, and
    the aggregate when the multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        super().on_multirun_end(config, **kwargs)
        path = aggregate(Path(config.hydra.sweep.dir))
        print(f"aggregate: {path}")


# --- command lines -------------------------------------------------------------------------------

def _one_dir_arg(usage: str) -> Path:
    args = sys.argv[1:]
    if len(args) != 1 or args[0].startswith("-"):
        error(f"{shlex.join(args) or '(no arguments)'}: allowed one folder, {usage}")
    target = Path(args[0].split("=", 1)[1] if args[0].startswith("dir=") else args[0])
    if not target.is_dir():
        error(f"dir={str(target)!r}: allowed an existing multirun folder")
    return target


def plot_main() -> None:
    """``lorasim-plot SWEEP_DIR``: rebuild aggregate.csv and the sweep figures from saved job results
    (the same jobs as the sweep's own aggregate: see the module doc)."""
    target = _one_dir_arg("lorasim-plot SWEEP_DIR (or dir=SWEEP_DIR)")
    try:
        print(aggregate(target))
    except (FileNotFoundError, ValueError) as e:
        error(f"dir={str(target)!r}: allowed a multirun folder ({e})")


def _resume_plan(sweep_dir: Path) -> tuple[str, list, str]:
    """(program, its argv, the folder to run from) that reruns the sweep in ``sweep_dir``: from its
    sweep_jobs.json, else from hydra's multirun.yaml (sweeps from before job lists were recorded)."""
    record = read_record(sweep_dir)
    if record is not None:
        program, overrides = record.get("program"), record.get("overrides")
        hydra_overrides = record.get("hydra_overrides")
        cwd = record.get("cwd") or os.getcwd()
    elif (sweep_dir / "multirun.yaml").is_file():
        saved = yaml.safe_load((sweep_dir / "multirun.yaml").read_text()) or {}
        hydra_node = saved.get("hydra", {}) if isinstance(saved, dict) else {}
        program = PROGRAMS.get(str((hydra_node.get("job") or {}).get("config_name")))
        overrides = (hydra_node.get("overrides") or {}).get("task")
        hydra_overrides = (hydra_node.get("overrides") or {}).get("hydra") or []
        cwd = (hydra_node.get("runtime") or {}).get("cwd") or os.getcwd()
    else:
        raise ValueError(f"not a lorasim sweep folder (no {RECORD} or multirun.yaml inside)")
    if program not in ENTRY_POINTS or not isinstance(overrides, list) or not isinstance(hydra_overrides, list):
        raise ValueError(f"records program={program!r}; allowed a sweep of {', '.join(ENTRY_POINTS)}")
    argv = resume_argv(overrides, hydra_overrides, sweep_dir.resolve())  # the folder as given: it may have moved
    return program, argv, cwd if Path(cwd).is_dir() else os.getcwd()


def resume_main() -> None:
    """``lorasim-resume SWEEP_DIR``: rerun a sweep into its folder with the overrides it recorded;
    jobs whose done.json matches their config are skipped, so only unfinished jobs compute. Runs from
    the folder the sweep was started in, so relative paths in its overrides mean the same files."""
    target = _one_dir_arg("lorasim-resume SWEEP_DIR")
    try:
        program, argv, cwd = _resume_plan(target)
    except ValueError as e:
        error(f"dir={str(target)!r}: {e}")
    print(f"resuming: {shlex.join([program, *argv])}", flush=True)
    os.chdir(cwd)
    sys.argv = [program, *argv]
    importlib.import_module(ENTRY_POINTS[program]).main()
