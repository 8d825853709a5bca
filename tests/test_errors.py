"""Issue 12 §5: the errors a new user meets are one line, name what to change, exit 2, before any compute.

The catalogue of bad values is tests/test_bad_input.py; here: what must still pass, the missing extras
(a subprocess, where an import must fail), the help texts, and quiet divergence.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import lorasim
from lorasim.config import ConfigError

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def _main(module, argv, monkeypatch, tmp_path):
    """Run a console entry point in-process from tmp_path; returns its exit code (0 if it returned)."""
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [argv[0], *argv[1:]])
    entry = importlib.import_module(module).main
    try:
        entry()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("lorasim: error: "), err
    return lines[0]


def _python(code: str, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- 1. keys that no group defines (the bad ones are in test_bad_input.py) -----------------------------
def test_legitimate_additions_still_work(tmp_path, monkeypatch):
    """hydra's own open mappings, a new method in the methods mapping, and a claim's optional setting."""
    from lorasim import app, verify
    from lorasim.job import precheck

    monkeypatch.chdir(tmp_path)
    precheck(["+hydra.job.env_set.FOO=1", "run.steps=1"], multirun=False, check=app.validate)
    precheck(["+methods.mine.init.name=spectral", "+methods.mine.solver.name=precgd"], multirun=False,
             check=app.validate)
    precheck(["+claims.C03.ci.log_every=2", "only=[C03]"], multirun=False, config_name="verify",
             check=verify.validate)


# -- 2. lorasim-llm without the llm extra ---------------------------------------------------------------
def test_llm_without_the_extra_is_one_line_naming_it(tmp_path):
    code = ("import sys\n"
            "sys.modules['peft'] = sys.modules['transformers'] = None\n"
            f"sys.argv = ['lorasim-llm', 'run.steps=1', 'hydra.run.dir={tmp_path / 'never'}']\n"
            "from lorasim.llm.app import main\n"
            "main()\n")
    res = _python(code, tmp_path)
    line = _one_error_line(res.stderr)
    assert res.returncode == 2 and 'pip install "lorasim[llm]"' in line, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "never").exists()


# -- 3. the cluster extra (the per-method path is in test_bad_input.py) ----------------------------------
@pytest.mark.parametrize("launcher", ["local", "slurm", "slurm_local", "joblib", "submitit_slurm"])
def test_launcher_without_the_cluster_extra_names_the_extra(tmp_path, launcher):
    code = ("import sys\n"
            "for m in ('hydra_plugins.hydra_joblib_launcher', 'hydra_plugins.hydra_submitit_launcher'):\n"
            "    sys.modules[m] = None\n"
            f"sys.argv = ['lorasim', '-m', 'hydra/launcher={launcher}', 'run.steps=1,2', "
            f"'hydra.sweep.dir={tmp_path / 'never'}']\n"
            "from lorasim.app import main\n"
            "main()\n")
    res = _python(code, tmp_path)
    line = _one_error_line(res.stderr)
    assert res.returncode == 2 and f"hydra/launcher={launcher}" in line, line
    assert 'pip install "lorasim[cluster]"' in line, line
    assert not (tmp_path / "never").exists()


# -- 4. from_arrays names the array that disagrees -------------------------------------------------------
def _arrays(n=50, d=5, k=6, seed=0):
    rng = np.random.default_rng(seed)
    X, W0 = rng.standard_normal((n, d)), rng.standard_normal((d, k))
    delta = np.outer(rng.standard_normal(d), rng.standard_normal(k))
    return X, X @ (W0 + delta), W0, delta


@pytest.mark.parametrize("change, start, mentions", [
    (lambda X, Y, W0, D: (X, Y, W0.T, D), "W0=(6, 5): allowed shape (d=5, k=6)", ["transposed"]),
    (lambda X, Y, W0, D: (X, Y, W0[:4], D), "W0=(4, 6): allowed shape (d=5, k=6)", ["X=(50, 5)"]),
    (lambda X, Y, W0, D: (X, Y[:40], W0, D), "Y=(40, 6): allowed shape (N=50, k=6)", ["X=(50, 5)"]),
    (lambda X, Y, W0, D: (X, Y[:, :5], W0, D), "Y=(50, 5): allowed shape (N=50, k=6)", ["W0=(5, 6)"]),
    (lambda X, Y, W0, D: (X, Y, W0[:, :4], D), "Y=(50, 6): allowed shape (N=50, k=4)", ["W0=(5, 4)"]),
    (lambda X, Y, W0, D: (X.T, Y, W0, D), "X=(5, 50): allowed shape (N=50, d=5)", ["transposed"]),
    (lambda X, Y, W0, D: (X, Y, W0, D.T), "delta=(6, 5): allowed shape (d=5, k=6) or None", ["transposed"]),
    (lambda X, Y, W0, D: (X, Y, W0, D[:, :2]), "delta=(5, 2): allowed shape (d=5, k=6) or None", []),
])
def test_from_arrays_names_the_array_whose_shape_disagrees(change, start, mentions):
    X, Y, W0, delta = change(*_arrays())
    with pytest.raises(ConfigError) as err:
        lorasim.LinearTeacher.from_arrays(X, Y, W0, delta=delta)
    msg = str(err.value)
    assert msg.startswith(start) and all(m in msg for m in mentions), msg
    assert "\n" not in msg


def test_from_arrays_with_every_shape_inconsistent_names_them_all():
    X, Y, W0, _ = _arrays()
    with pytest.raises(ConfigError) as err:
        lorasim.LinearTeacher.from_arrays(X, Y[:40], W0[:3, :2])
    msg = str(err.value)
    assert all(s in msg for s in ("X=(50, 5)", "Y=(40, 6)", "W0=(3, 2)")), msg


def test_from_arrays_good_shapes_still_build():
    X, Y, W0, delta = _arrays()
    p = lorasim.LinearTeacher.from_arrays(X, Y, W0, delta=delta)
    assert (p.n, p.d, p.k, p.r_star) == (50, 5, 6, 1)


# -- 5. the apps' own help, and lorasim-verify's table fits the terminal ---------------------------------
def _help(module, prog, monkeypatch, tmp_path, capsys):
    code = _main(module, [prog, "--help"], monkeypatch, tmp_path)
    assert code == 0
    return capsys.readouterr().out


def test_lorasim_help_lists_the_user_groups_presets_and_examples(monkeypatch, tmp_path, capsys):
    from lorasim.job import conf_dir

    text = _help("lorasim.app", "lorasim", monkeypatch, tmp_path, capsys)
    for group in ("problem", "init", "solver", "run", "methods", "sweep", "experiment"):
        assert f"\n  {group} " in text, group
        for option in sorted(p.stem for p in (Path(conf_dir()) / group).glob("*.yaml")):
            assert option in text, (group, option)
    assert 'pip install "lorasim[cluster]"' in text
    examples = [ln for ln in text.splitlines() if ln.strip().startswith("lorasim ")]
    assert len(examples) >= 3
    assert "claims:" not in text and "llm/" not in text and "Powered by Hydra" not in text
    assert "$" not in text and "${" not in text


def test_lorasim_verify_help(monkeypatch, tmp_path, capsys):
    text = _help("lorasim.verify", "lorasim-verify", monkeypatch, tmp_path, capsys)
    for word in ("only=", "scale=", "ci", "paper", "large", "device=", "C01", "P01", "report.md"):
        assert word in text, word
    assert "llm/" not in text and "Powered by Hydra" not in text
    assert len([ln for ln in text.splitlines() if ln.strip().startswith("lorasim-verify")]) >= 3


def test_lorasim_llm_help(monkeypatch, tmp_path, capsys):
    from lorasim.job import conf_dir

    text = _help("lorasim.llm.app", "lorasim-llm", monkeypatch, tmp_path, capsys)
    for group in ("model", "task", "method", "experiment"):
        for option in sorted(p.stem for p in (Path(conf_dir()) / "llm" / group).glob("*.yaml")):
            assert option in text, (group, option)
    assert 'pip install "lorasim[llm]"' in text and "Powered by Hydra" not in text
    assert len([ln for ln in text.splitlines() if ln.strip().startswith("lorasim-llm")]) >= 3


def _long_verdicts():
    from lorasim.verify import Verdict

    out = []
    for i, status in enumerate((True, False)):
        v = Verdict(prediction="p " * 150 + "end", measured="m " * 250 + "end", passed=status)
        v.claim = f"C0{i + 1}"
        out.append(v)
    return out


@pytest.mark.parametrize("columns, width", [(None, 100), ("80", 80), ("140", 140)])
def test_verify_table_fits_the_terminal(monkeypatch, columns, width):
    from lorasim.verify import summary_table

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    text = summary_table(_long_verdicts())
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width, max(len(ln) for ln in lines)
    assert "C01" in text and "C02" in text and "FAIL" in text and "pass" in text
    assert "report.md" in text  # where the full text is


# -- 6. a diverging step size never reaches LAPACK with non-finite numbers --------------------------------
def test_cli_huge_step_size_is_diverged_without_lapack_noise(tmp_path):
    import pandas as pd

    out = tmp_path / "run"
    code = ("import sys\n"
            "sys.argv = ['lorasim', 'methods=single', 'init=spectral', 'solver=gd', 'solver.lr=1e300', "
            f"'run.steps=5', 'run.figure=false', 'hydra.run.dir={out}']\n"
            "from lorasim.app import main\n"
            "main()\n")
    res = _python(code, tmp_path)
    assert res.returncode == 0, res.stderr
    for text in (res.stdout, res.stderr):
        assert "DLASCL" not in text and "MKL" not in text and "LAPACK" not in text, text
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["status"]) == ["diverged"] and summary["diverged_step"].iloc[0] >= 1


@pytest.mark.parametrize("solver, extra", [("gd", {}), ("precgd", {}), ("adam", {}), ("scaled_adam", {}),
                                           ("precgd", {"inverse": "pinv", "damping": 0.0}),
                                           ("scaled_adam", {"inverse": "pinv", "damping": 0.0})])
def test_train_and_train_batch_huge_step_size_diverge_quietly(capfd, solver, extra):
    """Finite but huge factors overflow the metrics' QR core and the preconditioner's Gram: neither
    reaches LAPACK (oneMKL's DLASCL message, or a LinAlgError), and the run is diverged."""
    p = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, seed=1)
    lr = 1e300 if solver in ("gd", "precgd") else 1e150  # Adam's step is ~lr per entry
    one = lorasim.train(p, init="spectral", rank=4, solver=solver, lr=lr, steps=5, **extra)
    many = lorasim.train_batch(p, [{"init": "spectral", "rank": 4}, {"init": "small_random", "rank": 3, "seed": 1}],
                               solver=solver, lr=[lr, 1e-3], steps=5, **extra)
    full = lorasim.train(p, solver="full_ft", lr=1e300, steps=5)
    out, err = capfd.readouterr()
    assert "DLASCL" not in out + err and "MKL" not in out + err, out + err
    assert one.status == "diverged" and one.diverged_step >= 1
    assert [t.status for t in many] == ["diverged", "ok"]
    assert full.status == "diverged"
