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
