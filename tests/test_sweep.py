"""Multirun aggregation: one table with every job, sweep figures, lorasim-plot, failed jobs kept."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lorasim.sweep import aggregate, gather


def _run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    res = _run(["-m", "lorasim", "-m", "run.rank=2,4", "problem.d=16,24,32", "problem.k=16", "problem.r_star=2",
                "problem.n=200", "run.steps=30", "run.quiet=true", f"hydra.sweep.dir={root / 's'}"], cwd=root)
    assert res.returncode == 0, res.stderr
    return root / "s"


@pytest.mark.slow
def test_a_2x3_sweep_aggregates_every_job(sweep):
    agg = pd.read_csv(sweep / "aggregate.csv")
    assert sorted(agg["job"].unique()) == list(range(6))
    assert (agg["job_status"] == "ok").all()
    assert len(agg) == 6 * 4 * 31  # jobs × methods × logged steps
    grid = agg.groupby(["run.rank", "problem.d"])["job"].nunique()
    assert grid.to_dict() == {(r, d): 1 for r in (2, 4) for d in (16, 24, 32)}
    summary = pd.read_csv(sweep / "aggregate_summary.csv")
    assert len(summary) == 24 and set(summary["method"]) == {"vanilla_gd", "spectral_precgd", "lora_ga_precgd",
                                                            "full_ft"}
    for name in ("sweep_alignment.png", "sweep_final_risk.png", "sweep_steps_to_eps.png"):
        assert (sweep / name).stat().st_size > 0


@pytest.mark.slow
def test_lorasim_plot_redraws_without_recomputing(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    for png in copy.glob("sweep_*.png"):
        png.unlink()
    (copy / "aggregate.csv").unlink()
    res = _run(["-c", "from lorasim.sweep import plot_main; plot_main()", str(copy)], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (copy / "aggregate.csv").exists() and len(list(copy.glob("sweep_*.png"))) == 3
    bad = _run(["-c", "from lorasim.sweep import plot_main; plot_main()", str(tmp_path / "nope")], cwd=tmp_path)
    assert bad.returncode == 2 and "dir=" in bad.stderr


@pytest.mark.slow
def test_failed_and_unfinished_jobs_stay_in_the_table(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep, copy)
    (copy / "1" / "error.txt").write_text("methods.x.solver.lr=-1: allowed finite number in (0, inf]\n")
    for name in ("results.csv", "summary.csv"):
        (copy / "1" / name).unlink()
    (copy / "2" / "summary.csv").unlink()  # killed before its summary was written
    results, summary = gather(copy)
    status = summary.groupby("job")["job_status"].first().to_dict()
    assert status[1] == "error" and status[2] == "incomplete" and status[0] == "ok"
    assert "lr=-1" in summary.loc[summary["job"] == 1, "error"].iloc[0]
    aggregate(copy)  # still draws from the good jobs
    assert (copy / "sweep_alignment.png").exists()
