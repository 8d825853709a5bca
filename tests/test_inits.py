"""Each init's defining identity, with torch-layout (peft) recomputations as the independent side."""
import math

import numpy as np
import pytest
import torch

import lorasim
from lorasim.config import ConfigError, InitConfig
from lorasim.inits import make_init
from lorasim.peft_convention import from_peft, gradient_to_paper, lora_scale, to_peft


@pytest.fixture(scope="module")
def noisy():
    # Label noise makes G♮ full rank with distinct singular values, so directions r..2r exist.
    return lorasim.LinearTeacher(d=20, k=16, r_star=3, n=400, noise=0.5, kappa=3.0, seed=11)


def _init(prob, rank, **kw):
    return make_init(prob, rank, InitConfig(**kw), seed=5)


def _best_rank(M, r):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U[:, :r] * S[:r]) @ Vh[:r]


@pytest.mark.parametrize("zeta", [1.0, 2.0])
def test_spectral_product_is_zeta_times_truncated_G(noisy, zeta):
    got = _init(noisy, 4, name="spectral", zeta=zeta)
    torch.testing.assert_close(got.A @ got.B, zeta * _best_rank(noisy.G, 4), rtol=1e-10, atol=1e-12)
    assert got.offset is None
    # Balanced factors: AᵀA = BBᵀ = ζ S_r.
    torch.testing.assert_close(got.A.T @ got.A, got.B @ got.B.T, rtol=1e-10, atol=1e-12)


def test_spectral_over_rank_tol_and_pad(small_linear):
    plain = _init(small_linear, 6, name="spectral")
    # G♮ has rank r* = 2: the spare columns hold √(round-off), about 1e-8, not zero.
    spare = torch.linalg.vector_norm(plain.A[:, 2:], dim=0)
    assert 0 < spare.max() < 1e-6
    cut = _init(small_linear, 6, name="spectral", tol=1e-10)
    assert torch.count_nonzero(cut.A[:, 2:]) == 0
    padded = _init(small_linear, 6, name="spectral", tol=1e-10, pad=1e-3)
    torch.testing.assert_close(padded.A @ padded.B, cut.A @ cut.B)
    assert torch.count_nonzero(padded.A[:, 2:]) == padded.A[:, 2:].numel()
    assert padded.A[:, 2:].std().item() == pytest.approx(1e-3, rel=0.2)


def test_lora_one_matches_official_torch_layout(noisy):
    r, gamma, alpha_l = 8, 128.0, 16.0
    got = _init(noisy, r, name="lora_one", gamma=gamma, lora_alpha=alpha_l, rslora=True)
    s = alpha_l / math.sqrt(r)
    assert got.lora_scale == pytest.approx(s)
    # Official code, torch layout: SVD of −G_torch, √S/√S[0], /√γ on each factor.
    G_torch = -noisy.G.T  # ∇_{W_torch} L
    U, S, Vh = torch.linalg.svd(-G_torch, full_matrices=False)
    lora_B = U[:, :r] * S[:r].sqrt() / S[0].sqrt() / math.sqrt(gamma)
    lora_A = S[:r].sqrt()[:, None] * Vh[:r] / S[0].sqrt() / math.sqrt(gamma)
    torch.testing.assert_close((got.A @ got.B).T, s * lora_B @ lora_A, rtol=1e-10, atol=1e-13)
    # The identity: A0B0 = (s/γ)[G♮]_r/σ1, whose op norm is s/γ whatever G's scale.
    sigma1 = torch.linalg.matrix_norm(noisy.G, ord=2)
    torch.testing.assert_close(got.A @ got.B, (s / gamma) * _best_rank(noisy.G, r) / sigma1, rtol=1e-10, atol=1e-13)
    op = torch.linalg.matrix_norm(got.A @ got.B, ord=2).item()
    assert op == pytest.approx(16 / (128 * math.sqrt(8)), rel=1e-10)
    assert op == pytest.approx(0.0442, abs=5e-5)
    assert got.offset is None


@pytest.mark.parametrize("variant", ["reference", "peft"])
def test_lora_ga_matches_torch_layout_and_subtracts_offset(noisy, variant):
    r, gamma = 4, 16.0
    got = _init(noisy, r, name="lora_ga", gamma=gamma, variant=variant)
    s = lora_scale(r)
    G_torch = -noisy.G.T
    U, S, Vh = torch.linalg.svd(G_torch, full_matrices=False)  # LoRA-GA: no negation
    c = noisy.k ** 0.25 / math.sqrt(gamma)  # out_features^{1/4}/√γ
    if variant == "reference":
        lora_A, lora_B = c * Vh[:r], c * U[:, r:2 * r]
    else:
        lora_A, lora_B = Vh[:r], c * U[:, r:2 * r] * S[r:2 * r]
    # ArB2r pairs singular vector i with r+i, so the product depends on each vector's sign,
    # which SVD routines choose freely; the sign-free content is each factor's Gram matrix.
    A_ref, B_ref = from_peft(lora_A, lora_B, s)
    torch.testing.assert_close(got.A @ got.A.T, A_ref @ A_ref.T, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(got.B.T @ got.B, B_ref.T @ B_ref, rtol=1e-10, atol=1e-13)
    L, R = got.offset
    torch.testing.assert_close(L @ R, got.A @ got.B)


def test_lora_ga_is_the_t2_notebook_variant_with_unit_scale(noisy):
    r = 4
    got = _init(noisy, r, name="lora_ga", gamma=4.0, lora_scale=1.0)
    Lm, S, Rh = torch.linalg.svd(-noisy.G, full_matrices=False)  # notebook: SVD of −G♮
    c = noisy.k ** 0.25 / 2.0
    torch.testing.assert_close(got.A @ got.B, (c * Lm[:, :r]) @ (c * Rh[r:2 * r]), rtol=1e-10, atol=1e-13)


def test_offset_lora_one_is_the_notebooks(noisy):
    """T2 (ii): A = c L_r, B = c R_rᵀ from the SVD of −G♮, offset subtracted; A0B0 = c²[−G♮ direction]."""
    r = 4
    got = _init(noisy, r, name="offset_lora_one", gamma=4.0, lora_scale=1.0)
    Lm, S, Rh = torch.linalg.svd(-noisy.G, full_matrices=False)
    c = noisy.k ** 0.25 / 2.0
    torch.testing.assert_close(got.A @ got.B, c * c * Lm[:, :r] @ Rh[:r], rtol=1e-10, atol=1e-13)
    assert got.offset is not None


def test_lora_ga_needs_two_r_directions(small_linear):
    with pytest.raises(ConfigError, match=r"^run\.rank=13"):
        _init(small_linear, 13, name="lora_ga")


def test_pissa_moves_top_svd_of_w0_into_adapters(noisy):
    got = _init(noisy, 5, name="pissa")
    torch.testing.assert_close(got.A @ got.B, _best_rank(noisy.W0, 5), rtol=1e-10, atol=1e-12)
    moved = noisy.shifted(*got.offset)
    torch.testing.assert_close(moved.W0 + got.A @ got.B, noisy.W0, rtol=1e-12, atol=1e-12)


def test_kaiming_is_peft_default_scaled(noisy):
    r = 8
    got = _init(noisy, r, name="kaiming")
    s = lora_scale(r)
    lora_A, lora_B = to_peft(got.A, got.B, s)
    bound = 1 / math.sqrt(noisy.d)  # kaiming_uniform(a=√5) on an r×in weight
    assert lora_A.abs().max() <= bound
    assert lora_A.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.25)
    assert torch.count_nonzero(lora_B) == 0


def test_small_random_scale_and_seed(noisy):
    a = _init(noisy, 6, name="small_random", alpha=1e-2)
    assert a.A.std().item() == pytest.approx(1e-2, rel=0.2)
    assert torch.count_nonzero(a.B) == 0
    both = _init(noisy, 6, name="small_random", alpha=1e-2, both=True)
    assert both.B.std().item() == pytest.approx(1e-2, rel=0.2)
    assert torch.equal(make_init(noisy, 6, InitConfig(), seed=1).A, make_init(noisy, 6, InitConfig(), seed=1).A)
    assert not torch.equal(make_init(noisy, 6, InitConfig(), seed=1).A, make_init(noisy, 6, InitConfig(), seed=2).A)


@pytest.mark.parametrize("rank", [0, 17, 2.5])
def test_rank_out_of_range_names_run_rank(noisy, rank):
    with pytest.raises(ConfigError, match=r"^run\.rank="):
        make_init(noisy, rank, InitConfig())


# -- the peft mapping -------------------------------------------------------------------------------

def test_peft_round_trip_and_forward_equivalence():
    rng = np.random.default_rng(0)
    d, k, r, s = 7, 5, 3, lora_scale(3, 16.0, rslora=True)
    A = torch.as_tensor(rng.standard_normal((d, r)))
    B = torch.as_tensor(rng.standard_normal((r, k)))
    W0 = torch.as_tensor(rng.standard_normal((d, k)))
    lora_A, lora_B = to_peft(A, B, s)
    assert lora_A.shape == (r, d) and lora_B.shape == (k, r)
    A2, B2 = from_peft(lora_A, lora_B, s)
    torch.testing.assert_close(A2, A)
    torch.testing.assert_close(B2, B)
    # A torch Linear with W_torch = W0ᵀ plus peft's s·lora_B·lora_A computes (W0 + AB)ᵀx.
    lin = torch.nn.Linear(d, k, bias=False, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(W0.T)
    x = torch.as_tensor(rng.standard_normal((4, d)))
    peft_out = lin(x) + s * (x @ lora_A.T) @ lora_B.T
    torch.testing.assert_close(peft_out, x @ (W0 + A @ B))


def test_peft_gradient_and_gd_step_equivalence():
    """G♮ = −(∇_{W_torch}L)ᵀ, and GD with step η on (lora_A, lora_B) is GD with step s·η on (A, B)."""
    rng = np.random.default_rng(1)
    n, d, k, r, eta = 50, 6, 4, 2, 0.05
    X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, k))
    W0 = rng.standard_normal((d, k))
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0)
    s = lora_scale(r, 16.0, rslora=False)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    W_torch = torch.as_tensor(W0.T.copy()).requires_grad_(True)
    (0.5 * ((Xt @ W_torch.T - Yt) ** 2).sum() / n).backward()
    torch.testing.assert_close(gradient_to_paper(W_torch.grad), prob.G, rtol=1e-10, atol=1e-12)

    A0 = torch.as_tensor(rng.standard_normal((d, r)))
    B0 = torch.as_tensor(rng.standard_normal((r, k)))
    lA, lB = (t.clone().requires_grad_(True) for t in to_peft(A0, B0, s))
    out = Xt @ torch.as_tensor(W0) + s * (Xt @ lA.T) @ lB.T
    (0.5 * ((out - Yt) ** 2).sum() / n).backward()
    with torch.no_grad():
        lA1, lB1 = lA - eta * lA.grad, lB - eta * lB.grad
    traj = lorasim.train(prob, A0=A0, B0=B0, solver="gd", lr=s * eta, steps=1)
    A1, B1 = from_peft(lA1, lB1, s)
    torch.testing.assert_close(traj.A, A1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(traj.B, B1, rtol=1e-10, atol=1e-12)
