"""Speed and progress (issue 12 §4): full_ft computed once per distinct problem in a sweep, the
thread count chosen from the job's share of the cores and recorded, progress bars on batched
runs, and the CPU-sized ScaledGD anchor preset."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import lorasim
from lorasim import app, job
from lorasim.app import execute, validate
from lorasim.config import ConfigError

torch.set_num_threads(1)

SMALL = ("problem.d=20", "problem.k=16", "problem.r_star=2", "problem.n=160", "run.steps=25", "run.quiet=true",
         "run.figure=false")


@pytest.fixture(autouse=True)
def one_thread():
    yield
    torch.set_num_threads(1)  # whatever a test set, the next one runs on one thread


def _full_ft_calls(monkeypatch):
    """Count the full_ft trainings the app starts (execute calls lorasim.engine.train as lorasim.app.train)."""
    calls = []
    module = sys.modules["lorasim.app"]
    real = module.train

    def counting(*args, **kwargs):
        solver = kwargs.get("solver")
        if getattr(solver, "name", solver) == "full_ft":
            calls.append(kwargs.get("rank"))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train", counting)
    return calls


def _rows(results, method):
    """One method's rows with its own columns (the others' columns are all-NaN for it; the column
    order of a results table follows its first method, so it is sorted here)."""
    rows = results[results["method"] == method].reset_index(drop=True).dropna(axis=1, how="all")
    return rows[sorted(rows.columns)]


# --- 1. full_ft once per distinct problem ------------------------------------------------------

def test_a_rank_sweep_trains_full_ft_once_and_every_job_has_the_fresh_rows(cfg_of, tmp_path, monkeypatch):
    """Two jobs of a rank sweep sharing a cache folder: full_ft is trained by the first only, and
    both jobs' full_ft rows equal (bitwise) those of a fresh run at a third rank without a cache."""
    calls = _full_ft_calls(monkeypatch)
    cache = tmp_path / "sweep" / ".lorasim-cache"
    got = {}
    for rank in (1, 2):
        got[rank] = execute(validate(cfg_of(*SMALL, f"run.rank={rank}")), tmp_path / "sweep" / str(rank - 1),
                            cache_dir=cache)
    assert len(calls) == 1
    assert len(list(cache.glob("*.json"))) == 1
    fresh, fresh_summary = execute(validate(cfg_of(*SMALL, "run.rank=4")), tmp_path / "fresh")
    assert len(calls) == 2
    want = _rows(fresh, "full_ft")
    for rank, (results, summary) in got.items():
        pd.testing.assert_frame_equal(_rows(results, "full_ft"), want, check_exact=True)
        on_disk = pd.read_csv(tmp_path / "sweep" / str(rank - 1) / "results.csv")
        pd.testing.assert_frame_equal(_rows(on_disk, "full_ft"),
                                      _rows(pd.read_csv(tmp_path / "fresh" / "results.csv"), "full_ft"),
                                      check_exact=True)
    s1 = got[1][1].set_index("method")
    s2 = got[2][1].set_index("method")
    assert pd.isna(s1.loc["full_ft", "reused_from"]) and s2.loc["full_ft", "reused_from"] == "0/"
    assert s2.loc["full_ft", "wall_s"] == s1.loc["full_ft", "wall_s"]  # the original's wall time
    assert s2.drop(index="full_ft")["reused_from"].isna().all()
    # The LoRA methods do depend on the rank: they are trained in each job.
    assert not _rows(got[1][0], "vanilla_gd").equals(_rows(got[2][0], "vanilla_gd"))


def test_the_cache_key_changes_with_what_full_ft_depends_on_and_not_with_rank_or_seed(cfg_of):
    from lorasim.problems import make_problem

    def key(*overrides):
        plan = validate(cfg_of(*SMALL, *overrides))
        name, (_, solver) = next((n, m) for n, m in plan.methods.items() if m[1].name == "full_ft")
        return app.full_ft_key(plan, name, solver, app.full_ft_rank(make_problem(plan.problem), plan.run.rank))

    base = key("run.rank=1")
    assert key("run.rank=4") == base and key("run.seed=3") == base and key("run.quiet=false") == base
    for other in ("problem.seed=1", "problem.dtype=float32", "run.steps=26", "run.log_every=5", "run.risk_eps=1e-8",
                  "run.metrics=risk", "run.diverge_factor=1e6", "methods.full_ft.solver.lr=0.25"):
        assert key("run.rank=1", other) != base, other
    torch.set_num_threads(2)
    assert key("run.rank=1") != base  # bitwise results depend on the thread count


def test_a_failed_lock_defers_full_ft_until_the_other_methods_are_done(cfg_of, tmp_path, monkeypatch):
    """While another job holds full_ft's lock, this job trains its LoRA methods first, then waits
    and reuses the other job's result."""
    fcntl = pytest.importorskip("fcntl")
    plan = validate(cfg_of(*SMALL, "run.rank=2"))
    cache = tmp_path / ".lorasim-cache"
    first, _ = execute(plan, tmp_path / "0", cache_dir=cache)  # fills the cache
    (key_file,) = cache.glob("*.json")
    order = []
    real_fetch = app.RankFreeCache.fetch

    def fetch(self, key, compute, wait):
        order.append(wait)
        if not wait:
            return None  # as if another job held the lock
        return real_fetch(self, key, compute, wait)

    monkeypatch.setattr(app.RankFreeCache, "fetch", fetch)
    calls = _full_ft_calls(monkeypatch)
    results, summary = execute(plan, tmp_path / "1", cache_dir=cache)
    assert order == [False, True] and calls == []
    pd.testing.assert_frame_equal(_rows(results, "full_ft"), _rows(first, "full_ft"), check_exact=True)
    assert list(summary["method"]) == list(plan.methods)  # the methods' order is kept
    assert fcntl is not None and key_file.exists()


def test_full_ft_logs_the_same_columns_at_every_rank(small_linear):
    """full_ft's frame in the app does not depend on run.rank (max(8, r*) singular values, r* angles)."""
    from lorasim.app import full_ft_rank

    assert full_ft_rank(small_linear, 1) == full_ft_rank(small_linear, 16) == 8
    traj = lorasim.train(small_linear, solver="full_ft", lr=0.5, steps=3, rank=full_ft_rank(small_linear, 1))
    df = traj.to_frame()
    assert [c for c in df if c.startswith("theta_A_")] == ["theta_A_1", "theta_A_2"]
    assert [c for c in df if c.startswith("sv_A_")] == [f"sv_A_{i}" for i in range(1, 9)]


# --- 2. threads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, cores, workers, want", [
    ("auto", 2, 2, 1), ("auto", 2, 1, 2), ("auto", 16, 3, 5), ("auto", 1, 4, 1), (3, 2, 2, 3),
])
def test_pick_threads_keeps_workers_times_threads_within_the_cores(monkeypatch, setting, cores, workers, want):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert job.pick_threads(setting, cores, workers) == want


def test_omp_num_threads_caps_auto(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert job.pick_threads("auto", 8, 1) == 1
    assert job.pick_threads(4, 8, 1) == 4  # an explicit run.threads wins


def _hydra_config(target, **launcher):
    return OmegaConf.create({"launcher": {"_target_": target, **launcher}, "job": {"num": 0}})


def test_a_joblib_sweep_of_two_workers_on_two_cores_runs_one_thread_each(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(job, "available_cores", lambda: 2)
    line = job.share_cores(_hydra_config("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                                          n_jobs=2), "auto")
    assert torch.get_num_threads() == 1
    assert line.startswith("threads: 1 (auto: 2 cores, 2 joblib workers")
    job.share_cores(_hydra_config("hydra._internal.core_plugins.basic_launcher.BasicLauncher"), "auto")
    assert torch.get_num_threads() == 2
    job.share_cores(_hydra_config("x.JoblibLauncher", n_jobs=-1), "auto")  # joblib's -1: one worker per core
    assert torch.get_num_threads() == 1
    line = job.share_cores(_hydra_config("x.JoblibLauncher", n_jobs=2), 2)
    assert torch.get_num_threads() == 2 and line.startswith("threads: 2 (run.threads)")


def test_available_cores_uses_the_affinity_mask():
    if hasattr(os, "sched_getaffinity"):
        assert job.available_cores() <= len(os.sched_getaffinity(0))
    assert job.available_cores() >= 1


def test_problem_json_records_the_thread_count(cfg_of, tmp_path):
    execute(validate(cfg_of(*SMALL, "run.rank=2")), tmp_path)
    facts = json.loads((tmp_path / "problem.json").read_text())
    assert facts["threads"] == torch.get_num_threads() == 1
    assert facts["run"]["threads"] == "auto"


@pytest.mark.parametrize("value", [0, -1, "many", 1.5])
def test_run_threads_is_validated(cfg_of, value):
    with pytest.raises(ConfigError, match=r"^run\.threads="):
        validate(cfg_of(f"run.threads={value}"))


# --- 3. progress ---------------------------------------------------------------------------------

def _draw_every_update(monkeypatch):
    """tqdm redraws at most every 0.1 s: a test-sized run would show only 0/N."""
    import functools

    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, mininterval=0))


def test_train_batch_shows_steps_on_stderr_and_is_silent_without_progress(small_linear, capsys, monkeypatch):
    _draw_every_update(monkeypatch)
    inits = [{"init": "small_random", "rank": 2, "seed": s} for s in range(2)]
    lorasim.train_batch(small_linear, inits, solver="gd", lr=0.1, steps=30, log_every=10, progress=True)
    err = capsys.readouterr().err
    assert "30/30" in err and "2 runs" in err
    lorasim.train_batch(small_linear, inits, solver="gd", lr=0.1, steps=30, log_every=10)
    assert capsys.readouterr().err == ""


def test_the_app_shows_a_bar_for_a_batched_group_unless_quiet(cfg_of, tmp_path, capsys, monkeypatch):
    _draw_every_update(monkeypatch)
    t1 = ("experiment=paper_t1", "problem.d=20", "problem.k=16", "problem.n=160", "run.steps=20", "run.log_every=5",
          "run.figure=false")
    plan = validate(cfg_of(*t1))
    assert [len(g) for g in app.batch_groups(None, plan)] == [5]
    execute(plan, tmp_path / "loud")
    err = capsys.readouterr().err
    assert "20/20" in err and "5 runs" in err
    execute(validate(cfg_of(*t1, "run.quiet=true")), tmp_path / "quiet")
    assert capsys.readouterr().err == ""


# --- 4. the CPU-sized ScaledGD anchor ------------------------------------------------------------

def test_the_cpu_anchor_preset_is_the_anchor_at_n_60(cfg_of):
    plan = validate(cfg_of("experiment=scaledgd_anchor_cpu"))
    p = plan.problem
    assert (p["kind"], p["n1"], p["n2"], p["r_star"], p["m"]) == ("sensing", 60, 60, 5, 5 * 60 * 5)
    assert plan.run.rank == p["r_star"]
    assert {n: (i.name, s.name) for n, (i, s) in plan.methods.items()} == {
        "gd": ("spectral", "gd"), "scaledgd": ("spectral", "precgd")}
    assert plan.methods["scaledgd"][1].damping == 0.0


@pytest.mark.slow
def test_the_cpu_anchor_keeps_scaledgd_flat_in_kappa(cfg_of, tmp_path):
    """ScaledGD's iterations to ε do not grow with κ; GD's do. At 150 steps (the preset has 700):
    at κ = 1 both need ≈ 115, at κ = 20 ScaledGD still does and GD has not arrived."""
    steps = {}
    for kappa in (1, 20):
        plan = validate(cfg_of("experiment=scaledgd_anchor_cpu", f"problem.kappa={kappa}", "run.steps=150",
                               "run.log_every=1", "run.metrics=risk", "run.figure=false", "run.quiet=true"))
        _, summary = execute(plan, tmp_path / str(kappa))
        steps[kappa] = summary.set_index("method")["steps_to_eps"]
    assert steps[1]["scaledgd"] < 150 and steps[1]["gd"] < 150
    assert abs(steps[20]["scaledgd"] - steps[1]["scaledgd"]) <= 3
    assert pd.isna(steps[20]["gd"])


# --- the CLI end to end ----------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_rank_sweep_reuses_full_ft_and_logs_threads(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "lorasim", "-m", "run.rank=1,2", *SMALL,
                          f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("threads: 1 (auto:") == 2
    s0 = pd.read_csv(tmp_path / "s" / "0" / "summary.csv").set_index("method")
    s1 = pd.read_csv(tmp_path / "s" / "1" / "summary.csv").set_index("method")
    assert pd.isna(s0.loc["full_ft", "reused_from"]) and s1.loc["full_ft", "reused_from"] == "0/"
    r0 = pd.read_csv(tmp_path / "s" / "0" / "results.csv")
    r1 = pd.read_csv(tmp_path / "s" / "1" / "results.csv")
    pd.testing.assert_frame_equal(_rows(r0, "full_ft"), _rows(r1, "full_ft"), check_exact=True)
    assert json.loads((tmp_path / "s" / "1" / "problem.json").read_text())["threads"] == 1
    agg = pd.read_csv(tmp_path / "s" / "aggregate_summary.csv")
    assert sorted(agg["job"].unique()) == [0, 1]  # the cache folder is not taken for a job
