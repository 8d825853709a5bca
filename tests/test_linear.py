"""Linear teacher: closed-form gradients, statistics, losses and risks against independent oracles."""
import numpy as np
import pytest
import torch

import lorasim
from lorasim.config import ConfigError
from lorasim.linalg import product_fro


def _rand(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _arrays(n=300, d=12, k=9, r=3, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W0 = rng.standard_normal((d, k))
    delta = rng.standard_normal((d, r)) @ rng.standard_normal((r, k)) / 3
    Y = X @ (W0 + delta) + noise * rng.standard_normal((n, k))
    return X, Y, W0, delta


def _autograd_loss(X, Y, W0, A, B):
    A = A.clone().requires_grad_(True)
    B = B.clone().requires_grad_(True)
    R = X @ (W0 + A @ B) - Y
    loss = 0.5 * (R * R).sum() / X.shape[0]
    loss.backward()
    return loss.detach(), A.grad, B.grad


def _assert_matches_autograd(prob, X, Y, W0):
    """prob's gradient and loss at a random (A, B) against autograd of (1/2N)‖X(W0 + AB) − Y‖² on the raw arrays."""
    A, B = _rand((12, 4), 1), _rand((4, 9), 2)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    loss, gA, gB = _autograd_loss(t(X), t(Y), t(W0), A, B)
    ga, gb = prob.grads(A, B)
    torch.testing.assert_close(ga, gA, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gb, gB, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(prob.loss(A, B), loss, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_grads_and_loss_match_autograd_on_user_arrays(noise):
    X, Y, W0, delta = _arrays(noise=noise)
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    _assert_matches_autograd(prob, X, Y, W0)


def test_sufficient_statistics_and_G_from_arrays():
    X, Y, W0, delta = _arrays(noise=0.2)
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    n = X.shape[0]
    np.testing.assert_allclose(prob.sigma_hat.numpy(), X.T @ X / n, rtol=1e-12)
    np.testing.assert_allclose(prob.xty.numpy(), X.T @ Y / n, rtol=1e-10, atol=1e-12)
    # G = −∇_W L(W0) for L(W) = (1/2N)‖XW − Y‖²
    np.testing.assert_allclose(prob.G.numpy(), X.T @ (Y - X @ W0) / n, rtol=1e-10, atol=1e-12)
    assert prob.r_star == 3


def test_population_grads_use_no_sigma_and_match_autograd_of_risk():
    prob = lorasim.LinearTeacher(d=20, k=15, r_star=3, n="population", kappa=5.0, seed=1)
    torch.testing.assert_close(prob.G, prob.delta)  # E G♮ = ΔW for Σ = I
    A = _rand((20, 5), 3).requires_grad_(True)
    B = _rand((5, 15), 4).requires_grad_(True)
    risk = 0.5 * ((A @ B - prob.delta) ** 2).sum()
    risk.backward()
    ga, gb = prob.grads(A.detach(), B.detach())
    torch.testing.assert_close(ga, A.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, B.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(prob.risk(A.detach(), B.detach()), risk.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(prob.loss(A.detach(), B.detach()), risk.detach(), rtol=1e-12, atol=0)


def test_input_covariance_weights_risk_and_gradient():
    prob = lorasim.LinearTeacher(d=10, k=6, r_star=2, n="population", cov_kappa=10.0, seed=2)
    S = prob.sigma_hat
    evals = torch.linalg.eigvalsh(S)
    torch.testing.assert_close(evals.max() / evals.min(), torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(prob.G, S @ prob.delta)
    A, B = _rand((10, 3), 5), _rand((3, 6), 6)
    E = A @ B - prob.delta
    torch.testing.assert_close(prob.risk(A, B), 0.5 * torch.trace(E.T @ S @ E), rtol=1e-12, atol=0)


def test_finite_sample_G_identity_and_rank():
    """C1: noiseless G♮ = Σ̂ΔW and rank(G♮) = r*."""
    prob = lorasim.LinearTeacher(d=32, k=32, r_star=2, n=512, seed=4)
    torch.testing.assert_close(prob.G, prob.sigma_hat @ prob.delta, rtol=1e-12, atol=1e-13)
    s = torch.linalg.svdvals(prob.G)
    assert s[2] / s[0] < 1e-13 < s[1] / s[0]


def test_singular_value_profiles():
    lin = lorasim.LinearTeacher(d=20, k=20, r_star=4, n="population", kappa=4.0, spacing="linear")
    torch.testing.assert_close(lin.S_star, torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64))
    geo = lorasim.LinearTeacher(d=20, k=20, r_star=3, n="population", kappa=4.0, spacing="geometric", delta_norm=2.0)
    torch.testing.assert_close(geo.S_star, torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64))
    exp = lorasim.LinearTeacher(d=20, k=20, r_star=2, n="population", singular_values=[0.5, 3.0])
    torch.testing.assert_close(torch.linalg.svdvals(exp.delta)[:2], torch.tensor([3.0, 0.5], dtype=torch.float64))


def test_error_norms_and_risk_match_dense_and_stay_accurate_near_zero():
    prob = lorasim.LinearTeacher(d=30, k=20, r_star=3, n=200, seed=5)
    A, B = _rand((30, 4), 7), _rand((4, 20), 8)
    E = A @ B - prob.delta
    op, fro = prob.error_norms(A, B)
    torch.testing.assert_close(op, torch.linalg.matrix_norm(E, ord=2), rtol=1e-12, atol=0)
    torch.testing.assert_close(fro, torch.linalg.matrix_norm(E), rtol=1e-12, atol=0)
    # At AB = ΔW + 1e-9·P the risk keeps relative accuracy (the expanded form would not).
    U, S, V = prob.U_star, prob.S_star, prob.V_star
    P = _rand((30, 20), 9)
    A2 = torch.cat([U * S, P[:, :1] * 1e-9], dim=1)
    B2 = torch.cat([V.T, P[:1, :]], dim=0)
    exact = 0.5 * torch.linalg.matrix_norm(torch.outer(P[:, 0], P[0, :]) * 1e-9) ** 2
    torch.testing.assert_close(prob.risk(A2, B2), exact, rtol=1e-6, atol=0)


def _g_grads(prob, A, B):
    """The gradient from G itself: the oracle of the teacher form, which reads ΔW's factors instead."""
    SA = prob.sigma_hat @ A
    return SA @ (B @ B.mT) - prob.G @ B.mT, (A.mT @ SA) @ B - A.mT @ prob.G


def _teacher_case(case):
    d, k, r_star = 14, 10, 3
    if case == "arrays":
        X, _, W0, delta = _arrays(n=200, d=d, k=k, r=r_star, noise=0.0, seed=7)
        return lorasim.LinearTeacher.from_arrays(X=X, Y=None, W0=W0, delta=delta)
    n, kw = {"noise_free": (200, {}), "population": ("population", {}),
             "population_cov": ("population", {"cov_kappa": 10.0}),
             "population_noisy": ("population", {"noise": 0.3})}[case]
    return lorasim.LinearTeacher(d=d, k=k, r_star=r_star, n=n, kappa=3.0, seed=2, **kw)


@pytest.mark.parametrize("case", ["noise_free", "population", "population_cov", "population_noisy", "arrays"])
@pytest.mark.parametrize("fused", [True, False])  # True: numpy's BLAS for a batch on the CPU; False: torch's products
@pytest.mark.parametrize("batch", [(), (3,)])
def test_teacher_gradient_reads_delta_factors_and_equals_the_g_gradient(case, fused, batch):
    """Where G = Σ̂ΔW by construction (population; noise-free labels), the step reads Σ̂ΔL and ΔR, not G, and
    gives G's gradient. Bound: G and (Σ̂ΔL)ΔR are two roundings of one matrix, each within N·eps·‖Σ̂‖‖ΔW‖
    (N = 200 terms), so the gradients differ by less than 1e-12·‖Σ̂‖‖ΔW‖·‖A‖‖B‖ (a 20× margin over
    200·2.2e-16; ‖A‖, ‖B‖ > 1 here). Mutation: a dropped Σ̂ in Σ̂ΔL (off by (Σ̂ − I)ΔW, O(1) at N = 200)
    fails."""
    prob = _teacher_case(case)
    prob.fused = fused
    SL, R = prob.teacher_factors()
    scale = float(torch.linalg.matrix_norm(prob.sigma_hat, ord=2) * torch.linalg.matrix_norm(prob.delta, ord=2))
    torch.testing.assert_close(SL @ R, prob.G, rtol=0, atol=1e-12 * scale)
    A, B = _rand(batch + (14, 4), 21), _rand(batch + (4, 10), 22)
    want_A, want_B = _g_grads(prob, A, B)
    gA, gB = prob.grads(A, B)
    atol = 1e-12 * scale * float(torch.linalg.matrix_norm(B, ord=2).max() * torch.linalg.matrix_norm(A, ord=2).max())
    torch.testing.assert_close(gA, want_A, rtol=0, atol=atol)
    torch.testing.assert_close(gB, want_B, rtol=0, atol=atol)


def test_teacher_gradient_is_not_taken_where_g_is_not_the_teachers():
    """Noisy labels (generated, or the user's own) and a G replaced by the user all read G: there G ≠ Σ̂ΔW, by
    Xᵀε/N or by the user's change, far above round-off, so a teacher step would fail the oracle."""
    noisy = lorasim.LinearTeacher(d=14, k=10, r_star=3, n=200, noise=0.3, seed=2)
    X, Y, W0, delta = _arrays(n=200, d=14, k=10, r=3, noise=1e-9, seed=7)
    user_y = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    replaced = _teacher_case("noise_free")
    replaced.G = replaced.G + 0.1 * _rand((14, 10), 23)
    A, B = _rand((3, 14, 4), 21), _rand((3, 4, 10), 22)
    for prob, off in ((noisy, 1e-3), (replaced, 1e-2), (user_y, 1e-11)):
        assert prob.teacher_factors() is None
        gap = float(torch.linalg.matrix_norm(prob.G - prob.sigma_hat @ prob.delta))
        assert gap > off  # what a teacher step would miss
        for fused in (True, False):
            prob.fused = fused
            for got, want in zip(prob.grads(A, B), _g_grads(prob, A, B)):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert [p.describe()["step_reads"] for p in (noisy, replaced, user_y, _teacher_case("noise_free"))] == [
        "G", "G", "G", "teacher_factors"]


def test_teacher_labels_from_arrays_equal_the_given_noise_free_labels():
    """``Y=None`` is the problem with labels X(W0 + ΔW): statistics, loss and gradient as with those labels
    given (autograd on X and Y as the oracle), and a teacher step."""
    X, Y, W0, delta = _arrays(n=200, d=12, k=9, r=3, noise=0.0, seed=8)
    own = lorasim.LinearTeacher.from_arrays(X=X, Y=None, W0=W0, delta=delta)
    given = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    assert own.teacher_factors() is not None and own.noise == 0.0
    torch.testing.assert_close(own.G, given.G, rtol=1e-10, atol=1e-12)
    _assert_matches_autograd(own, X, Y, W0)
    with pytest.raises(ConfigError, match="Y"):
        lorasim.LinearTeacher.from_arrays(X=X, Y=None, W0=W0)


def test_a_shifted_teacher_problem_keeps_the_teacher_gradient():
    """An offset init moves G by Σ̂LR and ΔW by LR together, so G = Σ̂ΔW still holds: the shifted problem steps
    through [ΔL, L][ΔR; R] and equals its own G's gradient. Mutation: the old factors (without L, R) are off by
    Σ̂LR."""
    prob = _teacher_case("noise_free")
    L, R = _rand((14, 2), 10), _rand((2, 10), 11)
    shifted = prob.shifted(L, R)
    SL, Rt = shifted.teacher_factors()
    assert SL.shape[1] == prob.delta_L.shape[1] + 2
    A, B = _rand((3, 14, 4), 12), _rand((3, 4, 10), 13)
    for got, want in zip(shifted.grads(A, B), _g_grads(shifted, A, B)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def test_shifted_problem_matches_moved_frozen_weight():
    X, Y, W0, delta = _arrays(noise=0.05, seed=3)
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    L, R = _rand((12, 2), 10), _rand((2, 9), 11)
    moved = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0 - (L @ R).numpy(), delta=delta + (L @ R).numpy())
    shifted = prob.shifted(L, R)
    A, B = _rand((12, 3), 12), _rand((3, 9), 13)
    torch.testing.assert_close(shifted.G, moved.G, rtol=1e-10, atol=1e-12)
    for f in ("loss", "risk"):
        torch.testing.assert_close(getattr(shifted, f)(A, B), getattr(moved, f)(A, B), rtol=1e-9, atol=1e-12)
    # The risk is still measured against the original target W0 + ΔW.
    Wt = torch.as_tensor(W0 + delta)
    E = (shifted.W0 + A @ B) - Wt
    torch.testing.assert_close(shifted.risk(A, B), 0.5 * (E * E).sum(), rtol=1e-10, atol=0)


def test_underdetermined_loss_uses_expanded_form():
    X, Y, W0, delta = _arrays(n=8, d=12, k=5, r=2, noise=0.0)
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
    A, B = _rand((12, 2), 14), _rand((2, 5), 15)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    loss, _, _ = _autograd_loss(t(X), t(Y), t(W0), A, B)
    torch.testing.assert_close(prob.loss(A, B), loss, rtol=1e-10, atol=1e-12)


def test_same_seed_same_problem_other_seed_other_problem():
    a = lorasim.LinearTeacher(d=16, k=16, r_star=2, n=100, seed=7)
    b = lorasim.LinearTeacher(d=16, k=16, r_star=2, n=100, seed=7)
    c = lorasim.LinearTeacher(d=16, k=16, r_star=2, n=100, seed=8)
    assert torch.equal(a.G, b.G) and torch.equal(a.sigma_hat, b.sigma_hat)
    assert not torch.equal(a.G, c.G)


@pytest.mark.parametrize("kwargs, field", [
    (dict(d=0), "d"), (dict(r_star=200), "r_star"), (dict(n=0), "n"), (dict(n="lots"), "n"),
    (dict(kappa=0.5), "kappa"), (dict(spacing="cubic"), "spacing"), (dict(noise=-1.0), "noise"),
    (dict(dtype="float16"), "dtype"), (dict(w0="orthonormal", d=4, k=8, r_star=2), "w0"),
    (dict(singular_values=[1.0]), "singular_values"), (dict(device="tpu"), "device"), (dict(colour=1), "colour"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.LinearTeacher(**kwargs)


@pytest.mark.parametrize("which, bad, field", [
    ("X", np.full((10, 4), np.nan), "X"), ("Y", np.zeros((9, 3)), "Y"), ("W0", np.zeros((5, 3)), "W0"),
    ("delta", np.zeros((4, 4)), "delta"), ("X", np.zeros(10), "X"),
])
def test_from_arrays_rejects_bad_shapes_and_nan(which, bad, field):
    arrs = dict(X=np.ones((10, 4)), Y=np.ones((10, 3)), W0=np.ones((4, 3)), delta=np.ones((4, 3)))
    arrs[which] = bad
    with pytest.raises(ConfigError, match=rf"^{field}="):
        lorasim.LinearTeacher.from_arrays(**arrs)


def test_a_seed_is_the_same_instance_in_float32():
    p64 = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=300, noise=0.1, seed=4)
    p32 = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=300, noise=0.1, seed=4, dtype="float32")
    assert p32.G.dtype == torch.float32
    torch.testing.assert_close(p32.G.double(), p64.G, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p32.delta.double(), p64.delta, rtol=1e-6, atol=1e-6)


def test_risk_basis_of_delta_follows_a_shift_and_matches_the_concatenated_qr():
    """The risk's kept QR of ΔL (Problem._delta_basis) is rebuilt for a shifted problem, whose ΔW has more
    columns: after the original problem's risk has filled it, the shifted risk still equals the dense
    ½‖AB − ΔW'‖². Mutation: a basis kept whatever ΔL is gives the original problem's risk. A batch agrees
    with the one-QR form of [A, −ΔL] (linalg.product_fro) within round-off."""
    prob = lorasim.LinearTeacher(d=30, k=20, r_star=3, n=200, seed=5)
    A, B = _rand((4, 30, 5), 14), _rand((4, 5, 20), 15)
    L, R = _rand((30, 2), 16), _rand((2, 20), 17)
    prob.risk(A, B)
    shifted = prob.shifted(L, R)
    E = A @ B - (prob.delta + L @ R)
    torch.testing.assert_close(shifted.risk(A, B), 0.5 * (E * E).sum(dim=(-2, -1)), rtol=1e-12, atol=0)
    Lf, Rf = prob._error_factors(A, B)
    torch.testing.assert_close(prob.risk(A, B), 0.5 * product_fro(Lf, Rf) ** 2, rtol=1e-13, atol=0)


def test_teacher_gradient_ends_where_g_or_delta_change_in_place_or_before_a_shift():
    """G = Σ̂ΔW is tracked by the tensors and their in-place version counters: G changed in place (``G +=``) ends
    the teacher step, and so does a ΔW replaced before a shift (the shift must not re-enable it with factors of
    another ΔW). Both then step from G itself. Mutations: tracking the objects alone, or re-marking every shifted
    problem, fail (gradient off by O(1))."""
    prob = _teacher_case("noise_free")
    A, B = _rand((3, 14, 4), 31), _rand((3, 4, 10), 32)
    prob.grads(A, B)  # teacher step made (and its factors kept)
    prob.G += 0.1 * _rand((14, 10), 33)
    assert prob.teacher_factors() is None
    for fused in (True, False):
        prob.fused = fused
        for got, want in zip(prob.grads(A, B), _g_grads(prob, A, B)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    other = _teacher_case("noise_free")
    other.delta_L = 2 * other.delta_L  # the risk's target moved; G did not
    shifted = other.shifted(_rand((14, 2), 34), _rand((2, 10), 35))
    assert shifted.teacher_factors() is None
    for got, want in zip(shifted.grads(A, B), _g_grads(shifted, A, B)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def test_given_labels_are_the_teachers_only_to_round_off():
    """A given Y takes the teacher step when it is X(W0 + ΔW) to the round-off of forming it (``_teacher_labels``:
    2γ_{d+2}|X|(|W0| + |ΔW|) + u|Y| entrywise, ≈ 5e-14 here), whatever order the caller summed in; labels rounded
    to float32, or with noise of 1e-11, are not the teacher's; noise of 1e-17 is below their own rounding.
    Mutations: a zero bound (the caller's other order of summation then fails) or a bound 1e6× wider (the 1e-11
    noise then passes) fail."""
    rng = np.random.default_rng(9)
    X, W0 = rng.standard_normal((200, 14)), rng.standard_normal((14, 10))
    delta = rng.standard_normal((14, 3)) @ rng.standard_normal((3, 10)) / 3
    noise = rng.standard_normal((200, 10))
    cases = {"X(W0 + ΔW)": (X @ (W0 + delta), True), "XW0 + XΔW": (X @ W0 + X @ delta, True),
             "noise 1e-17": (X @ (W0 + delta) + 1e-17 * noise, True),
             "float32 labels": ((X @ (W0 + delta)).astype(np.float32).astype(np.float64), False),
             "noise 1e-11": (X @ (W0 + delta) + 1e-11 * noise, False)}
    for name, (Y, teacher) in cases.items():
        prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta)
        assert (prob.teacher_factors() is not None) == teacher, name
        assert (prob.noise == 0.0) == teacher, name
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=X @ (W0 + delta), W0=W0, delta=delta)
    prob.teacher_step = False  # the switch: the step reads G
    assert prob.teacher_factors() is None and prob.describe()["step_reads"] == "G"


def test_given_labels_are_checked_in_every_row_block(monkeypatch):
    """The round-off check runs over blocks of rows (no N×d temporaries): one label off by 1e-9 in the last row is
    found with 40-row blocks. Mutation: checking the first block only fails."""
    from lorasim.problems import linear

    monkeypatch.setattr(linear, "_CHUNK_ELEMENTS", 40 * 14)
    rng = np.random.default_rng(10)
    X, W0 = rng.standard_normal((200, 14)), rng.standard_normal((14, 10))
    delta = rng.standard_normal((14, 3)) @ rng.standard_normal((3, 10)) / 3
    Y = X @ (W0 + delta)
    assert lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta).teacher_factors() is not None
    Y[-1, 4] += 1e-9
    assert lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta).teacher_factors() is None


def test_given_labels_are_checked_in_float64_whatever_the_problem_dtype():
    """The labels' check reads the arrays as given, in float64: for a float32 problem, exact float64 labels are the
    teacher's and labels with 0.1 % noise are not. Mutation: checking the float32 copies with float32's unit, whose
    worst-case bound 2(d+2)u32·|X||W0| admits that noise at d = 256 with |W0| ~ 10, fails."""
    rng = np.random.default_rng(11)
    X, W0 = rng.standard_normal((512, 256)), 10 * rng.standard_normal((256, 32))
    delta = rng.standard_normal((256, 2)) @ rng.standard_normal((2, 32)) / 16
    signal = X @ delta
    exact = X @ (W0 + delta)
    noisy = exact + 1e-3 * signal.std() * rng.standard_normal(exact.shape)
    for Y, teacher in ((exact, True), (noisy, False)):
        prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta, dtype="float32")
        assert (prob.teacher_factors() is not None) == teacher
