"""The CPU products through numpy's BLAS (linalg.matmul, LinearTeacher._blas_grads, the residual of the exact
loss), the one-QR risk, and the align column set: each against an independent torch or autograd oracle."""
import math

import numpy as np
import pytest
import torch

import lorasim
from lorasim.engine import all_finite
from lorasim.linalg import finite_sum, finite_sum_check, frobenius_sq, matmul, product_fro, product_norms, slot_copier
from lorasim.metrics import METRIC_SETS

EPS64 = torch.finfo(torch.float64).eps


def _rand(shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _product_bound(a, b):
    """The round-off bound of a computed product: n·eps·(|a||b|) entrywise, n the inner dimension."""
    return a.shape[-1] * torch.finfo(a.dtype).eps * (a.abs() @ b.abs())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((4, 7, 5), (4, 5, 3)), ((7, 5), (4, 5, 3)),
                                    ((4, 7, 5), (5, 3))])
def test_matmul_through_numpy_is_torchs_product_within_round_off(dtype, shapes, monkeypatch):
    """Batched, broadcast and transposed operands give torch.matmul's product within n·eps·|a||b|, and do go
    through numpy. Mutation: a transposed or unbatched numpy product fails the bound or the shape."""
    calls = []
    real = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    a, b = _rand(shapes[0], 1, dtype), _rand(shapes[1], 2, dtype)
    for x, y in ((a, b), (a.mT.contiguous().mT, b.mT.contiguous().mT)):  # contiguous and column-major views
        got, want = matmul(x, y), x @ y
        assert got.shape == want.shape and got.dtype == dtype
        assert bool(((got - want).abs() <= 2 * _product_bound(x, y)).all())
    assert len(calls) == 2


def test_matmul_keeps_autograd_and_other_devices_on_torch():
    """What autograd tracks takes torch.matmul (a gradient reaches the input); integers too."""
    a = _rand((4, 3), 3).requires_grad_(True)
    matmul(a, _rand((3, 2), 4)).sum().backward()
    assert a.grad is not None and a.grad.shape == (4, 3)
    assert torch.equal(matmul(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64)),
                       torch.full((2, 2), 2))


def test_batched_blas_grads_equal_autograd_of_the_empirical_loss():
    """A batch of runs through numpy's BLAS (side by side, one product per matrix) against autograd of
    (1/2N)‖X(W0 + A_i B_i) − Y‖² for each run. Mutation: the side-by-side product G Bᵀ unstacked in the
    wrong layout (read as b × d × r) fails here and in test_linear."""
    rng = np.random.default_rng(0)
    n, d, k, r, b = 300, 12, 9, 3, 4
    X, W0 = rng.standard_normal((n, d)), rng.standard_normal((d, k))
    Y = X @ (W0 + rng.standard_normal((d, r)) @ rng.standard_normal((r, k)) / 3) + 0.1 * rng.standard_normal((n, k))
    prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0)
    A, B = _rand((b, d, r), 5), _rand((b, r, k), 6)
    gA, gB = prob.grads(A, B)
    assert prob.fused is True and gA.shape == (b, d, r) and gB.shape == (b, r, k)
    Xt, Yt, W0t = (torch.as_tensor(v) for v in (X, Y, W0))
    for i in range(b):
        Ai, Bi = A[i].clone().requires_grad_(True), B[i].clone().requires_grad_(True)
        R = Xt @ (W0t + Ai @ Bi) - Yt
        (0.5 * (R * R).sum() / n).backward()
        torch.testing.assert_close(gA[i], Ai.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gB[i], Bi.grad, rtol=1e-10, atol=1e-12)


def test_numpy_and_torch_steps_agree_to_round_off():
    """The default step (numpy's BLAS) and the plain torch step (fused=False) give the same trajectory of a
    batch within round-off (the products differ in summation order only)."""
    prob = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=3.0, seed=2)
    inits = [{"init": "small_random", "rank": 3, "seed": s} for s in range(3)]
    fast = lorasim.train_batch(prob, inits, solver="precgd", lr=0.3, steps=40, metrics="risk")
    prob.fused = False
    plain = lorasim.train_batch(prob, inits, solver="precgd", lr=0.3, steps=40, metrics="risk")
    for x, y in zip(fast, plain):
        torch.testing.assert_close(x.A, y.A, rtol=1e-10, atol=1e-13)
        assert x.to_frame().risk.to_numpy() == pytest.approx(y.to_frame().risk.to_numpy(), rel=1e-9)


def test_product_fro_is_the_frobenius_norm_of_product_norms_and_guards_non_finite():
    """‖LR‖_F from one QR equals product_norms' (two QRs and an SVD) within round-off; inf where a factor
    has an inf, NaN where it has a NaN, the other runs of the batch unaffected."""
    L, R = _rand((3, 30, 5), 7), _rand((3, 5, 20), 8)
    torch.testing.assert_close(product_fro(L, R), product_norms(L, R)[1], rtol=1e-13, atol=0)
    torch.testing.assert_close(product_fro(L, R), torch.linalg.matrix_norm(L @ R), rtol=1e-13, atol=0)
    L[1, 0, 0], R[2, 0, 0] = math.inf, math.nan
    got = product_fro(L, R)
    assert got[1] == math.inf and math.isnan(got[2])
    torch.testing.assert_close(got[0], torch.linalg.matrix_norm(L[0] @ R[0]), rtol=1e-13, atol=0)


def test_product_fro_of_huge_finite_factors_whose_sums_overflow():
    """float32 factors near 1e37 are finite, but their entry sums overflow: the norm comes from the QR (inf
    where the product overflows), without a second pass of the non-finite branch. Mutation: re-entering
    product_fro whenever a sum overflows recurses without end (RecursionError)."""
    L, R = _rand((2, 30, 5), 9, torch.float32).abs() * 1e37, _rand((2, 5, 20), 10, torch.float32)
    assert not math.isfinite(float(L.sum()))
    got = product_fro(L, R)
    want = torch.linalg.matrix_norm(L.double() @ R.double())
    assert bool(((got.double() - want).abs() <= 1e-5 * want).all() | torch.isinf(got).all())


def test_huge_finite_factors_end_a_run_diverged_in_every_set():
    """A run started at finite float32 factors near 1e37 ends diverged under lean, align and figure (the risk and
    loss overflow), as under full and risk, and never raises."""
    prob = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, seed=3, dtype="float32")
    A0, B0 = _rand((20, 2), 11, torch.float32).abs() * 1e37, _rand((2, 16), 12, torch.float32)
    for metrics in METRIC_SETS:
        tr = lorasim.train(prob, A0, B0, solver="gd", lr=0.1, steps=5, metrics=metrics)
        assert tr.status == "diverged" and tr.diverged_step <= 1, metrics


def test_finite_sum_finds_a_non_finite_entry_in_any_operand():
    a, b = torch.zeros(3, 4, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float32)
    assert finite_sum(a, b)
    b[1, 1] = math.nan
    assert not finite_sum(a, b)
    b[1, 1], a[0, 0] = 0.0, -math.inf
    assert not finite_sum(a, b)


@pytest.mark.parametrize("grad, transposed", [(False, False), (False, True), (True, False)])
def test_finite_sum_check_reads_tensors_updated_in_place(grad, transposed):
    """The bound check sees in-place updates of its tensors (the loop's factors): on flat numpy views (a dot product
    with ones), on numpy views of a non-contiguous tensor, and, for a tensor autograd tracks, on torch. Mutations:
    views of a copy made at binding, or a flat "view" of a non-contiguous tensor (a copy), never see the NaN."""
    a, b = torch.zeros(3, 4, dtype=torch.float64, requires_grad=grad), torch.ones(2, 2, dtype=torch.float64)
    if transposed:
        a = torch.zeros(4, 3, dtype=torch.float64).T
    check = finite_sum_check(a, b)
    assert check()
    with torch.no_grad():
        b[1, 1] = math.nan
    assert not check()
    with torch.no_grad():
        b[1, 1], a[0, 0] = 0.0, math.inf
    assert not check()
    with torch.no_grad():
        a[0, 0] = 2.0
    assert check()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_slot_copier_keeps_each_state_in_its_own_slot(dtype):
    """Slot n holds the tensors as they were at the n-th call, on numpy (float64) and on torch (bfloat16, which
    numpy has not). Mutations: copying into slot 0 always, or from a copy made at binding, fail."""
    x, y = torch.zeros(2, 3, dtype=dtype), torch.zeros(4, dtype=dtype)
    bx, by = torch.full((3, 2, 3), -1.0, dtype=dtype), torch.full((3, 4), -1.0, dtype=dtype)
    keep = slot_copier((bx, x), (by, y))
    for n in range(3):
        x.fill_(n + 1)
        y.fill_(10 * (n + 1))
        keep(n)
    for n in range(3):
        assert bool((bx[n] == n + 1).all()) and bool((by[n] == 10 * (n + 1)).all())


def test_all_finite_per_run():
    """One flag per run: False where a run has an inf or NaN, True for huge finite factors whose sums overflow
    (the exact check), also for a tensor autograd tracks."""
    A, B = _rand((4, 6, 2), 13), _rand((4, 2, 5), 14)
    A[1, 2, 0], B[2, 1, 3] = math.inf, math.nan
    A[3] = 1e308
    want = [True, False, False, True]
    assert all_finite(A, B).tolist() == want
    assert all_finite(A.requires_grad_(True), B).tolist() == want


def test_blas_grads_follow_a_new_g():
    """The kept numpy views of Σ̂, G and Gᵀ are rebuilt when G is replaced (a shifted problem, or a user's new
    G): the step then equals the plain torch gradient of the new G. Mutation: views kept forever fail."""
    prob = lorasim.LinearTeacher(d=12, k=9, r_star=2, n=100, seed=4)
    A, B = _rand((3, 12, 3), 15), _rand((3, 3, 9), 16)
    prob.grads(A, B)
    prob.G = prob.G + _rand((12, 9), 17)
    gA, gB = prob.grads(A, B)
    SA = prob.sigma_hat @ A
    torch.testing.assert_close(gA, SA @ (B @ B.mT) - prob.G @ B.mT, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gB, (A.mT @ SA) @ B - A.mT @ prob.G, rtol=1e-12, atol=1e-12)


def test_align_set_is_the_lean_row_without_the_loss():
    """metrics=align logs risk, align_A and align_B with the lean row's values (the same functions), and
    no loss."""
    prob = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=2.0, seed=3)
    inits = [{"init": "small_random", "rank": 4, "seed": 1}, {"init": "spectral", "rank": 4}]
    lean = lorasim.train_batch(prob, inits, solver="gd", lr=0.1, steps=20, metrics="lean")
    align = lorasim.train_batch(prob, inits, solver="gd", lr=0.1, steps=20, metrics="align")
    for x, y in zip(lean, align):
        fx, fy = x.to_frame(), y.to_frame()
        assert "loss" not in fy and {"risk", "align_A", "align_B"} <= set(fy)
        for col in ("risk", "align_A", "align_B"):
            assert fy[col].to_numpy() == pytest.approx(fx[col].to_numpy(), rel=1e-13, abs=1e-15, nan_ok=True)


def test_figure_set_logs_the_align_rows_risk_and_align_A_only():
    """metrics=figure logs risk and align_A, the align row's values (the same functions on the same states), and
    neither align_B nor the loss; a run with B frozen (full_ft) logs its risk too. Mutation: the figure row
    computing B's side, or taking align_A from another subspace, fails here."""
    prob = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=2.0, seed=3)
    inits = [{"init": "small_random", "rank": 4, "seed": 1}, {"init": "spectral", "rank": 4},
             {"init": "small_random", "rank": 3, "seed": 2, "alpha": 0.3}]
    align = lorasim.train_batch(prob, inits, solver="gd", lr=0.1, steps=20, metrics="align")
    figure = lorasim.train_batch(prob, inits, solver="gd", lr=0.1, steps=20, metrics="figure")
    for x, y in zip(align, figure):
        fx, fy = x.to_frame(), y.to_frame()
        assert list(fy.columns) == ["method", "init", "solver", "step", "status", "risk", "align_A"]
        for col in ("step", "risk", "align_A"):
            np.testing.assert_array_equal(fy[col].to_numpy(), fx[col].to_numpy(), err_msg=col)
    full_ft = lorasim.train(prob, solver="full_ft", rank=2, steps=5, metrics="figure").to_frame()
    assert full_ft["risk"].iloc[-1] < full_ft["risk"].iloc[0] and "align_B" not in full_ft


@pytest.mark.parametrize("metrics", ["align", "figure"])
def test_sets_without_a_loss_judge_divergence_on_the_risk(metrics):
    """Without a loss column, a run whose risk passes the divergence rule ends diverged at that row, and
    the others go on. Mutation: the rule reading a missing loss raises KeyError."""
    prob = lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=2.0, seed=3)
    inits = [{"init": "spectral", "rank": 2}, {"init": "spectral", "rank": 2}]
    trajs = lorasim.train_batch(prob, inits, solver="gd", lr=[60.0, 0.01], steps=40, metrics=metrics)
    assert trajs[0].status == "diverged" and trajs[1].status == "ok"
    last = trajs[0].rows[-1]
    assert last["step"] == trajs[0].diverged_step and "loss" not in last
    assert not math.isfinite(last["risk"]) or last["risk"] > 1e8 * max(trajs[0].rows[0]["risk"], 1.0)
    assert math.isnan(trajs[0].summary()["loss_final"])


def test_set_threads_sets_numpys_blas_threads_too():
    from threadpoolctl import threadpool_info

    from lorasim.linalg import set_threads

    before = torch.get_num_threads()
    try:
        set_threads(1)
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert torch.get_num_threads() == 1 and blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        set_threads(before)


def test_frobenius_sq_on_both_paths():
    """‖x‖_F² over the trailing two dimensions through numpy (untracked CPU floats) and through torch (tracked by
    autograd, with its gradient 2x), equal to torch's norm squared. In float32 over 262144 terms it stays within
    float32's pairwise-summation bound of the exact sum, (log₂ n + 1)·ε₃₂ (mutation: einsum's running sum,
    8.4e-6 off against the bound 2.3e-6, fails)."""
    x = _rand((3, 7, 5), 18)
    want = torch.linalg.matrix_norm(x) ** 2
    torch.testing.assert_close(frobenius_sq(x), want, rtol=1e-14, atol=0)
    big = _rand((4, 64, 4096), 21, torch.float32)
    exact = (big.double() ** 2).sum(dim=(-2, -1))
    bound = (math.log2(64 * 4096) + 1) * torch.finfo(torch.float32).eps
    assert float((frobenius_sq(big).double() / exact - 1).abs().max()) <= bound
    tracked = x.clone().requires_grad_(True)
    got = frobenius_sq(tracked)
    torch.testing.assert_close(got.detach(), want, rtol=1e-14, atol=0)
    got.sum().backward()
    torch.testing.assert_close(tracked.grad, 2 * x, rtol=1e-14, atol=0)


def test_blas_grads_follow_new_factors_and_new_storage():
    """The kept numpy views of A and B (``_numpy_factors``) serve only the tensors they were made from, with the same
    storage and layout: other tensors, or the same tensor objects given new storage (``.data = ``), are stepped from
    their own values. Mutations: views kept forever, or keyed on the tensor objects alone, fail."""
    prob = lorasim.LinearTeacher(d=12, k=9, r_star=2, n=100, noise=0.1, seed=4)
    A, B = _rand((3, 12, 3), 15), _rand((3, 3, 9), 16)

    def oracle(A, B):
        SA = prob.sigma_hat @ A
        return SA @ (B @ B.mT) - prob.G @ B.mT, (A.mT @ SA) @ B - A.mT @ prob.G

    prob.grads(A, B)
    A2, B2 = _rand((3, 12, 3), 17), _rand((3, 3, 9), 18)
    for got, want in zip(prob.grads(A2, B2), oracle(A2, B2)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    A2.data, B2.data = _rand((3, 12, 3), 19), _rand((3, 3, 9), 20)  # same objects, new storage
    for got, want in zip(prob.grads(A2, B2), oracle(A2, B2)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    A2.mul_(2.0)  # stepped in place: the kept views see it
    for got, want in zip(prob.grads(A2, B2), oracle(A2, B2)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_blas_grads_follow_in_place_steps_of_a_batch_whose_reshape_copies_and_an_in_place_g():
    """A batch whose leading dimensions do not merge into a view (a transposed batch) is converted at every call:
    a kept copy would not see the factors stepped in place. And G changed in place (``G +=``) refreshes the kept
    Gᵀ. Mutations: keeping the copy, or keying Gᵀ on the object alone, fail (errors O(1))."""
    prob = lorasim.LinearTeacher(d=12, k=9, r_star=2, n=100, noise=0.1, seed=4)
    A = _rand((3, 2, 12, 3), 21).transpose(0, 1)
    B = _rand((2, 3, 3, 9), 22)

    def oracle(A, B):
        SA = prob.sigma_hat @ A
        return SA @ (B @ B.mT) - prob.G @ B.mT, (A.mT @ SA) @ B - A.mT @ prob.G

    prob.grads(A, B)
    A.mul_(2.0)
    for got, want in zip(prob.grads(A, B), oracle(A, B)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    prob.G += _rand((12, 9), 23)
    A3, B3 = _rand((3, 12, 3), 24), _rand((3, 3, 9), 25)
    for got, want in zip(prob.grads(A3, B3), oracle(A3, B3)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
