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
    spec = validate(cfg_of())
    assert {k: (i.name if i else None, s.name) for k, (i, s) in spec.methods.items()} == {
        "vanilla_gd": ("small_random", "gd"), "spectral_precgd": ("spectral", "precgd"),
        "lora_ga_precgd": ("lora_ga", "precgd"), "full_ft": (None, "full_ft")}
    p = spec.problem
    assert (p["kind"], p["d"], p["k"], p["r_star"], p["n"], p["kappa"], spec.run.rank) == ("linear", 100, 100, 4, 1600, 4.0, 8)


@pytest.mark.parametrize("problem", ["linear", "relu", "sensing"])
@pytest.mark.parametrize("init", ["small_random", "kaiming", "spectral", "lora_one", "lora_ga", "pissa"])
def test_every_group_option_composes_and_validates(cfg_of, problem, init):
    spec = validate(cfg_of(f"problem={problem}", "methods=single", f"init={init}", "run.rank=2"))
    assert spec.methods["main"][0].name == init
    assert spec.problem["kind"] == problem


@pytest.mark.parametrize("solver", ["gd", "precgd", "adam", "scaled_adam", "full_ft"])
def test_solver_options(cfg_of, solver):
    spec = validate(cfg_of("methods=single", f"solver={solver}", "solver.lr=0.01"))
    assert spec.methods["main"][1].name == solver
    assert spec.methods["main"][1].lr == 0.01


@pytest.mark.parametrize("overrides, field", [
    (["run.rank=101"], "run.rank"), (["run.rank=0"], "run.rank"), (["problem.r_star=101"], "problem.r_star"),
    (["problem.n=0"], "problem.n"), (["methods.full_ft.solver.lr=0"], "methods.full_ft.solver.lr"),
    (["methods=single", "init.alpha=-1"], "methods.main.init.alpha"), (["run.rank=51"], "run.rank"),
])
def test_validation_names_the_field(cfg_of, overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        validate(cfg_of(*overrides))


def test_execute_writes_tidy_outputs(cfg_of, tmp_path):
    spec = validate(cfg_of("problem.d=24", "problem.k=20", "problem.r_star=2", "problem.n=200", "run.rank=4",
                           "run.steps=30", "run.quiet=true"))
    results, summary = execute(spec, tmp_path)
    for name in ("results.csv", "summary.csv", "problem.json", "figure.png"):
        assert (tmp_path / name).stat().st_size > 0
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert len(on_disk) == 4 * 31 and set(on_disk["method"]) == set(spec.methods)
    assert list(pd.read_csv(tmp_path / "summary.csv")["method"]) == list(spec.methods)
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


@pytest.mark.parametrize("args, field", [
    (["run.rank=0"], "run.rank=0"), (["methods=single", "init=foo"], "init=foo"),
    (["problem.n=-5"], "problem.n=-5"), (["problem=npz", "problem.path=/no/such.npz"], "problem.path="),
    (["methods=single", "solver.lr=-1"], "solver.lr=-1"), (["problem.colour=red"], "problem.colour=red"),
])
def test_cli_bad_config_is_one_line_exit_2(tmp_path, args, field):
    res = _cli(*args, f"hydra.run.dir={tmp_path / 'never'}", cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lorasim: error:") and field in lines[0], res.stderr
    assert not (tmp_path / "never").exists()


def test_cli_reads_user_npz_and_rejects_bad_shapes(tmp_path):
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

    np.savez(tmp_path / "bad.npz", X=X, Y=X[:, :5], W0=W0)
    res = _cli("problem=npz", f"problem.path={tmp_path / 'bad.npz'}", f"hydra.run.dir={tmp_path / 'bad'}",
               cwd=tmp_path)
    assert res.returncode == 2 and "Y=(80, 5)" in res.stderr


def test_cli_diverging_method_does_not_stop_the_others(tmp_path):
    out = tmp_path / "run"
    res = _cli("problem.d=20", "problem.k=20", "problem.r_star=2", "problem.n=200", "run.rank=4", "run.steps=60",
               "run.quiet=true", "methods.vanilla_gd.solver.lr=80", f"hydra.run.dir={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["vanilla_gd", "status"] == "diverged"
    assert (summary.drop(index="vanilla_gd")["status"] == "ok").all()


def test_cli_multirun_with_a_bad_point_fails_before_any_job(tmp_path):
    res = _cli("-m", "run.rank=8,0", "run.steps=5", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("lorasim: error: job") and "run.rank=0" in res.stderr
    assert not (tmp_path / "sweep").exists()


def test_cli_npz_rank_checked_against_file_before_training(tmp_path):
    rng = np.random.default_rng(1)
    X, W0 = rng.standard_normal((40, 6)), rng.standard_normal((6, 6))
    np.savez(tmp_path / "d6.npz", X=X, Y=X @ W0, W0=W0)
    (tmp_path / "text.npz").write_text("not a zip")
    res = _cli("problem=npz", f"problem.path={tmp_path / 'd6.npz'}", "run.rank=4", f"hydra.run.dir={tmp_path / 'o'}",
               cwd=tmp_path)
    assert res.returncode == 2 and "run.rank=4" in res.stderr and "lora_ga" in res.stderr
    assert not (tmp_path / "o" / "results.csv").exists()
    res = _cli("problem=npz", f"problem.path={tmp_path / 'text.npz'}", f"hydra.run.dir={tmp_path / 'o2'}", cwd=tmp_path)
    assert res.returncode == 2 and "an .npz file" in res.stderr


@pytest.mark.parametrize("exp, methods, rank, steps", [
    ("paper_t1", ["alpha2_1e0", "alpha2_1e-1", "alpha2_1e-2", "alpha2_1e-3", "alpha2_1e-4"], 8, 1500),
    ("paper_t2", ["spectral", "offset_lora_one", "lora_ga"], 8, 100),
    ("paper_t3", ["lora_init", "spectral_y", "spectral_y2"], 1, 1000),
])
def test_paper_presets_compose(cfg_of, exp, methods, rank, steps):
    spec = validate(cfg_of(f"experiment={exp}"))
    assert list(spec.methods) == methods and spec.run.rank == rank and spec.run.steps == steps


def test_paper_t3_runs_the_notebook_setup(cfg_of, tmp_path):
    """T3 through the app: the three starts all reach β, the spectral ones in about half the steps."""
    spec = validate(cfg_of("experiment=paper_t3", "run.quiet=true"))
    _, summary = execute(spec, tmp_path)
    s = summary.set_index("method")
    assert (s["risk_final"] < 1e-20).all()
    assert s.loc["spectral_y", "steps_to_eps"] < 0.6 * s.loc["lora_init", "steps_to_eps"]
    assert s.loc["spectral_y", "align_A_min"] < 1e-12  # A0 spans G♮ exactly


def test_methods_sharing_solver_settings_run_as_one_batch_with_the_one_run_results(cfg_of, tmp_path):
    """paper_t1's five α share GD at η = 1/64: one batch; its frames equal five separate train() runs."""
    import lorasim
    from lorasim.app import batch_groups
    from lorasim.problems import make_problem

    spec = validate(cfg_of("experiment=paper_t1", "problem.d=24", "problem.k=20", "problem.n=200",
                           "run.steps=40", "run.log_every=5", "run.quiet=true"))
    problem = make_problem(spec.problem)
    groups = batch_groups(problem, spec)
    assert [len(g) for g in groups] == [5]
    results, _ = execute(spec, tmp_path)
    for name, (init, solver) in spec.methods.items():
        ref = lorasim.train(problem, init=init, rank=spec.run.rank, init_seed=spec.run.seed, solver=solver,
                            steps=spec.run.steps, log_every=spec.run.log_every, method=name).to_frame()
        got = results[results["method"] == name].reset_index(drop=True)
        assert list(got["init"]) == list(ref["init"]) and list(got["step"]) == list(ref["step"])
        for col in ("risk", "loss", "align_A", "sv_A_1"):
            np.testing.assert_allclose(got[col], ref[col], rtol=1e-9, atol=1e-13, err_msg=f"{name} {col}")


def test_headline_groups_keep_offset_inits_and_full_ft_alone(cfg_of):
    from lorasim.app import batch_groups
    from lorasim.problems import make_problem

    spec = validate(cfg_of())
    groups = batch_groups(make_problem(spec.problem), spec)
    assert [[name for name, _ in g] for g in groups] == [["vanilla_gd"], ["spectral_precgd"], ["lora_ga_precgd"],
                                                         ["full_ft"]]
