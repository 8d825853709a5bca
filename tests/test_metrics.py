"""Principal angles against scipy.linalg.subspace_angles, including near-aligned subspaces."""
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lorasim.metrics import principal_angles, sin_theta


def _orth(a):
    return torch.linalg.qr(torch.as_tensor(a, dtype=torch.float64))[0]


@settings(max_examples=40, deadline=None)
# n > p + q: subspaces forced to intersect (n < p + q) have an exact zero angle, which scipy
# returns only to √ε (~2e-8); that case is checked exactly below instead.
@given(n=st.integers(11, 30), p=st.integers(1, 5), q=st.integers(1, 5), seed=st.integers(0, 10_000),
       tilt=st.sampled_from([1.0, 1e-3, 1e-7]))
def test_angles_match_scipy(n, p, q, seed, tilt):
    p, q = min(p, n), min(q, n)
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, max(p, q)))
    # tilt < 1 puts the second subspace close to the first: the small-angle regime.
    U1 = _orth(base[:, :p])
    U2 = _orth(base[:, :q] + tilt * rng.standard_normal((n, q)))
    ours = principal_angles(U1, U2).numpy()
    ref = scipy.linalg.subspace_angles(U1.numpy(), U2.numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    if p == q:
        np.testing.assert_allclose(float(sin_theta(U1, U2)), np.sin(ref.max()), rtol=1e-6, atol=1e-12)


def test_sin_theta_is_the_paper_alignment_with_full_complement():
    rng = np.random.default_rng(0)
    d, r = 40, 4
    G = rng.standard_normal((d, 30))
    UG, _, _ = np.linalg.svd(G)
    A = rng.standard_normal((d, 8))
    UA, _, _ = np.linalg.svd(A)
    # The notebook's metric: ‖U_G[:, r:]ᵀ U_A[:, :r]‖₂ with full SVDs.
    notebook = np.linalg.norm(UG[:, r:].T @ UA[:, :r], 2)
    ours = float(sin_theta(torch.as_tensor(UG[:, :r]), torch.as_tensor(UA[:, :r])))
    assert ours == pytest.approx(notebook, rel=1e-12)


def test_sin_theta_extremes():
    eye = torch.eye(6, dtype=torch.float64)
    assert float(sin_theta(eye[:, :2], eye[:, :2])) == 0.0
    assert float(sin_theta(eye[:, :2], eye[:, 2:4])) == pytest.approx(1.0)


def test_intersecting_subspaces_have_an_exact_zero_angle():
    eye = torch.eye(3, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    U1, U2 = rot @ eye[:, [0, 1]], rot @ eye[:, [0, 2]]
    angles = principal_angles(U1, U2)
    assert angles[0].item() == pytest.approx(np.pi / 2, abs=1e-12)
    assert angles[1].item() < 1e-12


# -- the lean row's subspaces from r×r Grams (metrics=lean) ------------------------------------------------
def _factor(m, p, svals, seed):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(m, p, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))[0]
    return U @ torch.diag(torch.tensor(svals, dtype=torch.float64)) @ V.T, U


def _gram_bound(F, r):
    """The error bound top_left_subspace states, from the exact spectrum: e / (σ_r² − σ_{r+1}² − e) with
    e = (m + 10p)·eps·‖F‖_F², plus 10·r·eps·σ1/σ_r for forming F V / σ."""
    m, p = F.shape
    s = torch.linalg.svdvals(F)
    s = s / s[0]  # the bound is scale-free (and σ² of huge factors would overflow)
    eps = torch.finfo(F.dtype).eps
    e = (m + 10 * p) * eps * float((s**2).sum())
    gap = float(s[r - 1] ** 2 - (s[r] ** 2 if r < p else 0.0))
    return e / (gap - e) + 10 * r * eps * float(s[0] / s[r - 1])


@pytest.mark.parametrize("svals, r", [
    ([1.0, 0.8, 0.5, 0.3, 1e-3, 1e-4, 1e-6, 0.0], 4),  # a clear gap, rank deficient below it
    ([3.0, 2.0, 1.0, 1e-2, 9e-3, 8e-3, 7e-3, 6e-3], 3),
    ([1e-3, 9e-4, 8e-4, 7e-4, 6e-4, 5e-4, 4e-4, 3e-4], 4),  # small init: a narrow relative gap
    ([1e200, 5e199, 2e199, 1e199, 1e190, 0, 0, 0], 4),  # finite but huge: the Gram would overflow unscaled
])
def test_gram_subspace_within_its_stated_bound(svals, r):
    """top_left_subspace's basis is orthonormal and spans the SVD's top-r subspace to within its stated
    bound; its singular values match svdvals to eps·σ1/σ_i in relative terms of σ1. Mutation: the
    eigenvectors taken from the wrong end (eigh is ascending), or the basis not divided by σ, fail."""
    from lorasim.metrics import top_left_subspace

    for seed in range(3):
        F, _ = _factor(100, 8, svals, seed)
        U, s, resolved = top_left_subspace(F[None], r)
        U, s = U[0], s[0]
        assert bool(resolved[0])
        U_svd = torch.linalg.svd(F, full_matrices=False)[0][:, :r]
        assert torch.allclose(U.T @ U, torch.eye(r, dtype=F.dtype), atol=1e-12)
        assert float(sin_theta(U_svd, U)) <= _gram_bound(F, r)
        s_ref = torch.linalg.svdvals(F)
        # σ_i² is accurate to e = (m + 10p)·eps·‖F‖_F², so σ_i to e / (σ_i + s_i) (scaled by σ1)
        s, s_ref = s / s_ref[0], s_ref / s_ref[0]
        err = (s - s_ref).abs() * (s + s_ref)
        assert float(err.max()) <= (100 + 80) * torch.finfo(F.dtype).eps * float((s_ref**2).sum())


def test_lean_alignment_equals_the_full_rows_within_the_bound():
    """align_A and align_B of the lean row equal the full row's (from SVDs of A and B) within the Gram bound,
    on a problem whose G♮ is far from the factors' subspaces (so the sines are of order one)."""
    import lorasim
    from lorasim.metrics import AlignmentTargets, record_batch, record_lean_batch

    prob = lorasim.LinearTeacher(d=40, k=30, r_star=3, n=400, kappa=2.0, seed=8)
    ref = AlignmentTargets.from_problem(prob, 4)
    A, _ = _factor(40, 4, [1.0, 0.5, 0.2, 0.1], 1)
    Bt, _ = _factor(30, 4, [2.0, 1.0, 0.3, 1e-3], 2)
    A, B = A[None], Bt.T[None]
    full = record_batch(prob, ref, A, B, A, B, 4)[0]
    lean = record_lean_batch(prob, ref, A, B)[0]
    assert set(lean) == {"loss", "risk", "align_A", "align_B"}
    assert lean["loss"] == full["loss"]
    assert lean["risk"] == pytest.approx(full["risk"], rel=1e-13)  # one QR against product_norms' two and an SVD
    r = ref.r_align
    assert abs(lean["align_A"] - full["align_A"]) <= _gram_bound(A[0], r) + 1e-15
    assert abs(lean["align_B"] - full["align_B"]) <= _gram_bound(B[0].T, r) + 1e-15
    assert 0.05 < full["align_A"] < 1 and 0.05 < full["align_B"] < 1  # not the trivial extremes


def test_gram_subspace_at_round_off_is_unresolved():
    """σ_r at the Gram's round-off: the stated bound is vacuous, the subspace is reported unresolved and
    the lean row gives no alignment (NaN), where the basis would otherwise be noise. σ_2 = 1e-6 is
    resolved (σ_2² = 1e-12 above e ≈ 1.5e-14); σ_2 = 5e-8, 1e-8 and 1e-9 are not (at 5e-8 the Gram's
    λ_2 ≈ 2.5e-15 is still positive). Mutation: a ``resolved`` that only asks λ_r > 0 fails at 5e-8."""
    from lorasim.metrics import top_left_subspace

    for sigma2, want in ((1e-6, True), (5e-8, False), (1e-8, False), (1e-9, False)):
        F, _ = _factor(50, 2, [1.0, sigma2], 3)
        _, _, resolved = top_left_subspace(F[None], 2)
        assert bool(resolved[0]) is want, sigma2
