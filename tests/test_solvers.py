"""Update rules against hand-written formulas and torch.optim.Adam."""
import pytest
import torch

import lorasim
from lorasim.engine import as_solver_config
from lorasim.solvers import GDConfig, Solver, SolverConfig, make_solver, scale_by_lr


def _rand(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _one_step(cfg, A, B, gA, gB):
    slv = make_solver(cfg)
    return slv.step(A, B, gA, gB, slv.init(A, B))


def _inv(M, lam):
    return torch.linalg.inv(M + lam * torch.eye(M.shape[0], dtype=M.dtype))


@pytest.fixture
def pair():
    return _rand((12, 3), 0), _rand((3, 9), 1), _rand((12, 3), 2), _rand((3, 9), 3)


@pytest.mark.parametrize("order", ["simultaneous", "gauss_seidel"])
def test_precgd_step_formula(pair, order):
    A, B, gA, gB = pair
    lam, eta = 0.1, 0.3
    slv = make_solver(SolverConfig(name="precgd", lr=eta, damping=lam, order=order))
    A1, B1 = slv.step(A, B, gA, gB, slv.init(A, B))
    A_ref = A - eta * gA @ _inv(B @ B.T, lam)
    A_pre = A_ref if order == "gauss_seidel" else A
    B_ref = B - eta * _inv(A_pre.T @ A_pre, lam) @ gB
    torch.testing.assert_close(A1, A_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(B1, B_ref, rtol=1e-12, atol=1e-12)


def test_pinv_equals_inv_when_damped_and_handles_singular_gram(pair):
    A, B, gA, gB = pair
    steps = {}
    for inverse in ("inv", "pinv"):
        slv = make_solver(SolverConfig(name="precgd", lr=0.5, damping=1e-2, inverse=inverse))
        steps[inverse] = slv.step(A, B, gA, gB, slv.init(A, B))
    for x, y in zip(steps["inv"], steps["pinv"]):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
    zero_B = torch.zeros_like(B)
    # λ = 0 with B = 0: inv falls back to the identity (as AdamWr does), pinv maps to 0.
    A_inv, _ = _one_step(SolverConfig(name="precgd", lr=1.0, damping=0.0), A, zero_B, gA, gB)
    torch.testing.assert_close(A_inv, A - gA)
    A_pinv, _ = _one_step(SolverConfig(name="precgd", lr=1.0, damping=0.0, inverse="pinv"), A, zero_B, gA, gB)
    torch.testing.assert_close(A_pinv, A)


def test_lora_plus_ratio_scales_b_only(pair):
    A, B, gA, gB = pair
    A1, B1 = _one_step(SolverConfig(name="gd", lr=0.1, lr_ratio=16.0), A, B, gA, gB)
    torch.testing.assert_close(A1, A - 0.1 * gA)
    torch.testing.assert_close(B1, B - 1.6 * gB)


def test_adam_matches_torch_optim_adam(small_linear):
    A = _rand((32, 3), 4)
    B = _rand((3, 24), 5)
    lr = 1e-2
    pa, pb = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
    opt = torch.optim.Adam([pa, pb], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    slv = make_solver(SolverConfig(name="adam", lr=lr))
    state = slv.init(A, B)
    for _ in range(20):
        gA, gB = small_linear.grads(A, B)
        A, B = slv.step(A, B, gA, gB, state)
        ga, gb = small_linear.grads(pa.detach(), pb.detach())
        pa.grad, pb.grad = ga, gb
        opt.step()
    torch.testing.assert_close(A, pa.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(B, pb.detach(), rtol=1e-10, atol=1e-12)


def test_scaled_adam_with_bias_correction_is_adam_on_preconditioned_gradients(small_linear):
    """Simultaneous order, precondition before the moments: torch Adam fed (BBᵀ+λI)⁻¹-scaled gradients."""
    A, B, lam, lr = _rand((32, 3), 6), _rand((3, 24), 7), 0.05, 1e-2
    pa, pb = A.clone().requires_grad_(True), B.clone().requires_grad_(True)
    opt = torch.optim.Adam([pa, pb], lr=lr)
    slv = make_solver(SolverConfig(name="scaled_adam", lr=lr, damping=lam, order="simultaneous", bias_correction=True))
    state = slv.init(A, B)
    for _ in range(15):
        gA, gB = small_linear.grads(A, B)
        A, B = slv.step(A, B, gA, gB, state)
        a, b = pa.detach(), pb.detach()
        ga, gb = small_linear.grads(a, b)
        pa.grad, pb.grad = ga @ _inv(b @ b.T, lam), _inv(a.T @ a, lam) @ gb
        opt.step()
    torch.testing.assert_close(A, pa.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(B, pb.detach(), rtol=1e-9, atol=1e-12)


def test_scaled_adam_default_is_adamwr(pair):
    """AdamWr: no bias correction, Gauss–Seidel (B's preconditioner sees the updated A)."""
    A, B, gA, gB = pair
    lam, lr, b1, b2, eps = 1e-6, 1e-2, 0.9, 0.999, 1e-8
    slv = make_solver(SolverConfig(name="scaled_adam", lr=lr, damping=lam, order="gauss_seidel"))
    assert SolverConfig(name="scaled_adam").bias_correction is False and slv.step_dependent is False
    A1, B1 = slv.step(A, B, gA, gB, slv.init(A, B))
    sA = gA @ _inv(B @ B.T, lam)
    A_ref = A - lr * ((1 - b1) * sA) / (((1 - b2) * sA * sA).sqrt() + eps)
    sB = _inv(A_ref.T @ A_ref, lam) @ gB
    B_ref = B - lr * ((1 - b1) * sB) / (((1 - b2) * sB * sB).sqrt() + eps)
    torch.testing.assert_close(A1, A_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(B1, B_ref, rtol=1e-10, atol=1e-12)


def test_precondition_after_scales_the_adam_step(pair):
    A, B, gA, gB = pair
    lam, lr = 0.2, 1e-2
    slv = make_solver(SolverConfig(name="scaled_adam", lr=lr, damping=lam, order="simultaneous", precondition="after"))
    A1, B1 = slv.step(A, B, gA, gB, slv.init(A, B))
    adam_dir = lambda g: (0.1 * g) / ((0.001 * g * g).sqrt() + 1e-8)  # noqa: E731  first step, no correction
    torch.testing.assert_close(A1, A - lr * adam_dir(gA) @ _inv(B @ B.T, lam), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(B1, B - lr * _inv(A.T @ A, lam) @ adam_dir(gB), rtol=1e-10, atol=1e-12)


def test_full_ft_is_gd_on_w(small_linear):
    eta, steps = 0.3, 7
    traj = lorasim.train(small_linear, solver="full_ft", lr=eta, steps=steps)
    D = torch.zeros_like(small_linear.W0)  # W − W0
    for _ in range(steps):
        D = D + eta * (small_linear.G - small_linear.sigma_hat @ D)  # W ← W − η∇L(W)
    torch.testing.assert_close(traj.A @ traj.B, D, rtol=1e-12, atol=1e-12)
    assert torch.equal(traj.B, torch.eye(small_linear.k, dtype=torch.float64))


@pytest.mark.parametrize("order", ["simultaneous", "gauss_seidel"])
def test_step_leaves_its_inputs_and_step_in_place_is_the_formula(pair, order):
    """``step`` returns the update without touching A and B; ``step_`` (the engine's) writes the same bits in
    place, and they are ScaledGD(λ)'s formula in that order. Mutation: step_ updating B from the new A under
    the simultaneous order fails the formula here (step, which calls step_, would agree with it)."""
    A, B, gA, gB = pair
    lam, eta = 0.1, 0.3
    slv = make_solver(SolverConfig(name="precgd", lr=eta, damping=lam, order=order))
    A_copy, B_copy = A.clone(), B.clone()
    A1, B1 = slv.step(A, B, gA, gB, slv.init(A, B))
    assert torch.equal(A, A_copy) and torch.equal(B, B_copy)
    slv.step_(A, B, gA, gB, slv.init(A, B))
    assert torch.equal(A, A1) and torch.equal(B, B1)
    A_ref = A_copy - eta * gA @ _inv(B_copy @ B_copy.T, lam)
    A_pre = A_ref if order == "gauss_seidel" else A_copy
    torch.testing.assert_close(A, A_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(B, B_copy - eta * _inv(A_pre.T @ A_pre, lam) @ gB, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("solver, kw", [("gd", {"lr_ratio": 4.0}), ("precgd", {"damping": 0.3}),
                                        ("precgd", {"damping": 0.3, "order": "gauss_seidel"}),
                                        ("adam", {"bias_correction": False})])
@pytest.mark.parametrize("per_run_lr", [False, True])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_folded_step_size_matches_the_chain(solver, kw, per_run_lr, device, monkeypatch):
    """On CUDA the step size is folded into the in-place update (X −= lr ⊙ direction, one pass): the new factors
    equal those of the whole chain applied and then subtracted, to float32 round-off. On the CPU the fold is forced
    (the CPU's own steps keep the chain, which the golden frames pin). Mutations: B's step size without lr_ratio,
    B's direction taken with the new A in simultaneous order (or the old one in Gauss–Seidel), or the step size
    applied twice, each move the result by far more."""
    if device == "cpu":
        assert not Solver.folds_step_size(make_solver(GDConfig()), torch.zeros(1))
        monkeypatch.setattr(Solver, "folds_step_size", lambda self, X: isinstance(self.chain[-1], scale_by_lr))
    g = torch.Generator(device=device).manual_seed(7)
    A, B, gA, gB = (torch.randn(*shape, generator=g, device=device)
                    for shape in ((3, 40, 4), (3, 4, 30), (3, 40, 4), (3, 4, 30)))
    lr = torch.tensor([0.1, 0.02, 0.05], device=device).reshape(3, 1, 1) if per_run_lr else 0.05
    slv = make_solver(as_solver_config(solver, 0.05, dict(kw)), lr=lr)
    assert slv.folds_step_size(A)
    state = slv.init(A, B)
    state_ref = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    A1, B1 = A.clone(), B.clone()
    slv.step_(A1, B1, gA, gB, state)
    state_ref["t"] += 1  # the whole chain, then the subtraction: what the CPU does
    dA = slv.direction("A", gA, state_ref, B)
    A2 = A - dA
    dB = slv.direction("B", gB, state_ref, A2 if slv.order == "gauss_seidel" else A)
    B2 = B - dB
    for have, want, step in ((A1, A2, dA), (B1, B2, dB)):
        assert float((have - want).norm() / step.norm()) < 1e-5


@pytest.mark.parametrize("per_run_lr", [False, True])
def test_descend_in_place_hands_plain_gd_to_the_problem_and_nothing_else(per_run_lr, monkeypatch):
    """``Solver.descend_in_place``: where the chain is the folded step size alone (GD, either order, LoRA+'s ratio),
    the problem's ``descend`` gets A, B and the two step sizes and the step count advances; any other chain, full
    fine-tuning, or a problem that declines leaves factors and state as they were. Mutations: B's step size
    without lr_ratio, the count not advanced, or Adam's chain handed over, fail."""
    monkeypatch.setattr(Solver, "folds_step_size", lambda self, X: bool(self.chain)
                        and isinstance(self.chain[-1], scale_by_lr))  # as on CUDA
    A, B = torch.randn(3, 40, 4), torch.randn(3, 4, 30)
    lr = torch.tensor([0.1, 0.02, 0.05]).reshape(3, 1, 1) if per_run_lr else 0.05
    calls = []

    def descend(A_, B_, lr_A, lr_B, accept=True):
        calls.append((A_, B_, lr_A, lr_B))
        return accept
    for solver, kw in (("gd", {"lr_ratio": 4.0}), ("gd", {}), ("precgd", {"order": "gauss_seidel", "damping": 0.0})):
        slv = make_solver(as_solver_config(solver, 0.05, dict(kw)), lr=lr)
        state = slv.init(A, B)
        calls.clear()
        taken = slv.descend_in_place(descend, A, B, state)
        if solver == "gd":
            assert taken and state["t"] == 1 and len(calls) == 1
            A_, B_, lr_A, lr_B = calls[0]
            assert A_ is A and B_ is B
            torch.testing.assert_close(torch.as_tensor(lr_B), torch.as_tensor(lr) * kw.get("lr_ratio", 1.0))
            torch.testing.assert_close(torch.as_tensor(lr_A), torch.as_tensor(lr))
        else:  # a transform before the step size: the solver's own update
            assert not taken and state["t"] == 0 and not calls
    for cfg in (as_solver_config("adam", 0.05, {"bias_correction": False}), as_solver_config("full_ft", 0.05)):
        slv = make_solver(cfg, lr=lr)
        state = slv.init(A, B)
        assert not slv.descend_in_place(descend, A, B, state) and state["t"] == 0
    slv = make_solver(GDConfig(), lr=lr)
    state = slv.init(A, B)
    assert not slv.descend_in_place(lambda *a: descend(*a, accept=False), A, B, state) and state["t"] == 0
