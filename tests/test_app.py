"""The hydra app: configs through the compose API, and the CLI end to end through a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lorasim.app import execute, validate
from lorasim.config import ConfigError


def test_default_is_the_headline_comparison(cfg_of):
    plan = validate(cfg_of())
    assert {k: (i.name if i else None, s.name) for k, (i, s) in plan.methods.items()} == {
        "vanilla_gd": ("small_random", "gd"), "spectral_precgd": ("spectral", "precgd"),
        "lora_ga_precgd": ("lora_ga", "precgd"), "full_ft": (None, "full_ft")}
    p = plan.problem
    assert (p["kind"], p["d"], p["k"], p["r_star"], p["n"], p["kappa"], plan.run.rank) == ("linear", 100, 100, 4, 1600, 4.0, 8)


@pytest.mark.parametrize("problem", ["linear", "relu", "sensing"])
@pytest.mark.parametrize("init", ["small_random", "kaiming", "spectral", "lora_one", "lora_ga", "pissa"])
def test_every_group_option_composes_and_validates(cfg_of, problem, init):
    plan = validate(cfg_of(f"problem={problem}", "methods=single", f"init={init}", "run.rank=2"))
    assert plan.methods["main"][0].name == init
    assert plan.problem["kind"] == problem


@pytest.mark.parametrize("solver", ["gd", "precgd", "adam", "scaled_adam", "full_ft"])
def test_solver_options(cfg_of, solver):
    plan = validate(cfg_of("methods=single", f"solver={solver}", "solver.lr=0.01"))
    assert plan.methods["main"][1].name == solver
    assert plan.methods["main"][1].lr == 0.01


@pytest.mark.parametrize("overrides, field", [
    (["run.rank=101"], "run.rank"), (["run.rank=0"], "run.rank"), (["problem.r_star=101"], "problem.r_star"),
    (["problem.n=0"], "problem.n"), (["methods.full_ft.solver.lr=0"], "methods.full_ft.solver.lr"),
    (["methods=single", "init.alpha=-1"], "methods.main.init.alpha"), (["run.rank=51"], "run.rank"),
])
def test_validation_names_the_field(cfg_of, overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        validate(cfg_of(*overrides))


def test_execute_writes_tidy_outputs(cfg_of, tmp_path):
    plan = validate(cfg_of("problem.d=24", "problem.k=20", "problem.r_star=2", "problem.n=200", "run.rank=4",
                           "run.steps=30", "run.quiet=true"))
    results, summary = execute(plan, tmp_path)
    for name in ("results.csv", "summary.csv", "problem.json", "figure.png"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == 4 * 31 and set(on_disk["method"]) == set(plan.methods)
    assert list(pd.read_csv(tmp_path / "summary.csv")["method"]) == list(plan.methods)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def _cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", "lorasim", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_default_run_smoke(tmp_path):
    out = tmp_path / "run"
    res = _cli("run.steps=40", "run.quiet=true", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "spectral_precgd" in res.stdout and "risk_final" in res.stdout
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["status"]) == ["ok"] * 4
    assert (out / "figure.png").exists()


def test_cli_reads_user_npz(tmp_path):  # bad files: test_bad_input.py
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 10))
    W0 = rng.standard_normal((10, 6))
    delta = np.outer(rng.standard_normal(10), rng.standard_normal(6)) / 5
    np.savez(tmp_path / "good.npz", X=X, Y=X @ (W0 + delta), W0=W0, delta=delta)
    res = _cli("problem=npz", f"problem.path={tmp_path / 'good.npz'}", "methods=single", "init=spectral",
               "solver=precgd", "run.rank=2", "run.steps=80", "run.quiet=true", f"hydra.run.dir={tmp_path / 'out'}",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["risk_final"].iloc[0] < 1e-12  # N ≥ d, noiseless: the spectral init + PrecGD recover ΔW


def test_cli_diverging_method_does_not_stop_the_others(tmp_path):
    out = tmp_path / "run"
    res = _cli("problem.d=20", "problem.k=20", "problem.r_star=2", "problem.n=200", "run.rank=4", "run.steps=60",
               "run.quiet=true", "methods.vanilla_gd.solver.lr=80", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["vanilla_gd", "status"] == "diverged"
    assert (summary.drop(index="vanilla_gd")["status"] == "ok").all()


@pytest.mark.parametrize("exp, methods, rank, steps", [
    ("paper_t1", ["alpha2_1e0", "alpha2_1e-1", "alpha2_1e-2", "alpha2_1e-3", "alpha2_1e-4"], 8, 1500),
    ("paper_t2", ["spectral", "offset_lora_one", "lora_ga"], 8, 100),
    ("paper_t3", ["lora_init", "spectral_y", "spectral_y2"], 1, 1000),
])
def test_paper_presets_compose(cfg_of, exp, methods, rank, steps):
    plan = validate(cfg_of(f"experiment={exp}"))
    assert list(plan.methods) == methods and plan.run.rank == rank and plan.run.steps == steps


def test_paper_t3_runs_the_notebook_setup(cfg_of, tmp_path):
    """T3 through the app: the three starts all reach β, the spectral ones in about half the steps."""
    plan = validate(cfg_of("experiment=paper_t3", "run.quiet=true"))
    _, summary = execute(plan, tmp_path)
    s = summary.set_index("method")
    assert (s["risk_final"] < 1e-20).all()
    assert s.loc["spectral_y", "steps_to_eps"] < 0.6 * s.loc["lora_init", "steps_to_eps"]
    assert s.loc["spectral_y", "align_A_min"] < 1e-12  # A0 spans G♮ exactly


def test_methods_sharing_solver_settings_run_as_one_batch_with_the_one_run_results(cfg_of, tmp_path):
    """paper_t1's five α share GD at η = 1/64: one batch; its frames equal five separate train() runs."""
    import lorasim
    from lorasim.app import batch_groups
    from lorasim.problems import make_problem

    plan = validate(cfg_of("experiment=paper_t1", "problem.d=24", "problem.k=20", "problem.n=200",
                           "run.steps=40", "run.log_every=5", "run.quiet=true"))
    problem = make_problem(plan.problem)
    groups = batch_groups(problem, plan)
    assert [len(g) for g in groups] == [5]
    results, _ = execute(plan, tmp_path)
    for name, (init, solver) in plan.methods.items():
        ref = lorasim.train(problem, init=init, rank=plan.run.rank, init_seed=plan.run.seed, solver=solver,
                            steps=plan.run.steps, log_every=plan.run.log_every, method=name,
                            metrics=plan.run.metrics).to_frame()
        got = results[results["method"] == name].reset_index(drop=True)
        assert list(got["init"]) == list(ref["init"]) and list(got["step"]) == list(ref["step"])
        assert plan.run.metrics == "figure" and "align_B" not in got and "loss" not in got  # the preset's column set
        assert "sv_A_1" not in got
        for col in ("risk", "align_A"):
            np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, atol=1e-13, err_msg=f"{name} {col}")


def test_headline_groups_keep_offset_inits_and_full_ft_alone(cfg_of):
    from lorasim.app import batch_groups
    from lorasim.problems import make_problem

    plan = validate(cfg_of())
    groups = batch_groups(make_problem(plan.problem), plan)
    assert [[name for name, _ in g] for g in groups] == [["vanilla_gd"], ["spectral_precgd"], ["lora_ga_precgd"],
                                                         ["full_ft"]]
