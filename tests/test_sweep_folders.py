"""Sweep folders that tell the truth: the recorded job list, stale and never-started jobs, resuming,
sweep-level progress (issue 12, section 2)."""
import json
import shlex
import shutil
import sys

import pandas as pd
import pytest
import torch
import yaml

from lorasim.sweep import RECORD, _resume_plan, aggregate, gather, resume_main

from test_sweep import _run  # the CLI in a subprocess, one thread

torch.set_num_threads(1)

# 6 kappas from the preset's hydra.sweeper.params × 2 ranks from the command line: 12 tiny jobs.
SWEEP = ["sweep=kappa", "run.rank=2,4", "problem.d=8", "problem.k=8", "problem.r_star=2", "problem.n=64",
         "run.steps=3", "run.figure=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    res = _run(["-m", "lorasim", "-m", *SWEEP, f"hydra.sweep.dir={root / 's'}"], cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "s", res


@pytest.fixture
def copy(sweep, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(sweep[0], target)
    return target


def _overrides(folder):
    return yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.slow
def test_the_recorded_job_list_is_hydras_numbering(sweep):
    """jobs[n] is exactly job n's .hydra/overrides.yaml (the preset's params first, as hydra's sweeper
    orders them; values as hydra formats them, e.g. run.figure=False)."""
    folder, _ = sweep
    record = json.loads((folder / RECORD).read_text())
    assert record["program"] == "lorasim" and len(record["jobs"]) == 12
    for n, overrides in enumerate(record["jobs"]):
        assert _overrides(folder / str(n)) == overrides, n
    assert record["jobs"][0][0] == "problem.kappa=1" and "run.figure=False" in record["jobs"][0]


@pytest.mark.slow
def test_the_sweep_prints_its_resume_command_and_progress(sweep):
    """Old: nothing printed; resuming needed hydra.sweep.dir, and a sweep showed no progress."""
    folder, res = sweep
    line = next(ln.strip() for ln in res.stdout.splitlines() if ln.strip().startswith("lorasim -m"))
    assert shlex.split(line) == ["lorasim", "-m", *SWEEP, f"hydra.sweep.dir={folder.resolve()}"]
    program, argv, _ = _resume_plan(folder)
    assert [program, *argv] == shlex.split(line)  # lorasim-resume runs exactly the printed command
    assert f"lorasim-resume {folder.resolve()}" in res.stdout
    progress = [ln for ln in res.stdout.splitlines() if ln.startswith("sweep: job ")]
    assert len(progress) == 12 and progress[-1].startswith("sweep: job 12/12 done")
    assert not (folder / ".progress").exists()


@pytest.mark.slow
def test_a_smaller_rerun_into_an_old_folder_aggregates_only_its_own_jobs(copy):
    """Old: aggregate.csv mixed the earlier sweep's jobs 2-11 (run.steps=3) into the new 2-job sweep."""
    res = _run(["-m", "lorasim", "-m", "problem.kappa=1,2", "problem.d=8", "problem.k=8", "problem.r_star=2",
                "problem.n=64", "run.rank=2", "run.steps=2", "run.quiet=true", "run.figure=false",
                f"hydra.sweep.dir={copy}"], cwd=copy.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = pd.read_csv(copy / "aggregate_summary.csv")
    assert sorted(summary["job"].unique()) == [0, 1] and (summary["run.steps"] == 2).all()
    assert (summary["job_status"] == "ok").all()
    warning = [ln for ln in res.stderr.splitlines() if "warning" in ln and "ignored" in ln]
    assert len(warning) == 1 and warning[0].endswith(": 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"), res.stderr[-2000:]
    assert "sweep: job " not in res.stdout  # run.quiet=true: no progress lines
    assert "lorasim -m problem.kappa=1,2" in res.stdout  # the resume command is always printed


@pytest.mark.slow
def test_jobs_a_killed_sweep_never_started_are_listed(copy, capsys):
    """Old: the missing jobs were silently absent from the table and the figures."""
    shutil.rmtree(copy / "10")
    shutil.rmtree(copy / "11")
    (copy / "3" / "done.json").unlink()  # started, stopped before it finished
    _, summary = gather(copy)
    status = summary.groupby("job")["job_status"].first()
    assert list(status.index) == list(range(12))
    assert status[10] == status[11] == "not_started" and status[3] == "incomplete" and status[0] == "ok"
    row = summary[summary["job"] == 11].iloc[0]
    assert row["run.rank"] == 4 and row["problem.kappa"] == 32  # the never-started job's point, from its overrides
    assert "lorasim-resume" in row["error"] and "problem.kappa=32" in row["error"]
    assert "warning" not in capsys.readouterr().err  # nothing stale here
    aggregate(copy)  # the figures draw from the finished jobs
    assert len(list(copy.glob("sweep_*.png"))) == 3


@pytest.mark.slow
def test_a_same_numbered_folder_holding_another_config_is_ignored(copy, capsys):
    """A folder whose overrides are not its job's (an older sweep's job 5, never rerun) is not job 5."""
    (copy / "5" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["problem.kappa=4", "run.steps=300"]))
    _, summary = gather(copy)
    assert summary.loc[summary["job"] == 5, "job_status"].tolist() == ["not_started"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ignored 1 job folder" in err[0] and err[0].endswith(": 5")


@pytest.mark.slow
def test_a_folder_without_a_job_list_is_aggregated_as_before_with_a_warning(copy, capsys):
    (copy / RECORD).unlink()
    shutil.copytree(copy / "0", copy / "12")  # an earlier sweep's extra job: cannot be told apart
    _, summary = gather(copy)
    assert sorted(summary["job"].unique()) == list(range(13))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and RECORD in err and "every job folder" in err
    program, argv, _ = _resume_plan(copy)  # resumable from hydra's multirun.yaml
    assert program == "lorasim" and argv == ["-m", *SWEEP, f"hydra.sweep.dir={copy.resolve()}"]


@pytest.mark.slow
def test_lorasim_resume_reruns_only_unfinished_jobs(copy):
    shutil.rmtree(copy / "11")  # never started
    (copy / "4" / "done.json").unlink()  # stopped before it finished
    finished = {p.parent.name: p.stat().st_mtime_ns for p in copy.glob("*/done.json")}
    res = _run(["-c", "from lorasim.sweep import resume_main; resume_main()", str(copy)], cwd=copy.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith(f"resuming: lorasim -m {SWEEP[0]}")
    assert res.stdout.count("skipped") == len(finished) == 10
    for name, mtime in finished.items():
        assert (copy / name / "done.json").stat().st_mtime_ns == mtime  # not recomputed
    summary = pd.read_csv(copy / "aggregate_summary.csv")
    assert sorted(summary["job"].unique()) == list(range(12)) and (summary["job_status"] == "ok").all()


def test_lorasim_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path, monkeypatch, capsys):
    cases = [(tmp_path / "nope", "allowed an existing multirun folder"),
             (tmp_path, "not a lorasim sweep folder")]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / RECORD).write_text(json.dumps({"program": "rm", "overrides": [], "hydra_overrides": [],
                                                          "jobs": []}))
    cases.append((tmp_path / "other", "allowed a sweep of lorasim, lorasim-llm"))
    for folder, message in cases:
        monkeypatch.setattr(sys, "argv", ["lorasim-resume", str(folder)])
        with pytest.raises(SystemExit) as stop:
            resume_main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.slow
def test_a_lorasim_llm_sweep_records_its_jobs_and_resumes(tmp_path):
    sweep = tmp_path / "llm"
    args = ["seed=0,1", "run.steps=2", "run.log_every=1", "run.eval_every=2", "run.init_batches=1",
            "run.batch_size=4", "task.eval_per_class=2", "task.train_per_class=8"]
    res = _run(["-m", "lorasim.llm.app", "-m", *args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((sweep / RECORD).read_text())
    assert record["program"] == "lorasim-llm" and [_overrides(sweep / str(n)) for n in (0, 1)] == record["jobs"]
    shutil.rmtree(sweep / "1")
    res = _run(["-c", "from lorasim.sweep import resume_main; resume_main()", str(sweep)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("resuming: lorasim-llm -m seed=0,1") and res.stdout.count("skipped") == 1
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["job"]) == [0, 1] and set(summary["job_status"]) == {"ok"}


def test_a_job_killed_in_a_reused_folder_leaves_no_stale_markers(tmp_path, monkeypatch):
    """A folder holding another config's done.json / error.txt: the job clears them before it runs,
    so a kill midway leaves an incomplete job, not the other config's result (old run_job kept them)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    import hydra.core.hydra_config as hydra_config
    from lorasim import job

    (tmp_path / "done.json").write_text(json.dumps({"config_sha256": "another config"}))
    (tmp_path / "error.txt").write_text("an earlier failure\n")
    hc = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path)), mode=SimpleNamespace(name="MULTIRUN"),
                         job=SimpleNamespace(num=0), launcher={})
    monkeypatch.setattr(hydra_config.HydraConfig, "get", staticmethod(lambda: hc))
    monkeypatch.setattr(job, "share_cores", lambda *a, **k: "threads: 1")

    def killed(cfg, out_dir):
        raise KeyboardInterrupt  # not an Exception: the sweep's error handler does not see it

    with pytest.raises(KeyboardInterrupt):
        job.run_job(OmegaConf.create({"run": {"steps": 1}}), lambda cfg: cfg, killed)
    assert not (tmp_path / "done.json").exists() and not (tmp_path / "error.txt").exists()
