"""Structured configs: per-name defaults and bad values named (the yaml files against the dataclasses:
tests/test_config_defaults.py)."""
import numpy as np
import pytest

import lorasim
from lorasim.config import ConfigError, InitConfig, build
from lorasim.engine import RunConfig
from lorasim.solvers import SolverConfig


def test_defaults_depend_on_the_name():
    adamwr = SolverConfig(name="scaled_adam")
    assert (adamwr.order, adamwr.damping, adamwr.bias_correction, adamwr.lr) == ("gauss_seidel", 1e-6, False, 1e-2)
    assert SolverConfig(name="adam").bias_correction is True
    assert InitConfig(name="lora_ga").gamma == 16.0 and InitConfig(name="lora_one").gamma == 128.0


@pytest.mark.parametrize("cls, values, message", [
    (SolverConfig, {"name": "gd", "damping": 0.1}, r"^solver\.damping=0\.1: allowed only with name in precgd, scaled_adam"),
    (InitConfig, {"name": "spectral", "alpha": 0.1}, r"^init\.alpha=0\.1: allowed only with name in small_random"),
    (InitConfig, {"name": "small_random", "both": "maybe"}, r"^init\.both='maybe': allowed true or false"),
    (SolverConfig, {"name": "adam", "bias_correction": "yes"}, r"^solver\.bias_correction='yes'"),
    (RunConfig, {"quiet": "maybe"}, r"^run\.quiet='maybe'"),
    (SolverConfig, {"name": "precgd", "order": "jacobi"}, r"^solver\.order='jacobi': allowed one of simultaneous, gauss_seidel"),
    (InitConfig, {"name": "lora_ga", "variant": "mine"}, r"^init\.variant='mine'"),
    (SolverConfig, {"name": "gd", "lr": float("nan")}, r"^solver\.lr=nan"),
])
def test_bad_values_are_named(cls, values, message):
    with pytest.raises(ConfigError, match=message):
        build(cls, values)


def test_numpy_integers_are_integers():
    prob = lorasim.LinearTeacher(d=np.int64(12), k=10, r_star=np.int64(2), n=np.int64(50))
    traj = lorasim.train(prob, init="spectral", rank=np.int64(2), steps=np.int64(3))
    assert len(traj.rows) == 4


@pytest.mark.parametrize("kwargs, field", [
    (dict(X=np.zeros((0, 4)), Y=np.zeros((0, 3)), W0=np.zeros((4, 3))), "X"),
    (dict(X=np.array([["a"] * 4] * 5), Y=np.zeros((5, 3)), W0=np.zeros((4, 3))), "X"),
    (dict(X=np.ones((5, 4)) * 1j, Y=np.zeros((5, 3)), W0=np.zeros((4, 3))), "X"),
    (dict(X=np.ones((5, 4)), Y=np.zeros((5, 3)), W0=np.zeros((4, 3)), delta=np.zeros((4, 3), dtype=bool)), "delta"),
])
def test_user_arrays_must_be_real_and_nonempty(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.LinearTeacher.from_arrays(**kwargs)


def test_conflicting_and_degenerate_problem_settings():
    with pytest.raises(ConfigError, match=r"^cov_kappa="):
        lorasim.LinearTeacher(d=3, k=3, r_star=1, n="population", cov_kappa=5.0, cov_spectrum=[1, 2, 3])
    with pytest.raises(ConfigError, match=r"^w0='zeros'"):
        lorasim.ReLUTeacher(w0="zeros")


@pytest.mark.parametrize("kwargs, field", [
    (dict(diverge_factor=0.0), "diverge_factor"), (dict(init_seed=-1), "seed"),
])
def test_loop_settings_are_checked(small_linear, kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.train(small_linear, init="spectral", rank=2, **kwargs)


def test_full_ft_refuses_an_init(small_linear):
    with pytest.raises(ConfigError, match=r"^init="):
        lorasim.train(small_linear, init="spectral", rank=2, solver="full_ft")
    with pytest.raises(ConfigError, match=r"^init="):
        lorasim.train(small_linear, A0=np.zeros((32, 2)), B0=np.zeros((2, 24)), solver="full_ft")


@pytest.mark.parametrize("make, old, new, value", [
    (lambda **kw: lorasim.LinearTeacher(d=6, k=5, r_star=2, n=20, **kw), "scale", "delta_norm", 2.0),
    (lambda **kw: InitConfig(name="lora_one", **kw), "scale", "lora_scale", 1.0),
    (lambda **kw: build(RunConfig, kw), "eps", "risk_eps", 1e-6),
    (lambda **kw: _llm_method(**kw), "reg", "damping", 1e-3),
])
def test_renamed_keys_still_work_and_warn(make, old, new, value):
    """0.2's names (problem.scale, init.scale, run.eps, lorasim-llm's method.reg) set the 0.3 field, with a
    warning naming both."""
    with pytest.warns(FutureWarning, match=rf"{old} is renamed {new}"):
        got = make(**{old: value})
    cfg = getattr(got, "config", got)
    assert getattr(cfg, new) == value and getattr(cfg, old) is None


def _llm_method(**kw):
    from lorasim.llm.methods import MethodConfig

    return MethodConfig(**kw)
