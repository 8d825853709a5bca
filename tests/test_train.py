"""The training loop against an independent notebook-style implementation, plus its contracts."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import lorasim
from lorasim.config import ConfigError


def _t1_instance(seed=0, d=100, k=100, r_star=4, n=1600):
    """The paper's toy T1 setup (SPEC §7): W0 ~ N(0,1), ΔW = P_4 Q_4ᵀ (κ = 1), Y = X(W0 + ΔW)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    W0 = torch.randn(d, k, generator=g, dtype=torch.float64)
    P, _, Qh = torch.linalg.svd(torch.randn(d, k, generator=g, dtype=torch.float64))
    delta = P[:, :r_star] @ Qh[:r_star]
    return X, X @ (W0 + delta), W0, delta


def _notebook_gd(X, Y, W0, delta, A0, B0, lr, steps, r_star):
    """Plain-torch float64 GD with the full residual over N samples and full SVDs, as the notebook does."""
    n = X.shape[0]
    G = X.T @ (Y - X @ W0) / n
    UG = torch.linalg.svd(G)[0]
    A, B = A0.clone(), B0.clone()
    risk, align = [], []
    for _ in range(steps + 1):
        risk.append(0.5 * torch.linalg.matrix_norm(A @ B - delta).item() ** 2)
        UA = torch.linalg.svd(A)[0]
        align.append(torch.linalg.matrix_norm(UG[:, r_star:].T @ UA[:, :r_star], ord=2).item())
        R = X @ (W0 + A @ B) - Y
        gA = X.T @ R @ B.T / n
        gB = A.T @ X.T @ R / n
        A, B = A - lr * gA, B - lr * gB
    return np.array(risk), np.array(align)


@pytest.mark.slow
def test_t1_gd_matches_independent_notebook_implementation():
    X, Y, W0, delta = _t1_instance()
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    A0 = 1e-2 * torch.randn(100, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    B0 = torch.zeros(8, 100, dtype=torch.float64)
    steps = 1500
    traj = lorasim.train(prob, A0=A0, B0=B0, solver="gd", lr=1 / 64, steps=steps, log_every=1)
    df = traj.to_frame()
    risk_ref, align_ref = _notebook_gd(X, Y, W0, delta, A0, B0, 1 / 64, steps, 4)
    assert len(df) == steps + 1 and traj.status == "ok"
    np.testing.assert_allclose(df["risk"].to_numpy(), risk_ref, rtol=1e-8)
    np.testing.assert_allclose(df["align_A"].to_numpy(), align_ref, rtol=0, atol=1e-6)
    # The run is not trivial: alignment dips well below 1 and the risk falls by orders of magnitude.
    assert align_ref.min() < 0.5 and risk_ref[-1] < 1e-6 * risk_ref[0]


def test_b_alignment_is_exact_from_zero_b(small_linear):
    """C5: with B0 = 0 and noiseless labels, row(B_t) ⊆ row(G♮) for t ≥ 1."""
    traj = lorasim.train(small_linear, init="small_random", rank=4, init_kwargs={"alpha": 1e-3},
                         solver="gd", lr=1 / 16, steps=200, log_every=10)
    df = traj.to_frame()
    assert math.isnan(df["align_B"].iloc[0])  # B0 = 0 has no top-r subspace
    assert df["align_B"].iloc[1:].max() < 1e-10
    assert df["align_A"].iloc[0] > 0.5  # while A starts unaligned


def test_divergence_is_recorded_not_raised(small_linear):
    traj = lorasim.train(small_linear, init="spectral", rank=2, solver="gd", lr=50.0, steps=300)
    assert traj.status == "diverged"
    df = traj.to_frame()
    assert df["step"].iloc[-1] == traj.diverged_step < 300
    assert (df["status"] == "diverged").all()
    assert traj.summary()["status"] == "diverged"


def test_log_every_rows_and_final_state(small_linear):
    traj = lorasim.train(small_linear, init="spectral", rank=3, solver="precgd", lr=0.5, steps=25, log_every=10)
    assert traj.to_frame()["step"].tolist() == [0, 10, 20, 25]
    final = traj.to_frame().iloc[-1]
    assert final["risk"] == pytest.approx(float(small_linear.risk(traj.A, traj.B)), rel=1e-12)


def test_same_config_is_bitwise_identical_and_seeds_are_separate():
    def run(problem_seed, init_seed):
        p = lorasim.LinearTeacher(d=24, k=20, r_star=2, n=300, seed=problem_seed)
        return lorasim.train(p, init="small_random", rank=4, init_seed=init_seed, solver="gd", lr=0.2,
                             steps=50).to_frame()

    a, b = run(0, 0), run(0, 0)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    other_init = run(0, 1)
    assert not np.array_equal(a["risk"].to_numpy(), other_init["risk"].to_numpy())
    # The init seed does not move the problem: the initial risk of B0 = 0 is ½‖ΔW‖² either way.
    assert a["risk"].iloc[0] == pytest.approx(other_init["risk"].iloc[0], rel=1e-12)


def test_frame_schema(small_linear):
    df = lorasim.train(small_linear, init="small_random", rank=3, steps=3, method="m").to_frame()
    expected = ["method", "init", "solver", "step", "status", "loss", "risk", "err_op", "err_fro", "align_A",
                "align_A_star", "align_B", "align_B_star", "balance_drift", "theta_A_1", "theta_A_2",
                "sv_A_1", "sv_A_2", "sv_A_3", "sv_B_1", "sv_B_2", "sv_B_3"]
    assert list(df.columns) == expected
    assert (df["method"] == "m").all()


def test_offset_init_keeps_risk_against_original_target(small_linear):
    traj = lorasim.train(small_linear, init="lora_ga", rank=4, init_kwargs={"gamma": 4.0, "lora_scale": 1.0},
                         solver="precgd", lr=0.5, steps=0)
    # The offset cancels the init: the starting risk is ½‖ΔW‖_F².
    half_norm = 0.5 * float(torch.linalg.matrix_norm(small_linear.delta)) ** 2
    assert traj.to_frame()["risk"].iloc[0] == pytest.approx(half_norm, rel=1e-10)


@pytest.mark.parametrize("A0, B0, field", [
    (np.ones((5, 2)), np.zeros((2, 24)), "A0"),
    (np.ones((32, 2)), np.zeros((3, 24)), "B0"),
    (np.full((32, 2), np.nan), np.zeros((2, 24)), "A0"),
    (np.ones((32, 2)), None, "B0"),
])
def test_explicit_factors_are_validated(small_linear, A0, B0, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.train(small_linear, A0=A0, B0=B0, steps=1)


@pytest.mark.parametrize("kwargs, field", [
    (dict(lr=-1.0), "solver.lr"), (dict(solver="sgdx"), "solver.name"), (dict(steps=-1), "steps"),
    (dict(log_every=0), "log_every"), (dict(init="magic", rank=2), "init.name"), (dict(damping=-1.0), "solver.damping"),
])
def test_bad_train_arguments_name_the_field(small_linear, kwargs, field):
    kwargs.setdefault("init", "small_random")
    kwargs.setdefault("rank", 2)
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.train(small_linear, **kwargs)


def test_risk_only_metrics_match_the_full_row(small_linear):
    full = lorasim.train(small_linear, init="spectral", rank=2, solver="precgd", steps=10).to_frame()
    lite = lorasim.train(small_linear, init="spectral", rank=2, solver="precgd", steps=10, metrics="risk").to_frame()
    assert list(lite.columns) == ["method", "init", "solver", "step", "status", "loss", "risk", "err_op", "err_fro"]
    pd.testing.assert_frame_equal(lite, full[lite.columns])
