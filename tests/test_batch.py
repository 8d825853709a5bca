"""The batch engine (lorasim.engine) against the one-run loop, and its building blocks against
independent formulas: the per-run Gram solve, the chunked residual, the batched metrics row and
the fused skinny-product kernel (through Triton's CPU interpreter, when Triton is installed)."""
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.linalg
import torch

import lorasim
from lorasim import train_batch
from lorasim.config import ConfigError, InitConfig
from lorasim.inits import make_init
from lorasim.kernels import plan_grid
from lorasim.linalg import damped_gram_solve_right
from lorasim.metrics import (
    AlignmentTargets,
    record_batch,
    subspace_defined,
    subspace_defined_mask,
)
from lorasim.problems import linear as linear_mod

torch.set_num_threads(1)

STEPS, LOG_EVERY = 60, 7
LOGGED_STEPS = list(range(0, STEPS, LOG_EVERY)) + [STEPS]  # 0, 7, ..., 56, 60


@pytest.fixture(scope="module")
def linear():
    return lorasim.LinearTeacher(d=24, k=20, r_star=3, n=200, kappa=3, seed=1)


def _rand(shape, seed, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _subspace_amplification(frame, side: str, r_star: int) -> np.ndarray:
    """σ1/(σ_{r*} − σ_{r*+1}) of the reference's factor at each logged row (Wedin): a relative
    perturbation ρ of the factor moves its top-r* subspace, hence align_* and theta_*, by ≤ ρ·σ1/gap.
    A (or B) of the two runs agree to rtol, so their angle columns agree to rtol times this."""
    sv = frame[[c for c in frame.columns if c.startswith(f"sv_{side}_")]].to_numpy(dtype=float)
    top = sv[:, 0]
    low = sv[:, r_star - 1] if sv.shape[1] >= r_star else np.full(len(sv), np.nan)
    nxt = sv[:, r_star] if sv.shape[1] > r_star else np.zeros(len(sv))
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = top / (low - nxt)
    return np.where(np.isfinite(amp), np.maximum(1.0, amp), 1.0)  # rank < r*: no gap to amplify


def _assert_same_frame(got, ref, rtol=1e-8, atol=1e-12, r_star=3):
    a, b = got.to_frame(), ref.to_frame()
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    assert a["step"].tolist() == b["step"].tolist()
    for col in ("method", "init", "solver", "status"):
        assert a[col].tolist() == b[col].tolist(), col
    assert got.status == ref.status and got.diverged_step == ref.diverged_step
    for col in a.columns:
        if a[col].dtype.kind == "f":
            side = next((s for s in ("A", "B") if col.startswith((f"align_{s}", f"theta_{s}"))), None)
            scale = _subspace_amplification(b, side, r_star) if side else 1.0
            x, y = a[col].to_numpy(dtype=float), b[col].to_numpy(dtype=float)
            both_nan = np.isnan(x) & np.isnan(y)
            ok = both_nan | (np.abs(x - y) <= atol + rtol * scale * np.abs(y))
            assert ok.all(), f"{col}: rows {np.flatnonzero(~ok).tolist()}: {x[~ok]} vs {y[~ok]}"


MIXED = [
    {"init": "small_random", "rank": 6, "seed": 0, "alpha": 1e-3},
    {"init": "small_random", "rank": 6, "seed": 1, "alpha": 1e-2},
    {"init": "spectral", "rank": 3},
    {"init": "spectral", "rank": 2},
]
# λ = 0 only at ranks ≤ r*: over-rank with λ = 0 amplifies round-off (a known finding), so
# batched and one-run would agree only to the noise floor.
AT_MOST_R_STAR = [
    {"init": "small_random", "rank": 3, "seed": 2, "alpha": 1e-2},
    {"init": "spectral", "rank": 3},
    {"init": "spectral", "rank": 2},
]

SOLVER_CASES = [
    pytest.param("gd", {}, MIXED, [0.2, 0.15, 0.3, 0.25], id="gd"),
    pytest.param("precgd", {"damping": 1e-3, "order": "gauss_seidel"}, MIXED, [0.5, 0.4, 0.3, 0.45],
                 id="precgd-gauss_seidel"),
    pytest.param("precgd", {"damping": 0.0}, AT_MOST_R_STAR, [0.5, 0.3, 0.4], id="precgd-lambda0"),
    pytest.param("scaled_adam", {}, MIXED, [1e-2, 2e-2, 5e-3, 1e-2], id="scaled_adam"),
    pytest.param("adam", {"bias_correction": True}, MIXED, [1e-2, 2e-2, 5e-3, 1e-2], id="adam-bias"),
]


# -- 1. batched == one run ----------------------------------------------------------------------

def _round_off_amplification(problem, spec, lr, solver, **kw) -> float:
    """How much the trajectory magnifies a relative perturbation of A0 of size 1e-15 over STEPS steps
    (an oracle independent of the batch): batched and one-run steps differ by round-off u per step in
    their summation order, so their factors can agree only to about STEPS·u·amplification. The GD
    and precgd cases amplify by O(1); scaled_adam's seed-1 run (α = 1e-2, lr 2e-2) by ≈ 7e6."""
    s = dict(spec)
    name, rank, seed = s.pop("init"), s.pop("rank"), s.pop("seed", 0)
    start = make_init(problem, rank, InitConfig(name=name, **s), seed=seed)
    bump = 1 + 1e-15 * _rand(start.A.shape, 5)
    a = lorasim.train(problem, start.A, start.B, solver=solver, lr=lr, steps=STEPS, log_every=STEPS, **kw)
    b = lorasim.train(problem, start.A * bump, start.B, solver=solver, lr=lr, steps=STEPS, log_every=STEPS, **kw)
    return float(torch.linalg.matrix_norm(a.A - b.A) / torch.linalg.matrix_norm(a.A)) / 1e-15


@pytest.mark.parametrize("solver, kw, specs, lrs", SOLVER_CASES)
def test_batch_equals_one_run_loop(linear, solver, kw, specs, lrs):
    trajs = train_batch(linear, specs, solver=solver, lr=lrs, steps=STEPS, log_every=LOG_EVERY, **kw)
    assert len(trajs) == len(specs)
    u = float(np.finfo(np.float64).eps)
    for spec, lr, got in zip(specs, lrs, trajs):
        ref = lorasim.train(linear, init=spec, lr=lr, solver=solver, steps=STEPS, log_every=LOG_EVERY, **kw)
        assert ref.status == "ok"
        assert got.to_frame()["step"].tolist() == LOGGED_STEPS
        # 1e-8 unless the trajectory itself magnifies round-off beyond it (10× for the constant).
        rtol = max(1e-8, 10 * STEPS * u * _round_off_amplification(linear, spec, lr, solver, **kw))
        _assert_same_frame(got, ref, rtol=rtol)
        assert got.A.shape == ref.A.shape == (linear.d, spec["rank"])
        assert got.B.shape == ref.B.shape == (spec["rank"], linear.k)
        for x, y in ((got.A, ref.A), (got.B, ref.B)):  # norm-wise, as the amplification is measured
            assert float(torch.linalg.matrix_norm(x - y)) <= rtol * float(torch.linalg.matrix_norm(y)) + 1e-12
    # The runs really are different (distinct inits and step sizes), and something was learnt.
    risks = [t.to_frame()["risk"].iloc[-1] for t in trajs]
    assert len(set(risks)) == len(risks)
    assert min(risks) < 0.5 * trajs[0].to_frame()["risk"].iloc[0]
    assert len({t.wall_s for t in trajs}) == 1  # the batch's wall time, shared


def test_one_step_size_for_all_and_method_names(linear):
    specs = MIXED[2:]
    trajs = train_batch(linear, specs, solver="gd", lr=0.3, steps=10, log_every=3, methods=["x", "y"])
    assert [t.method for t in trajs] == ["x", "y"]
    assert [t.init for t in trajs] == ["spectral", "spectral"] and {t.solver for t in trajs} == {"gd"}
    for spec, got in zip(specs, trajs):
        ref = lorasim.train(linear, init=spec, lr=0.3, solver="gd", steps=10, log_every=3, method=got.method)
        assert got.to_frame()["step"].tolist() == [0, 3, 6, 9, 10]
        _assert_same_frame(got, ref)


def test_init_objects_and_explicit_pairs(linear):
    """The three ways to give a start: an Init, an (A0, B0) pair, a dict."""
    init = make_init(linear, 4, InitConfig(name="small_random", alpha=1e-2), seed=5)
    A0, B0 = _rand((linear.d, 2), 7, 0.1), _rand((2, linear.k), 8, 0.1)
    trajs = train_batch(linear, [init, (A0.numpy(), B0.numpy()), MIXED[2]], solver="precgd", lr=[0.4, 0.3, 0.5],
                        steps=20, log_every=5)
    assert [t.init for t in trajs] == ["custom", "explicit", "spectral"]
    refs = [lorasim.train(linear, init=init, solver="precgd", lr=0.4, steps=20, log_every=5),
            lorasim.train(linear, A0=A0, B0=B0, solver="precgd", lr=0.3, steps=20, log_every=5),
            lorasim.train(linear, init=MIXED[2], lr=0.5, solver="precgd", steps=20, log_every=5)]
    for got, ref in zip(trajs, refs):
        _assert_same_frame(got, ref)
    # The caller's init is not modified in place by the batch.
    torch.testing.assert_close(init.A, make_init(linear, 4, InitConfig(name="small_random", alpha=1e-2), seed=5).A,
                               rtol=0, atol=0)


def test_same_offset_inits_batch_together(linear):
    """Offset inits (PiSSA) batch when every run has the same offset, and match the one-run loop."""
    specs = [{"init": "pissa", "rank": 3}, {"init": "pissa", "rank": 3}]
    trajs = train_batch(linear, specs, solver="precgd", lr=[0.3, 0.5], steps=20, log_every=4)
    for spec, lr, got in zip(specs, [0.3, 0.5], trajs):
        _assert_same_frame(got, lorasim.train(linear, init=spec, lr=lr, solver="precgd", steps=20, log_every=4))


# -- 2. other problems --------------------------------------------------------------------------

def _relu():
    return lorasim.ReLUTeacher(d=10, k=6, r_star=2, n=120, delta_norm=0.5, seed=3)


def _sensing():
    return lorasim.MatrixSensing(n1=7, n2=5, r_star=2, m=80, seed=2)


@pytest.mark.parametrize("make, lrs, zeta", [(_relu, [0.5, 0.8], 2.0), (_sensing, [0.2, 0.3], 1.0)],
                         ids=["relu", "sensing"])
@pytest.mark.parametrize("metrics", ["full", "risk"])
def test_batch_equals_one_run_on_relu_and_sensing(make, lrs, zeta, metrics):
    prob = make()
    specs = [{"init": "small_random", "rank": 3, "seed": 4, "alpha": 1e-2},
             {"init": "spectral", "rank": 2, "zeta": zeta}]
    trajs = train_batch(prob, specs, solver="gd", lr=lrs, steps=30, log_every=6, metrics=metrics)
    for spec, lr, got in zip(specs, lrs, trajs):
        ref = lorasim.train(prob, init=spec, lr=lr, solver="gd", steps=30, log_every=6, metrics=metrics)
        assert ref.status == "ok"
        _assert_same_frame(got, ref)
        torch.testing.assert_close(got.A, ref.A, rtol=1e-8, atol=1e-12)
    cols = list(trajs[0].to_frame().columns)
    if metrics == "risk":
        assert cols == ["method", "init", "solver", "step", "status", "loss", "risk", "err_op", "err_fro"]
    else:
        assert "align_A" in cols and "sv_B_3" in cols
    risk = trajs[1].to_frame()["risk"]
    assert risk.iloc[-1] < risk.iloc[0]


# -- 3. divergence is isolated ------------------------------------------------------------------

def _far_start(problem):
    """Explicit factors far from the target: loss₀ ≈ 7e4, so max(loss₀, 1) differs between runs."""
    return _rand((problem.d, 3), 20, 3.0), _rand((3, problem.k), 21, 3.0)


@pytest.mark.parametrize("solver, kw, lrs, factor", [
    # Blows up within a log interval (to inf with gd, to ~1e159 with precgd): seen at that step.
    ("gd", {}, [1e-4, 80.0, 0.3], 1e8),
    ("precgd", {"damping": 1e-3}, [1e-4, 1e6, 0.4], 1e8),
    # Grows steadily: crosses diverge_factor·max(loss₀, 1), seen at the next log step.
    ("gd", {}, [1e-4, 1.5, 0.3], 1e2),
    ("precgd", {"damping": 1e-3}, [1e-4, 2.5, 0.4], 1e2),
], ids=["gd-blowup", "precgd-blowup", "gd-threshold", "precgd-threshold"])
def test_one_diverging_run_leaves_the_others_alone(linear, solver, kw, lrs, factor):
    far = _far_start(linear)
    specs = [far, {"init": "small_random", "rank": 4, "seed": 3, "alpha": 1e-1}, MIXED[3]]
    common = dict(steps=STEPS, log_every=LOG_EVERY, diverge_factor=factor, **kw)
    trajs = train_batch(linear, specs, solver=solver, lr=lrs, **common)
    refs = [lorasim.train(linear, *far, solver=solver, lr=lrs[0], **common)]
    refs += [lorasim.train(linear, init=spec, lr=lr, solver=solver, **common) for spec, lr in zip(specs[1:], lrs[1:])]
    assert refs[0].to_frame()["loss"].iloc[0] > 1e4  # run 0's own threshold is far above run 1's

    bad, ref = trajs[1], refs[1]
    assert bad.status == "diverged" and ref.status == "diverged"
    assert 0 < bad.diverged_step < STEPS
    df = bad.to_frame()
    # Logged steps until then, and the step where it diverged (factors are checked every step).
    assert df["step"].tolist() == [s for s in LOGGED_STEPS if s < bad.diverged_step] + [bad.diverged_step]
    assert (df["status"] == "diverged").all()
    last = df["loss"].iloc[-1]
    assert not math.isfinite(last) or last > factor * max(df["loss"].iloc[0], 1.0)
    ref_df = ref.to_frame()
    assert bad.diverged_step == ref.diverged_step  # one divergence rule in both
    # Until then the two loops agree (the blown-up last row only to its own round-off).
    before = int((ref_df["step"] < ref.diverged_step).sum())
    assert before >= 1
    for col in ref_df.columns:
        if ref_df[col].dtype.kind == "f":
            np.testing.assert_allclose(df[col].to_numpy()[:before], ref_df[col].to_numpy()[:before], rtol=1e-8,
                                       atol=1e-12, equal_nan=True, err_msg=col)
    for i in (0, 2):
        assert trajs[i].status == "ok"
        _assert_same_frame(trajs[i], refs[i])
        torch.testing.assert_close(trajs[i].A, refs[i].A, rtol=1e-8, atol=1e-12)


# -- 4. padding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("solver, kw, lrs", [
    ("gd", {}, [0.25, 0.2]),
    ("precgd", {"damping": 0.0}, [0.5, 0.3]),
    ("precgd", {"damping": 1e-3, "order": "gauss_seidel"}, [0.5, 0.3]),
    ("scaled_adam", {}, [1e-2, 1e-2]),
    ("adam", {"bias_correction": True}, [1e-2, 2e-2]),
])
def test_padded_run_gets_its_own_factors(linear, solver, kw, lrs):
    """A rank-2 run next to a rank-6 run is zero-padded to rank 6; the padding must stay inert."""
    small = {"init": "spectral", "rank": 2}
    big = {"init": "small_random", "rank": 6, "seed": 0, "alpha": 1e-2}
    got, other = train_batch(linear, [small, big], solver=solver, lr=lrs, steps=40, log_every=8, **kw)
    ref = lorasim.train(linear, init=small, lr=lrs[0], solver=solver, steps=40, log_every=8, **kw)
    assert got.A.shape == (linear.d, 2) and got.B.shape == (2, linear.k)
    assert other.A.shape == (linear.d, 6) and other.B.shape == (6, linear.k)
    torch.testing.assert_close(got.A, ref.A, rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(got.B, ref.B, rtol=1e-9, atol=1e-13)
    _assert_same_frame(got, ref)
    cols = got.to_frame().columns
    assert "sv_A_2" in cols and "sv_A_3" not in cols and "sv_B_3" not in cols
    assert "sv_A_6" in other.to_frame().columns
    if kw.get("damping") != 0.0:  # over-rank with λ = 0 is compared only for the padded run
        _assert_same_frame(other, lorasim.train(linear, init=big, lr=lrs[1], solver=solver, steps=40, log_every=8, **kw))


# -- 5. bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"lr": [0.1]}, "lr"),
    ({"lr": [0.1, 0.2, 0.3]}, "lr"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"lr": [0.1, -0.2]}, "lr"),
    ({"lr": [0.1, math.nan]}, "lr"),
    ({"solver": "full_ft"}, r"inits\[0\]"),  # full fine-tuning takes no init
    ({"graphs": "on"}, "graphs"),
    ({"graphs": "bogus"}, "graphs"),
    ({"inits": []}, "inits"),
    ({"inits": [{"init": "pissa", "rank": 2}, {"init": "small_random", "rank": 2}]}, "inits"),
    ({"inits": [{"init": "small_random", "rank": 2}, {"init": "lora_ga", "rank": 2}]}, "inits"),
    ({"inits": [{"init": "lora_ga", "rank": 2}, {"init": "lora_ga", "rank": 3}]}, "inits"),
    ({"methods": ["only-one"]}, "methods"),
    ({"methods": ["a", "b", "c"]}, "methods"),
    ({"inits": [{"init": "small_random"}, {"init": "spectral", "rank": 2}]}, r"inits\[0\]\.rank"),
    ({"inits": [{"init": "small_random", "rank": 2, "alpha": -1.0}]}, r"inits\[0\]\.alpha"),
    ({"inits": [{"init": "spectral", "rank": 2, "alpha": 1e-3}]}, r"inits\[0\]\.alpha"),
    ({"inits": [(np.ones((5, 2)), np.zeros((2, 20)))]}, "A0"),
    ({"steps": -1}, "steps"),
    ({"log_every": 0}, "log_every"),
    ({"metrics": "bogus"}, "metrics"),
    ({"damping": -1.0, "solver": "precgd"}, r"solver\.damping"),
])
def test_bad_batch_arguments_name_the_field(linear, kwargs, field):
    args = {"inits": [{"init": "small_random", "rank": 2}, {"init": "spectral", "rank": 2}], "steps": 2}
    args.update(kwargs)
    inits = args.pop("inits")
    with pytest.raises(ConfigError, match=rf"^{field}="):
        train_batch(linear, inits, **args)


# -- 6. the per-run Gram solve --------------------------------------------------------------------

def test_gram_solve_falls_back_per_batch_element():
    g = _rand((2, 7, 3), 0)
    F = torch.stack([torch.zeros(3, 5, dtype=torch.float64), _rand((3, 5), 1)])
    out = damped_gram_solve_right(g, F, 0.0, "inv")
    torch.testing.assert_close(out[0], g[0], rtol=0, atol=0)  # singular Gram: identity fallback
    Fn, gn = F[1].numpy(), g[1].numpy()
    np.testing.assert_allclose(out[1].numpy(), gn @ np.linalg.inv(Fn @ Fn.T), rtol=1e-10, atol=1e-13)
    # Alone, each element gives the same answer as in the batch.
    for i in range(2):
        torch.testing.assert_close(damped_gram_solve_right(g[i], F[i], 0.0, "inv"), out[i], rtol=1e-12, atol=1e-14)
    # With damping, both are regular.
    lam = 0.3
    out = damped_gram_solve_right(g, F, lam, "inv")
    for i in range(2):
        Fn, gn = F[i].numpy(), g[i].numpy()
        np.testing.assert_allclose(out[i].numpy(), gn @ np.linalg.inv(Fn @ Fn.T + lam * np.eye(3)), rtol=1e-10,
                                   atol=1e-13)


def test_gram_solve_shift():
    g = _rand((2, 6, 4), 2)
    F = _rand((2, 4, 9), 3)
    F[1, 2:] = 0  # a rank-2 run padded to rank 4: zero rows in F
    shift = torch.zeros(2, 4, 4, dtype=torch.float64)
    shift[0] = torch.as_tensor(np.diag([0.5, 0.0, 2.0, 0.1]))
    shift[1, 2, 2] = shift[1, 3, 3] = 1.0
    for lam in (0.0, 1e-2):
        out = damped_gram_solve_right(g, F, lam, "inv", shift=shift)
        for i in range(2):
            Fn, gn, Sn = F[i].numpy(), g[i].numpy(), shift[i].numpy()
            ref = gn @ np.linalg.inv(Fn @ Fn.T + lam * np.eye(4) + Sn)
            np.testing.assert_allclose(out[i].numpy(), ref, rtol=1e-10, atol=1e-13)
    # The padded run: its real block is solved alone, its padded columns pass through unscaled.
    out = damped_gram_solve_right(g, F, 0.0, "inv", shift=shift)
    np.testing.assert_allclose(out[1, :, :2].numpy(),
                               g[1, :, :2].numpy() @ np.linalg.inv(F[1, :2].numpy() @ F[1, :2].numpy().T),
                               rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(out[1, :, 2:], g[1, :, 2:], rtol=1e-14, atol=0)


def test_subspace_defined_mask_matches_scalar_version():
    cases = [[3.0, 2.0, 1.0], [3.0, 2.0, 2.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.5], [2.0, 1.0, 1.0]]
    s = torch.tensor(cases, dtype=torch.float64)
    for r in (1, 2, 3, 4):
        mask = subspace_defined_mask(s, r)
        assert mask.shape == (len(cases),)
        assert mask.tolist() == [subspace_defined(torch.tensor(c), r) for c in cases], r
    assert subspace_defined_mask(s, 2).tolist() == [True, False, False, False, True, False]


# -- 7. chunked residual and batched loss ---------------------------------------------------------

@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_chunked_residual_in_many_chunks(monkeypatch, lead):
    monkeypatch.setattr(linear_mod, "_CHUNK_ELEMENTS", 40)
    P, B, T = _rand((*lead, 11, 3), 0), _rand((*lead, 3, 7), 1), _rand((11, 7), 2)
    b = math.prod(lead)
    rows = max(1, 40 // (b * 7))
    assert math.ceil(11 / rows) >= 2  # several chunks, the last one partial unless rows divides 11
    got = linear_mod._chunked_sq_residual(P, B, T)
    assert got.shape == lead
    Pn, Bn, Tn = P.numpy(), B.numpy(), T.numpy()
    ref = ((Pn @ Bn - Tn) ** 2).sum(axis=(-2, -1))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


def _own_linear_data(n, d=9, k=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W0 = rng.standard_normal((d, k))
    delta = rng.standard_normal((d, 2)) @ rng.standard_normal((2, k))
    Y = X @ (W0 + delta) + 0.1 * rng.standard_normal((n, k))
    return X, Y, W0, delta


@pytest.mark.parametrize("n", [50, 5], ids=["N>d", "N<d"])
def test_batched_loss_equals_each_alone_and_the_direct_formula(monkeypatch, n):
    X, Y, W0, delta = _own_linear_data(n)
    prob = lorasim.LinearTeacher.from_arrays(X, Y, W0, delta=delta)
    monkeypatch.setattr(linear_mod, "_CHUNK_ELEMENTS", 20)  # after construction: only the loss is chunked
    A, B = _rand((4, 9, 3), 5, 0.5), _rand((4, 3, 6), 6, 0.5)
    batched = prob.loss(A, B)
    assert batched.shape == (4,)
    for i in range(4):
        alone = prob.loss(A[i], B[i])
        assert alone.shape == ()
        assert float(batched[i]) == pytest.approx(float(alone), rel=1e-12)
        W = W0 + A[i].numpy() @ B[i].numpy()
        direct = 0.5 * ((X @ W - Y) ** 2).sum() / n
        assert float(batched[i]) == pytest.approx(direct, rel=1e-10)


def test_batched_loss_population():
    prob = lorasim.LinearTeacher(d=12, k=8, r_star=2, n="population", noise=0.3, seed=0)
    A, B = _rand((3, 12, 2), 1), _rand((3, 2, 8), 2)
    batched = prob.loss(A, B)
    for i in range(3):
        assert float(batched[i]) == pytest.approx(float(prob.loss(A[i], B[i])), rel=1e-13)
        direct = 0.5 * np.sum((A[i].numpy() @ B[i].numpy() - prob.delta.numpy()) ** 2) + 0.5 * 8 * 0.3**2
        assert float(batched[i]) == pytest.approx(direct, rel=1e-10)


# -- 8. the batched metrics row against independent computations ----------------------------------

def _top_left_np(M, r):
    return np.linalg.svd(M, full_matrices=False)[0][:, :r]


def test_record_batch_against_independent_formulas():
    n, d, k, rank, r_star = 60, 9, 6, 4, 2
    X, Y, W0, delta = _own_linear_data(n, d, k, seed=3)
    prob = lorasim.LinearTeacher.from_arrays(X, Y, W0, delta=delta, r_star=r_star)
    G = X.T @ (Y - X @ W0) / n
    UG, _, VGh = np.linalg.svd(G)
    UG, VG = UG[:, :r_star], VGh[:r_star].T
    U_star = np.linalg.svd(delta)[0][:, :r_star]

    A = _rand((4, d, rank), 10)
    B = _rand((4, rank, k), 11)
    A[1] = torch.as_tensor(UG @ np.diag([2.0, 1.5])) @ _rand((r_star, rank), 12) + 1e-3 * _rand((d, rank), 13)
    B[2] = 0  # B = 0: no top-r subspace, align_B is NaN
    A[3] = torch.linalg.qr(_rand((d, rank), 14))[0] * 0.7  # equal singular values: top-2 is arbitrary
    A0, B0 = _rand((4, d, rank), 15, 0.1), _rand((4, rank, k), 16, 0.1)

    ref = AlignmentTargets.from_problem(prob, rank)
    assert ref.r_align == r_star
    rows = record_batch(prob, ref, A, B, A0, B0, rank)
    assert len(rows) == 4
    for i, row in enumerate(rows):
        An, Bn, A0n, B0n = A[i].numpy(), B[i].numpy(), A0[i].numpy(), B0[i].numpy()
        W = W0 + An @ Bn
        assert row["loss"] == pytest.approx(0.5 * ((X @ W - Y) ** 2).sum() / n, rel=1e-10)
        E = An @ Bn - delta
        assert row["risk"] == pytest.approx(0.5 * (E**2).sum(), rel=1e-10)
        assert row["err_op"] == pytest.approx(np.linalg.norm(E, 2), rel=1e-10)
        assert row["err_fro"] == pytest.approx(np.linalg.norm(E), rel=1e-10)
        drift = An.T @ An - Bn @ Bn.T - (A0n.T @ A0n - B0n @ B0n.T)
        assert row["balance_drift"] == pytest.approx(np.linalg.norm(drift), rel=1e-10)
        sA, sB = np.linalg.svd(An, compute_uv=False), np.linalg.svd(Bn, compute_uv=False)
        for j in range(rank):
            assert row[f"sv_A_{j + 1}"] == pytest.approx(sA[j], rel=1e-10, abs=1e-14)
            assert row[f"sv_B_{j + 1}"] == pytest.approx(sB[j], rel=1e-10, abs=1e-14)
        if i == 3:
            assert math.isnan(row["align_A"]) and math.isnan(row["align_A_star"])
            assert math.isnan(row["theta_A_1"]) and math.isnan(row["theta_A_2"])
        else:
            UA = _top_left_np(An, r_star)
            angles = scipy.linalg.subspace_angles(UG, UA)  # descending
            assert row["align_A"] == pytest.approx(np.sin(angles.max()), rel=1e-8, abs=1e-12)
            assert row["theta_A_1"] == pytest.approx(angles[0], rel=1e-8, abs=1e-12)
            assert row["theta_A_2"] == pytest.approx(angles[1], rel=1e-8, abs=1e-12)
            star = scipy.linalg.subspace_angles(U_star, UA)
            assert row["align_A_star"] == pytest.approx(np.sin(star.max()), rel=1e-8, abs=1e-12)
        if i == 2:
            assert math.isnan(row["align_B"]) and math.isnan(row["align_B_star"])
        else:
            VB = np.linalg.svd(Bn, full_matrices=False)[2][:r_star].T
            angles = scipy.linalg.subspace_angles(VG, VB)
            assert row["align_B"] == pytest.approx(np.sin(angles.max()), rel=1e-8, abs=1e-12)
    assert rows[1]["align_A"] < 1e-2  # the nearly aligned element is measured as such
    # One element alone gives the same row as in the batch.
    alone = record_batch(prob, ref, A[1:2], B[1:2], A0[1:2], B0[1:2], rank)[0]
    assert list(alone) == list(rows[1])
    for key in alone:
        assert alone[key] == pytest.approx(rows[1][key], rel=1e-10, abs=1e-14), key


# -- 9. the fused kernel ---------------------------------------------------------------------------

def test_plan_grid_gives_each_row_tile_a_program_and_fills_the_slots():
    for row_tiles, col_tiles, slots in [(5, 3, 8), (4, 3, 8), (1, 1, 8), (12, 7, 264), (64, 30, 264),
                                        (97, 2, 16), (32, 64, 132), (128, 256, 132)]:
        pm, pn = plan_grid(row_tiles, col_tiles, slots)
        assert pm == row_tiles and 1 <= pn <= col_tiles
        # as many column splits as fit in one wave, and never fewer than one
        assert pm * pn <= max(slots, row_tiles)
        assert pn == col_tiles or pm * (pn + 1) > slots


def test_gram_rows_keep_the_chunk_stack_shallow():
    """The Gram kernel's rows per program: powers of two from its 64-row tile to GRAM_ROWS, at most GRAM_CHUNKS
    chunks (the stack assemble reads) unless GRAM_ROWS caps the rows (n > 16384), and no more chunks than fill the
    device about twice. A single run on an H100
    (132 multiprocessors, two pairs) gets 128 rows at d = 4096 and 512 at 16384, the measured optima; a batch of 64
    keeps 512, as before the rule."""
    from lorasim import kernels
    assert (kernels.gram_rows(4096, 2, 132), kernels.gram_rows(16384, 2, 132)) == (128, 512)
    assert (kernels.gram_rows(4096, 128, 132), kernels.gram_rows(16384, 128, 132)) == (512, 512)
    for n in (1, 63, 64, 65, 1000, 2048, 2049, 4096, 9000, 16384, 16385, 10**6):
        for per_chunk, slots in ((2, 132), (2, 8), (6, 132), (128, 132), (1000, 132)):
            rows = kernels.gram_rows(n, per_chunk, slots)
            assert 64 <= rows <= kernels.GRAM_ROWS and rows & (rows - 1) == 0, (n, rows)
            chunks, limit = -(-n // rows), min(kernels.GRAM_CHUNKS, max(1, -(-2 * slots // per_chunk)))
            assert chunks <= limit or rows == kernels.GRAM_ROWS, (n, per_chunk, slots, rows)
            assert rows == 64 or -(-n // (rows // 2)) > limit, (n, per_chunk, slots, rows)  # no smaller would do


def test_symmetric_partials_reads_all_of_s_where_the_kernel_does_not_apply():
    """On the CPU (no kernel) Σ̂A from Σ̂'s halves is the plain product of all of Σ̂, one part; the linear model's
    ``sigma_halves`` is off unless asked for (not yet timed on a GPU). The halves themselves: the interpreter test."""
    from lorasim import kernels
    import lorasim
    X = torch.randn(400, 300)
    S, R = X.T @ X / 400, torch.randn(300, 8)
    stack = kernels.symmetric_partials(S, R)
    assert stack.shape == (1, 300, 8) and torch.equal(stack[0], S @ R)
    for bad in ((S[:, :299], R), (S, R[:299])):
        try:
            kernels.symmetric_partials(*bad)
        except ValueError as e:
            assert str(e).startswith("S, R: allowed"), e
        else:
            raise AssertionError("a non-square S or a short R accepted")
    assert lorasim.LinearTeacher.sigma_halves is False


def test_auto_split_is_hoisted_up_to_32_columns():
    """CONFIG's "auto" split: the kernel's own for products up to 32 columns (the widths timed: 8 and 16, padded to
    16, and 32, where the step at d = 16384 took 8 % less time), Triton's for wider ones, where the hoisted split made
    the r = 64 step 7.5 % slower (benchmarks.md); a named split is kept. Mutations: a threshold of 16 or 64, or
    "auto" read as a split of its own, fail. (That the launch receives it: the interpreter test.)"""
    from lorasim import kernels
    assert kernels.CONFIG["split"] == kernels.CONFIG_ONE_SIDED["split"] == "auto"
    assert [kernels.resolved_split("auto", w) for w in (1, 16, 17, 32, 33, 64)] == [
        "hoisted", "hoisted", "hoisted", "hoisted", "triton", "triton"]
    for split in ("triton", "hoisted"):
        assert {kernels.resolved_split(split, w) for w in (1, 32, 64)} == {split}


def test_best_kernel_config_takes_the_fastest_accurate_reproducible_row_at_the_largest_size():
    from lorasim import kernels

    def row(d, ms, precision="tf32x3", err=3e-7, same=True, **cfg):
        config = {**kernels.CONFIG, "block": [64, 64], "precision": precision, **cfg}
        return {"d": d, "ms": ms, "rel_err": err, "deterministic": same, "config": json.dumps(config)}
    rows = [{"d": 16384, "ms": 0.5, "variant": "cublas x2", "config": float("nan")},
            row(4096, 0.01, num_warps=2),  # fastest overall, but another size
            row(16384, 0.60, num_stages=2),
            row(16384, 0.55, precision="tf32", err=8e-4),  # not float32-accurate
            row(16384, 0.56, err=2e-6),
            row(16384, 0.57, same="False"),  # a CSV read back spells booleans as text
            row(16384, 0.58, row_subtiles=1)]
    best = kernels.best_kernel_config(rows)
    assert best["row_subtiles"] == 1 and best["block"] == (64, 64) and "precision" not in best
    assert kernels.best_kernel_config(rows[:2]) == {}
    assert kernels.best_kernel_config([row(16384, 0.5, split="hoisted")])["split"] == "auto"
    assert kernels.best_kernel_config([row(16384, 0.5, split="triton")])["split"] == "triton"
    before_splits = json.loads(row(16384, 0.5)["config"])
    del before_splits["split"]  # a table from before the kernel's split measured Triton's
    assert kernels.best_kernel_config([{**row(16384, 0.5), "config": json.dumps(before_splits)}])["split"] == "triton"
    # a table from before row blocks (no row_subtiles in its configs) measured one tile a block, not today's default
    old = json.loads(rows[2]["config"])
    del old["row_subtiles"]
    assert kernels.best_kernel_config([{**rows[2], "config": json.dumps(old)}])["row_subtiles"] == 1


_KERNEL_SCRIPT = textwrap.dedent("""
    import torch
    from lorasim import kernels
    from lorasim.kernels import plan_grid
    from non_finite_cases import non_finite_cases  # tests/, on the path the test gives
    assert kernels._INTERPRET and kernels.triton is not None
    torch.manual_seed(0)

    def rel(got, ref):
        return float(torch.linalg.matrix_norm(got.double() - ref) / torch.linalg.matrix_norm(ref))

    cases = [(torch.randn(130, 77), 5, (32, 32)), (torch.randn(130, 77), 33, (32, 32)),
             (torch.randn(200, 300), 16, (64, 128)), (torch.randn(300, 200).T, 7, (32, 64)),
             (torch.randn(600, 90), 16, (256, 32)), (torch.randn(600, 90), 9, (256, 16))]
    for M, w, block in cases:
        m, n = M.shape
        R = torch.randn(w, n).T if not M.is_contiguous() else torch.randn(n, w)
        L = torch.randn(m, w)
        assert kernels.usable(M, w)
        pm, pn = plan_grid(-(-m // block[0]), -(-n // block[1]), 8)
        assert pm == -(-m // block[0]) and 1 <= pn <= -(-n // block[1])
        for r, l in ((R, None), (None, L), (R, L)):
            MR, LM = kernels.skinny_products(M, r, l, block=block, row_subtiles=1)  # blocks of 2 and 4: below
            assert (MR is None) == (r is None) and (LM is None) == (l is None)
            if r is not None:
                assert MR.shape == (m, w) and MR.dtype == torch.float32
                assert rel(MR, M.double() @ r.double()) < 1e-5, (m, n, w, block)
            if l is not None:
                assert LM.shape == (w, n) and LM.dtype == torch.float32
                assert rel(LM, l.double().T @ M.double()) < 1e-5, (m, n, w, block)

    # Row blocks of 2 and 4 tiles, the last one partly or wholly past M's rows (130 rows: 3 tiles of 64 in a block
    # of 4; 200 rows of 32: 7 tiles in blocks of 4 and 2): each block writes one part of Lᵀ M. Mutation: a subtile
    # whose products are skipped, or stored at the wrong rows, fails the values
    for M, w, block in [(torch.randn(130, 77), 16, (64, 32)), (torch.randn(200, 300), 9, (32, 64)),
                        (torch.randn(300, 200).T, 7, (32, 32))]:
        m, n = M.shape
        R, L = torch.randn(n, w), torch.randn(m, w)
        for subtiles, precision, split in ((2, "ieee", "triton"), (4, "ieee", "triton"), (1, "tf32x3", "hoisted"),
                                           (2, "tf32x3", "hoisted"), (4, "tf32x3", "hoisted")):
            for r, l in ((R, None), (None, L), (R, L)):
                for left_as_a in (False, True):
                    MRp, LMp = kernels.skinny_partials(M, r, l, precision=precision, block=block,
                                                       row_subtiles=subtiles, left_as_a=left_as_a, split=split)
                    if l is not None:
                        assert LMp.shape[0] == -(-m // (block[0] * subtiles)), (LMp.shape, m, block, subtiles)
                        assert rel(LMp.sum(0).T, l.double().T @ M.double()) < 1e-5, (m, n, w, block, subtiles)
                    if r is not None:
                        assert rel(MRp.sum(0), M.double() @ r.double()) < 1e-5, (m, n, w, block, subtiles)
    for key, bad, allowed in (("row_subtiles", 3, "1, 2, 4"), ("row_subtiles", 0, "1, 2, 4"),
                              ("split", "manual", "auto, triton, hoisted")):
        try:
            kernels.skinny_partials(M, R, L, **{key: bad})
        except ValueError as e:
            assert str(e).startswith(f"{key}=") and allowed in str(e), e
        else:
            raise AssertionError(f"{key}={bad} accepted")


    # The linear model's fused gradient (a batch laid side by side) equals the plain formula.
    import lorasim
    for n in (200, "population"):
        p32 = lorasim.LinearTeacher(d=24, k=20, r_star=3, n=n, seed=1, dtype="float32")
        p64 = lorasim.LinearTeacher(d=24, k=20, r_star=3, n=n, seed=1)
        A = torch.randn(3, 24, 4, dtype=torch.float64)
        B = torch.randn(3, 4, 20, dtype=torch.float64)
        assert kernels.usable(p32.G, 12)
        S = p64.sigma_hat
        ref = (S @ A @ (B @ B.mT) - p64.G @ B.mT, (A.mT @ S @ A) @ B - A.mT @ p64.G)
        # the CPU step (numpy's BLAS) and the CUDA one (the G pass, then kernels.assemble), here interpreted
        for got in (p32.grads(A.float(), B.float()), p32._fused_grads(A.float(), B.float())):
            for g, e in zip(got, ref):
                assert g.shape == e.shape
                for i in range(3):
                    assert rel(g[i], e[i]) < 1e-5

    # Σ̂A from Σ̂'s upper 2×2 blocks (kernels.symmetric_partials): the product of Σ̂'s upper blocks mirrored, with
    # the lower-left block never read (NaN there changes no bit), at split rows that leave blocks of unequal size
    # and partial tiles; below two split rows (m = 200) all of S is read. Mutations: the lower-left block read, the
    # two-sided pass's left product dropped or added to the wrong half, a half's parts shifted, fail.
    for m, w, transposed in ((300, 5, False), (256, 16, False), (301, 7, True), (200, 4, False)):
        X = torch.randn(m + 7, m, dtype=torch.float64)
        Sm = (X.T @ X / m).float()
        Sm = Sm.T if transposed else Sm  # a column-major view: pointer loads with its strides
        h = (m // 2) // kernels.SYMMETRIC_SPLIT * kernels.SYMMETRIC_SPLIT
        R = torch.randn(m, w)
        mirrored = Sm.double().clone()
        mirrored[h:, :h] = mirrored[:h, h:].T
        stack = kernels.symmetric_partials(Sm, R)
        assert stack.shape[1:] == (m, w) and rel(stack.sum(0), mirrored @ R.double()) < 1e-5, (m, w)
        if h:
            S_bad = Sm.clone()
            S_bad[h:, :h] = float("nan")
            assert torch.equal(kernels.symmetric_partials(S_bad, R), stack), m
        else:
            assert torch.equal(stack, kernels.skinny_partials(Sm, R)[0]), m
    # and the linear model's step with it: the same gradients as the plain formula
    h32 = lorasim.LinearTeacher(d=300, k=40, r_star=3, n=400, seed=2, dtype="float32")
    h64 = lorasim.LinearTeacher(d=300, k=40, r_star=3, n=400, seed=2)
    Ah, Bh = torch.randn(2, 300, 4, dtype=torch.float64), torch.randn(2, 4, 40, dtype=torch.float64)
    Sh = h64.sigma_hat
    want = (Sh @ Ah @ (Bh @ Bh.mT) - h64.G @ Bh.mT, (Ah.mT @ Sh @ Ah) @ Bh - Ah.mT @ h64.G)
    h32.sigma_halves = True
    calls = []
    halves = kernels.symmetric_partials
    kernels.symmetric_partials = lambda *a, **k: calls.append(1) or halves(*a, **k)
    try:
        got = h32._fused_grads(Ah.float(), Bh.float())
    finally:
        kernels.symmetric_partials = halves
    assert calls == [1]  # the step took Σ̂A from the halves (mutation: the attribute ignored)
    for g, e in zip(got, want):
        assert all(rel(g[i], e[i]) < 1e-5 for i in range(2))

    # LinearTeacher.descend: the step of GD inside assemble equals A − lr ∇_A, B − lr ∇_B (float64's gradient), per
    # run; a float step size or a non-batched factor is declined and changes nothing
    A = torch.randn(3, 24, 4, dtype=torch.float64)
    B = torch.randn(3, 4, 20, dtype=torch.float64)
    ref = (S @ A @ (B @ B.mT) - p64.G @ B.mT, (A.mT @ S @ A) @ B - A.mT @ p64.G)
    lr = torch.tensor([0.01, 0.02, 0.03]).reshape(3, 1, 1)
    A32, B32 = A.float(), B.float()
    assert p32.descend(A32, B32, lr, 2 * lr)
    for got, start, g, rate in ((A32, A, ref[0], lr), (B32, B, ref[1], 2 * lr)):
        want = start - rate.double() * g
        assert rel(got.double().flatten(0, 1), want.flatten(0, 1)) < 1e-6
    A2, B2 = A[0].float(), B[0].float()
    assert not p32.descend(A32, B32, 0.01, 0.02) and not p32.descend(A2, B2, lr[:1], lr[:1])
    assert torch.equal(A2, A[0].float()) and torch.equal(B2, B[0].float())
    # the step that reads G (noisy labels: the G pass's stacks are Q), Σ̂ = I (population: job 0's P is A itself,
    # the tensor it writes), a single run
    for n, noise in ((200, 0.3), ("population", 0.0), (200, 0.0)):
        q32 = lorasim.LinearTeacher(d=24, k=20, r_star=3, n=n, seed=3, noise=noise, dtype="float32")
        q64 = lorasim.LinearTeacher(d=24, k=20, r_star=3, n=n, seed=3, noise=noise)
        assert (q32.teacher_factors() is None) == (noise > 0), n
        for b in (1, 3):
            A, B = torch.randn(b, 24, 4, dtype=torch.float64), torch.randn(b, 4, 20, dtype=torch.float64)
            S = q64.sigma_hat
            ref = (S @ A @ (B @ B.mT) - q64.G @ B.mT, (A.mT @ S @ A) @ B - A.mT @ q64.G)
            A32, B32 = A.float(), B.float()
            assert q32.descend(A32, B32, lr[:b], lr[:b])
            for got, start, g in ((A32, A, ref[0]), (B32, B, ref[1])):
                assert rel(got.double().flatten(0, 1), (start - lr[:b].double() * g).flatten(0, 1)) < 1e-6, (n, b)

    # Deep stacks of partial products (4 row tiles, 3 column splits of the grid at d = 200, k = 150), summed by
    # the kernels that read them: the gradient still equals float64's
    p32 = lorasim.LinearTeacher(d=200, k=150, r_star=3, n=400, seed=2, dtype="float32")
    p64 = lorasim.LinearTeacher(d=200, k=150, r_star=3, n=400, seed=2)
    SAp, _ = kernels.skinny_partials(p32._sigma, torch.randn(200, 8))
    GBp, AGp = kernels.skinny_partials(p32.G, torch.randn(150, 8), torch.randn(200, 8))
    assert SAp.shape[0] > 1 and GBp.shape[0] > 1 and AGp.shape[0] > 1, (SAp.shape, GBp.shape, AGp.shape)
    A = torch.randn(2, 200, 4, dtype=torch.float64)
    B = torch.randn(2, 4, 150, dtype=torch.float64)
    S = p64.sigma_hat
    ref = (S @ A @ (B @ B.mT) - p64.G @ B.mT, (A.mT @ S @ A) @ B - A.mT @ p64.G)
    for g, e in zip(p32._fused_grads(A.float(), B.float()), ref):
        for i in range(2):
            assert rel(g[i], e[i]) < 1e-5

    # kernels.assemble: out_b = P_b S_b − Q_b, in ∇_A's layout and in ∇_B's (transposed views), S not symmetric;
    # one job, both in one launch (of different lengths), and with P, Q and S as stacks of partial products
    for b, r in ((1, 16), (3, 5), (2, 24)):
        P, Q, S = torch.randn(70, b * r), torch.randn(70, b * r), torch.randn(b, r, r)
        P2, Q2 = torch.randn(45, b * r), torch.randn(45, b * r)

        def want_of(P, S, Q):
            def blocks(M):
                return M.double().unflatten(1, (b, r)).transpose(0, 1)
            return blocks(P) @ S.double() - blocks(Q)
        assert kernels.assemble_usable(P, r)
        out = torch.empty(b, 70, r)
        kernels.assemble([(P, S, Q, out)], "ieee")
        outT, out2 = torch.empty(b, r, 70).mT, torch.empty(b, 45, r)
        kernels.assemble([(P.T.contiguous().T, S.mT.contiguous().mT, Q.T.contiguous().T, outT), (P2, S.mT, Q2, out2)],
                         "ieee")
        stacked = torch.empty(b, 70, r)
        kernels.assemble([(*(torch.stack([M / 2, M / 4, M / 4]) for M in (P, S, Q)), stacked)], "ieee")
        for o, w in ((out, want_of(P, S, Q)), (outT, want_of(P, S, Q)), (stacked, want_of(P, S, Q)),
                     (out2, want_of(P2, S.mT, Q2))):
            assert float((o.double() - w).norm() / w.norm()) < 1e-6, (b, r)

    # with step sizes, out holds a factor and takes a step of GD in the same launch: per run or one for all, and with
    # P the factor itself (∇_B's job reads Bᵀ and writes it). Mutations: an update without the step size, or from
    # the wrong rows of the factor, fails the values
    for lr_shape in ((b, 1, 1), (1,)):
        lr0, lr1 = torch.rand(*lr_shape) + 0.5, torch.rand(*lr_shape) + 0.5
        X0, Bf = torch.randn(b, 70, r), torch.randn(b, r, 45)
        Bt = Bf.reshape(-1, 45).T  # 45 × (b·r), a view of Bf
        want0 = X0.double() - lr0.double().reshape(-1, 1, 1) * want_of(P, S, Q)
        want1 = Bf.mT.double() - lr1.double().reshape(-1, 1, 1) * want_of(Bt, S.mT, Q2)
        kernels.assemble([(P, S, Q, X0), (Bt, S.mT, Q2, Bf.mT)], "ieee", step_sizes=(lr0, lr1))
        for o, w in ((X0, want0), (Bf.mT, want1)):
            assert float((o.double() - w).norm() / w.norm()) < 1e-6, (b, r, lr_shape)
    try:
        kernels.assemble([(P, S, Q, X0)], "ieee", step_sizes=(torch.ones(b + 1),))
    except ValueError as e:
        assert str(e).startswith("step_sizes:"), e
    else:
        raise AssertionError("b + 1 step sizes accepted")

    # a stack deeper than MAX_PARTS (lowered to 2 here) is summed by torch before the launch, which then reads one
    # part; a shallow one is read whole. Mutation: without the pre-sum the launch gets all 3 parts
    depths, launcher, deep = [], kernels._assemble_kernel, kernels.MAX_PARTS

    class Recording:
        def __getitem__(self, grid):
            def launch(*args, **meta):
                depths.append((meta["P0_PARTS"], meta["S0_PARTS"], meta["Q0_PARTS"]))
                return launcher[grid](*args, **meta)
            return launch
    kernels._assemble_kernel, kernels.MAX_PARTS = Recording(), 2
    try:
        deep_out, shallow_out = torch.empty(b, 70, r), torch.empty(b, 70, r)
        kernels.assemble([(*(torch.stack([M / 2, M / 4, M / 4]) for M in (P, S, Q)), deep_out)], "ieee")
        kernels.assemble([(*(torch.stack([M / 2, M / 2]) for M in (P, S, Q)), shallow_out)], "ieee")
    finally:
        kernels._assemble_kernel, kernels.MAX_PARTS = launcher, deep
    assert depths == [(1, 1, 1), (2, 2, 2)], depths
    for o in (deep_out, shallow_out):
        assert float((o.double() - want_of(P, S, Q)).norm() / want_of(P, S, Q).norm()) < 1e-6

    # a job with an operand the kernel cannot read (float64 here) goes through torch, whole: no launch
    class NoLaunch:
        def __getitem__(self, grid):
            raise AssertionError("the kernel was launched on a float64 operand")
    mixed = torch.empty(b, 45, r, dtype=torch.float64)
    launcher, kernels._assemble_kernel = kernels._assemble_kernel, NoLaunch()
    try:
        kernels.assemble([(P, S, Q, out), (P2.double(), S.mT.double(), Q2.double(), mixed)], "ieee")
    finally:
        kernels._assemble_kernel = launcher
    w = want_of(P2, S.mT, Q2)
    assert float((mixed - w).norm() / w.norm()) < 1e-6

    # kernels.grams: X_bᵀ Y_b per run, two pairs of different lengths in one launch (Bᵀ's column-major view and
    # a row-major pair), against float64; 1100 rows are three chunks (of 512 rows: 8 "multiprocessors" interpreted, 4 programs
    # a chunk), so the sum over chunks is exercised
    for b, r, n0, n1 in ((1, 16, 300, 200), (3, 5, 70, 133), (4, 24, 129, 64), (2, 8, 1100, 700)):
        X0, X1, Y1 = torch.randn(b * r, n0).T, torch.randn(n1, b * r), torch.randn(n1, b * r)
        got = kernels.grams([(X0, X0), (X1, Y1)], r, "ieee")
        chunks = kernels.gram_partials([(X0, X0), (X1, Y1)], r, "ieee").shape[1]
        assert chunks == -(-max(n0, n1) // kernels.gram_rows(max(n0, n1), 2 * b, 8)) and chunks > 1
        want = kernels.grams_reference([(X0.double(), X0.double()), (X1.double(), Y1.double())], r)
        assert got.shape == (2, b, r, r)
        assert float((got.double() - want).norm() / want.norm()) < 1e-6, (b, r)
        parts = torch.stack([Y1 / 2, Y1 / 4, Y1 / 4])  # Y as a stack of partial products
        assert torch.allclose(kernels.grams([(X0, X0), (X1, parts)], r, "ieee"), got, rtol=1e-5, atol=1e-4)
        one = kernels.grams([(X1, Y1)], r, "ieee")
        assert one.shape == (1, b, r, r) and float((one.double() - want[1:]).norm() / want[1:].norm()) < 1e-6

    # offsets past 32 bits: with the limit lowered to what these shapes reach, every kernel hands over to torch
    # (a launch raises), and the values are torch's. The skinny pass's partial buffer counts too: with 16-row
    # tiles and width 20 (32 slots) it is 6 · 80 · 32 elements, twice M's 96 · 80.
    class NoKernel:
        def __getitem__(self, grid):
            raise AssertionError("a kernel was launched past the 32-bit offset limit")
    M, R, L = torch.randn(96, 80), torch.randn(80, 20), torch.randn(96, 20)
    small_tiles = dict(block=(16, 16), tma=False, row_subtiles=1)
    spans = {"M": 96 * 80 - 1, "buffer": 6 * 80 * 32 - 1}
    saved = (kernels._skinny_kernel, kernels._assemble_kernel, kernels._gram_kernel, kernels.MAX_OFFSET)
    try:
        kernels._skinny_kernel = kernels._assemble_kernel = kernels._gram_kernel = NoKernel()
        for limit in (spans["M"] - 1, spans["buffer"] - 1):
            kernels.MAX_OFFSET = limit
            MR, LMt = kernels.skinny_products(M, R, L, precision="ieee", **small_tiles)
            assert torch.allclose(MR, M @ R, atol=1e-4) and torch.allclose(LMt, L.T @ M, atol=1e-4), limit
        kernels.MAX_OFFSET = 45 * 2 - 2  # P below reaches offset 45 · 2 − 1
        P, Q, S, out = torch.randn(45, 2), torch.randn(45, 2), torch.randn(1, 2, 2), torch.empty(1, 45, 2)
        kernels.assemble([(P, S, Q, out)], "ieee")
        assert torch.allclose(out[0], P @ S[0] - Q, atol=1e-5)
        got = kernels.grams([(P, P)], 2, "ieee")
        assert torch.allclose(got[0, 0], P.T @ P, atol=1e-4)
    finally:
        kernels._skinny_kernel, kernels._assemble_kernel, kernels._gram_kernel, kernels.MAX_OFFSET = saved
    # exactly at the limit the kernel runs (the bound is not off by one): its stack has one part per row tile
    kernels.MAX_OFFSET = spans["buffer"]
    try:
        MR, LMt = kernels.skinny_partials(M, R, L, precision="ieee", **small_tiles)
        assert LMt.shape[0] == 6 and torch.allclose(LMt.sum(0), (L.T @ M).T, atol=1e-4)
    finally:
        kernels.MAX_OFFSET = saved[3]
    # The kernel's tf32 split (kernels._tf32_parts), element by element, against round-to-nearest (ties away from
    # zero, cvt.rna's rule) computed in float64: hi is that rounding, hi + lo is x exactly, |lo| is at most half a
    # unit (2^-11 |x| for normal x). Over 20,000 random bit patterns of finite float32s below the first that rounds
    # past 2^128 (0x7F7FF000, which rounds to inf, as cvt.rna's does), subnormals included, and 20,000 random ties.
    # Mutations: a truncating split (no + 0x1000), a mask that keeps 11 bits, or lo taken from the unmasked sum fail.
    import numpy as np
    import triton
    import triton.language as tl
    from lorasim.kernels import _tf32_parts

    @triton.jit
    def split_kernel(X, HI, LO, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < n
        hi, lo = _tf32_parts(tl.load(X + offs, mask=ok, other=0.0))
        tl.store(HI + offs, hi, mask=ok)
        tl.store(LO + offs, lo, mask=ok)

    def split(bits):
        x = torch.from_numpy(np.asarray(bits, dtype=np.uint32).view(np.float32).copy())
        hi, lo = torch.empty_like(x), torch.empty_like(x)
        split_kernel[(triton.cdiv(x.numel(), 1024),)](x, hi, lo, x.numel(), BLOCK=1024)
        return x, hi, lo

    rng = np.random.default_rng(0)
    top = 0x7F7FF000
    bits = rng.integers(0, top, 20000, dtype=np.uint32)
    ties = (rng.integers(0, top, 20000, dtype=np.uint32) & np.uint32(0xFFFFE000)) | np.uint32(0x1000)
    bits = np.concatenate([bits, ties[ties < top], np.arange(0, 64, dtype=np.uint32), [top - 1]])
    x, hi, lo = split(np.concatenate([bits, bits | np.uint32(0x80000000)]))
    xd = x.double().numpy()
    exponent = np.frexp(xd)[1]
    unit = np.ldexp(1.0, np.maximum(exponent - 1, -126) - 10)  # tf32's last unit at x (subnormals: 2^-136)
    want = np.sign(xd) * np.floor(np.abs(xd) / unit + 0.5) * unit
    assert np.array_equal(hi.double().numpy(), want), "hi is not x rounded to nearest tf32"
    assert np.array_equal(hi.double().numpy() + lo.double().numpy(), xd), "hi + lo is not x"
    lo_abs = np.abs(lo.double().numpy())
    assert np.all(lo_abs <= unit / 2), "|lo| above half of tf32's last unit"
    normal = np.abs(xd) >= 2.0**-126
    assert np.all(lo_abs[normal] <= 2.0**-11 * np.abs(xd[normal])), "|lo| > 2^-11 |x|"
    _, hi, lo = split([top, top | 0x80000000])
    assert torch.isposinf(hi[0]) and torch.isneginf(hi[1]), hi

    # CONFIG's "auto" split reaches the launch: the kernel's split at widths up to 32, Triton's above, for the
    # two-sided and the one-sided pass. Mutation: "auto" not resolved (read as not "hoisted") fails.
    launched = []
    original = kernels._skinny_kernel

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                launched.append(kw["SPLIT"])
                return original[grid](*args, **kw)
            return launch

    kernels._skinny_kernel = Recorder()
    try:
        for w in (16, 32, 33):
            M, R, L = torch.randn(70, 50), torch.randn(50, w), torch.randn(70, w)
            kernels.skinny_partials(M, R, L)
            kernels.skinny_partials(M, R, None)
    finally:
        kernels._skinny_kernel = original
    assert launched == [True, True, True, True, False, False], launched

    # Non-finite entries (inf, the quiet NaN, NaNs whose rounding carries into the sign bit or into inf) in M, R or
    # L: every product they enter is NaN, the others stay finite, for both splits and both layouts of the left
    # product. Mutation: Triton's rule in the kernel's split (a NaN sum of the small terms counts as 0) leaves the
    # products of 0x7FFFFFFF and 0xFFFFFFFF finite.
    M0, R0, L0 = torch.randn(70, 50), torch.randn(50, 4), torch.randn(70, 4)
    for pattern, where, M, R, L, bad_mr, bad_lm in non_finite_cases(M0, R0, L0, {"M": (3, 7), "R": (3, 1), "L": (3, 1)}):
        for split_name, left_as_a in (("hoisted", False), ("hoisted", True), ("triton", False)):
            MR, LM = kernels.skinny_products(M, R, L, precision="tf32x3", split=split_name, left_as_a=left_as_a)
            if split_name == "triton" and pattern == 0x7F800000:  # Triton keeps inf (or NaN where inf·0)
                bad_ok = lambda out, bad: (~torch.isfinite(out[bad])).all()
            else:
                bad_ok = lambda out, bad: torch.isnan(out[bad]).all()
            for out, bad in ((MR, bad_mr), (LM, bad_lm)):
                assert bad_ok(out, bad) and torch.isfinite(out[~bad]).all(), (hex(pattern), where, split_name)

    print("kernel-ok")
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_skinny_products_in_the_triton_interpreter():
    path = os.pathsep.join(filter(None, (os.path.dirname(__file__), os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-c", _KERNEL_SCRIPT], env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kernel-ok" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton not installed")
def test_hoisted_split_takes_l_parts_out_of_the_sweep():
    """Compiled for Hopper here, without a GPU (kernels.sweep_ops): Triton's own tf32x3 split stores L's
    loop-invariant parts to shared memory again at every column step (as Triton 3.9 pipelines the loop), the hoisted
    split does not. The sweep keeps the same tensor-core products either way. Mutation: splitting L inside the sweep
    brings the stores and fences back."""
    from lorasim import kernels
    for subtiles in (1, 2):
        triton_split = kernels.sweep_ops(row_subtiles=subtiles, split="triton")
        hoisted = kernels.sweep_ops(row_subtiles=subtiles, split="hoisted")
        assert triton_split["ttng.warp_group_dot"] == hoisted["ttng.warp_group_dot"] > 0
        assert hoisted["ttg.local_alloc"] <= triton_split["ttg.local_alloc"] - 2 * subtiles, (triton_split, hoisted)
        assert hoisted["ttng.fence_async_shared"] < triton_split["ttng.fence_async_shared"], (triton_split, hoisted)


def test_kernels_hand_over_to_torch_where_offsets_pass_32_bits(monkeypatch):
    """Triton multiplies 32-bit sizes and strides in 32 bits: an offset past 2³¹ − 1 would wrap silently. The
    gates see it from shapes and strides alone (meta tensors: no memory), for G itself and for views."""
    from lorasim import kernels

    def meta(*shape):
        return torch.empty(*shape, device="meta")
    assert kernels.MAX_OFFSET == 2**31 - 1
    assert kernels.addressable(meta(46340, 46340), meta(2**31))  # largest offsets 2 147 395 599 and 2³¹ − 1
    assert not kernels.addressable(meta(46341, 46341))  # 2 147 488 280
    assert not kernels.addressable(meta(2**31 + 1))
    assert not kernels.addressable(meta(16, 16), meta(3, 2**30))  # any operand past the limit
    assert kernels.addressable(meta(2**20, 2**11).T)  # a transposed view spans what its storage does: 2³¹ − 1
    assert not kernels.addressable(meta(2**20 + 1, 2**11).T)
    assert kernels.addressable(meta(0, 2**40))  # nothing to address
    monkeypatch.setattr(kernels, "_INTERPRET", True)  # the gates as on a GPU with Triton, whatever this machine has
    monkeypatch.setattr(kernels, "triton", kernels.triton or object())
    assert kernels.usable(meta(46340, 46340), 16) and not kernels.usable(meta(46341, 46341), 16)
    assert kernels._kernel_reads([meta(100, 16), meta(100, 16)], 16)
    assert not kernels._kernel_reads([meta(100, 16), meta(2**27, 17)], 16)


def test_tensor_inputs_are_validated_in_place_with_named_errors():
    """Torch arrays are checked without a host copy and get the same one-line errors as numpy ones."""
    p = lorasim.LinearTeacher(d=12, k=10, r_star=2, n=50)
    for bad, msg in [(torch.zeros(3, 3, dtype=torch.bool), "real numeric"), (torch.zeros(3, 3, dtype=torch.complex64),
                     "real numeric"), (torch.zeros(3), "2-D"), (torch.full((3, 3), float("nan")), "finite")]:
        with pytest.raises(ConfigError, match=rf"^X=.*{msg}"):
            p.as_tensor(bad, "X")
    assert p.as_tensor(torch.arange(6).reshape(2, 3), "X").dtype == torch.float64


def test_risk_only_training_needs_no_svd_of_g():
    p = lorasim.LinearTeacher(d=12, k=10, r_star=2, n="population")
    tr = lorasim.train(p, init="small_random", rank=2, steps=3, metrics="risk")
    assert tr.status == "ok" and "_svd_G" not in p.__dict__
