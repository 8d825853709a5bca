"""Multirun aggregation: one table with every job, sweep figures, lorasim-plot, failed jobs kept; the launchers."""
import importlib.util
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
    (copy / "2" / "done.json").unlink()  # killed before it finished writing
    results, summary = gather(copy)
    status = summary.groupby("job")["job_status"].first().to_dict()
    assert status[1] == "error" and status[2] == "incomplete" and status[0] == "ok"
    assert "lr=-1" in summary.loc[summary["job"] == 1, "error"].iloc[0]
    aggregate(copy)  # still draws from the good jobs
    assert (copy / "sweep_alignment.png").exists()


@pytest.mark.slow
def test_killed_sweep_resumes_without_recomputing_finished_jobs(tmp_path):
    import signal
    import time

    args = ["-m", "lorasim", "-m", "problem.seed=0,1,2,3", "problem.d=64", "problem.k=64", "problem.n=1024",
            "run.steps=400", "run.quiet=true", f"hydra.sweep.dir={tmp_path / 's'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    first = tmp_path / "s" / "0" / "done.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), "job 0 never finished"
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("*/done.json")}
    assert len(finished) < 4, "the sweep ended before it could be killed"
    assert not list((tmp_path / "s").glob("*/.*.tmp*"))  # no half-written files
    res = _run(args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("skipped") == len(finished)
    for name, mtime in finished.items():
        assert (tmp_path / "s" / name / "done.json").stat().st_mtime_ns == mtime  # not recomputed
    summary = pd.read_csv(tmp_path / "s" / "aggregate_summary.csv")
    assert sorted(summary["job"].unique()) == [0, 1, 2, 3] and (summary["job_status"] == "ok").all()


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra

    from lorasim import app

    real = app.execute

    def execute(plan, out_dir, cache_dir=None):
        if plan.run.rank == 3:  # a failure no check can foresee
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(plan, out_dir, cache_dir)

    monkeypatch.setattr(app, "execute", execute)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lorasim", "-m", "run.rank=3,2", "methods=single", "problem.d=8", "problem.k=8",
                                      "problem.r_star=2", "problem.n=64", "run.steps=10", "run.quiet=true",
                                      "run.figure=false", "hydra.sweep.dir=s"])
    GlobalHydra.instance().clear()
    app.main()
    GlobalHydra.instance().clear()
    summary = pd.read_csv(tmp_path / "s" / "aggregate_summary.csv")
    assert summary.groupby("job")["job_status"].first().to_dict() == {0: "error", 1: "ok"}
    assert "CUDA out of memory" in summary.loc[summary["job"] == 0, "error"].iloc[0]


HAS_RAY = all(importlib.util.find_spec(m) is not None for m in ("ray", "hydra_plugins.hydra_ray_launcher"))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "slurm_local", pytest.param("ray", marks=pytest.mark.skipif(
    not HAS_RAY, reason="ray and hydra-ray-launcher are not installed"))])
def test_shipped_launchers_run_a_small_sweep(tmp_path, launcher):
    """joblib processes, the submitit SLURM path through its local executor (no sbatch), a local ray."""
    res = _run(["-m", "lorasim", "-m", f"hydra/launcher={launcher}", "run.rank=2,4", "problem.d=16", "problem.k=16",
                "problem.r_star=2", "problem.n=200", "run.steps=20", "run.quiet=true",
                f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(tmp_path / "s" / "aggregate_summary.csv")
    assert sorted(summary["job"].unique()) == [0, 1] and (summary["job_status"] == "ok").all()
    assert sorted(summary["run.rank"].unique()) == [2, 4]


@pytest.mark.parametrize("preset, axis, n_points", [
    ("rank_dim", "run.rank", 16), ("kappa", "problem.kappa", 6), ("alpha", "init.alpha", 6),
    ("n_over_d", "problem.n", 6), ("method_compare", "solver", 24),
])
def test_sweep_presets_list_their_grid(preset, axis, n_points):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from lorasim.job import conf_dir, sweep_points

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={preset}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert axis in params and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert len(sweep_points([f"{k}={v}" for k, v in params.items()])) == n_points


def test_a_bad_point_in_a_sweep_preset_fails_before_any_job(tmp_path):
    res = _run(["-m", "lorasim", "sweep=alpha", "init.alpha=-1,0.1", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path)
    assert res.returncode == 2 and "init.alpha=-1" in res.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_diverging_config_completes_and_is_marked(tmp_path):
    res = _run(["-m", "lorasim", "-m", "methods.vanilla_gd.solver.lr=0.25,80", "problem.d=16", "problem.k=16",
                "problem.r_star=2", "problem.n=128", "run.rank=4", "run.steps=60", "run.quiet=true",
                f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(tmp_path / "s" / "aggregate_summary.csv").set_index(["job", "method"])
    assert summary.loc[(1, "vanilla_gd"), "status"] == "diverged"
    assert summary.loc[(0, "vanilla_gd"), "status"] == "ok"
    assert (summary["job_status"] == "ok").all()


def test_the_ray_preset_is_the_plugins_launcher_on_a_local_ray_one_core_per_job():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lorasim.job import conf_dir, launcher_workers

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=ray"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address is None and launcher.ray.remote.num_cpus == 1
    assert launcher_workers(cfg.hydra, cores=4) == (4, "ray num_cpus=1")
