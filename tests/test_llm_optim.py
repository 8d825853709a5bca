"""The scaled LoRA optimizer: against peft's Riemannian optimizer, against lorasim's paper-layout
solver (through the peft mapping), against explicit float64 formulas, and inside the HF Trainer."""
import math

import pytest
import torch

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from lorasim.config import ConfigError  # noqa: E402
from lorasim.solvers import SolverConfig  # noqa: E402
from lorasim.llm import one_step_gradients  # noqa: E402
from lorasim.llm.init import lora_one_model  # noqa: E402
from lorasim.llm.models import tiny_llama  # noqa: E402
from lorasim.llm.optim import ScaledLoRAOptimizer, lora_pairs, scaled_optimizer  # noqa: E402
from lorasim.peft_convention import from_peft  # noqa: E402
from lorasim.solvers import make_solver  # noqa: E402

torch.set_num_threads(1)


def _batches(n=2, seed=1, vocab=259):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": (ids := torch.randint(0, vocab, (2, 12), generator=g)), "labels": ids} for _ in range(n)]


def _lora_one_llama(seed=0):
    base = tiny_llama(seed)
    return lora_one_model(base, one_step_gradients(base, _batches()), r=4, gamma=4.0)


def _train(model, opt, batches, steps):
    for i in range(steps):
        opt.zero_grad()
        model(**batches[i % len(batches)]).loss.backward()
        opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_pairs_are_found_in_peft_order():
    model = _lora_one_llama()
    pairs = lora_pairs(model.named_parameters())
    assert len(pairs) == 14 and all(a.replace(".lora_A.", ".lora_B.") == b for a, b in pairs)


def test_simultaneous_pinv_equals_peft_riemannian_adamw():
    riemannian = pytest.importorskip("peft.optimizers.riemannian", reason="this peft has no create_riemannian_optimizer")
    create_riemannian_optimizer = riemannian.create_riemannian_optimizer

    batches = _batches(3, seed=5)
    ours = _lora_one_llama()
    theirs = _lora_one_llama()
    a = _train(ours, scaled_optimizer(ours, 1e-2, damping=1e-2, inverse="pinv", order="simultaneous",
                                      bias_correction=True), batches, 4)
    b = _train(theirs, create_riemannian_optimizer(theirs, torch.optim.AdamW, lr=1e-2, reg=1e-2, weight_decay=0.0),
               batches, 4)
    moved = 0.0
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=2e-5, atol=1e-6)
        moved = max(moved, float((a[name] - dict(_lora_one_llama().named_parameters())[name].detach()).abs().max()))
    assert moved > 1e-3  # the comparison is not between two untouched models


def _one_layer(seed, dtype=torch.float64, s_alpha=8.0, r=3):
    torch.manual_seed(seed)
    base = torch.nn.Sequential(torch.nn.Linear(7, 5, bias=False)).to(dtype)
    cfg = peft.LoraConfig(r=r, lora_alpha=s_alpha, target_modules=["0"], init_lora_weights=False)
    model = peft.get_peft_model(base, cfg).to(dtype)
    layer = model.base_model.model[0]
    return model, layer, layer.scaling["default"]


@pytest.mark.parametrize("order", ["simultaneous", "gauss_seidel"])
def test_scaled_adamw_is_lorasims_scaled_adam_in_paper_layout(order):
    """C18's map: AdamWr(lr, reg, ε) on (lora_A, lora_B) = scaled_adam(lr·√s, s·reg, ε/s^{3/2}) on (A, B)."""
    model, layer, s = _one_layer(0)
    assert s != 1.0
    g = torch.Generator().manual_seed(2)
    X, Y = torch.randn(32, 7, generator=g, dtype=torch.float64), torch.randn(32, 5, generator=g, dtype=torch.float64)
    lr, reg, eps = 3e-2, 0.1, 1e-8
    opt = scaled_optimizer(model, lr, damping=reg, order=order, bias_correction=False, eps=eps)
    solver = make_solver(SolverConfig(name="scaled_adam", lr=lr * math.sqrt(s), damping=s * reg, eps=eps / s**1.5,
                                 order=order, bias_correction=False))
    lA, lB = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    A, B = from_peft(lA.detach().clone(), lB.detach().clone(), s)
    state = solver.init(A, B)
    for _ in range(5):
        opt.zero_grad()
        ((model(X) - Y) ** 2).mean().backward()
        gA, gB = lA.grad.T / math.sqrt(s), lB.grad.T / math.sqrt(s)  # chain rule: ∇lora_A = √s·(∇_A)ᵀ
        A, B = solver.step(A, B, gA, gB, state)
        opt.step()
        pA, pB = from_peft(lA.detach(), lB.detach(), s)
        torch.testing.assert_close(pA, A, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(pB, B, rtol=1e-10, atol=1e-12)


def test_orders_differ_and_sgd_matches_the_explicit_formula():
    """One SGD step: lora_A − lr·(BᵀB+λI)⁻¹g_A and lora_B − lr·g_B(A'A'ᵀ+λI)⁻¹ (A' = old or new A)."""
    X = torch.randn(16, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    results = {}
    for order in ("simultaneous", "gauss_seidel"):
        for when in ("before", "after"):
            model, layer, _ = _one_layer(1)
            lA, lB = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            A0, B0 = lA.detach().clone(), lB.detach().clone()
            (model(X) ** 2).sum().backward()
            gA, gB = lA.grad.clone(), lB.grad.clone()
            scaled_optimizer(model, 0.05, base="sgd", damping=0.3, order=order, precondition=when).step()
            eye = torch.eye(3, dtype=torch.float64)
            A1 = A0 - 0.05 * torch.linalg.inv(B0.T @ B0 + 0.3 * eye) @ gA
            A_ref = A1 if order == "gauss_seidel" else A0
            B1 = B0 - 0.05 * gB @ torch.linalg.inv(A_ref @ A_ref.T + 0.3 * eye)
            torch.testing.assert_close(lA.detach(), A1, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(lB.detach(), B1, rtol=1e-12, atol=1e-14)
            results[order, when] = lB.detach().clone()
    assert not torch.allclose(results["simultaneous", "before"], results["gauss_seidel", "before"])


def test_unpaired_parameters_take_the_plain_rule_and_bad_fields_are_named():
    w = torch.nn.Parameter(torch.ones(3))
    opt = ScaledLoRAOptimizer([("head.weight", w)], lr=0.5, base="sgd")
    w.grad = torch.full((3,), 2.0)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.zeros(3))
    for kwargs, field in [({"order": "jacobi"}, "order"), ({"base": "lion"}, "base"), ({"damping": -1.0}, "damping"),
                          ({"inverse": "chol"}, "inverse"), ({"precondition": "during"}, "precondition")]:
        with pytest.raises(ConfigError, match=f"^optimizer.{field}="):
            ScaledLoRAOptimizer([("w", torch.nn.Parameter(torch.ones(2)))], lr=0.1, **kwargs)
    with pytest.raises(ConfigError, match="^optimizer.model="):
        scaled_optimizer(tiny_llama(), 1e-3)


def test_hf_trainer_runs_the_optimizer_like_a_plain_loop(tmp_path):
    """The same optimizer through transformers.Trainer and through a plain loop: same parameters."""
    from transformers import Trainer, TrainingArguments

    batch = _batches(1, seed=7)[0]
    rows = [{"input_ids": batch["input_ids"][i], "labels": batch["labels"][i]} for i in range(2)]
    loop_model = _lora_one_llama()
    loop = _train(loop_model, scaled_optimizer(loop_model, 1e-2, damping=1e-3), [batch], 3)

    model = _lora_one_llama()
    opt = scaled_optimizer(model, 1e-2, damping=1e-3)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=3,
                             report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
                             max_grad_norm=0.0, disable_tqdm=True)  # the Trainer clips at 1.0 by default
    Trainer(model=model, args=args, train_dataset=rows,
            optimizers=(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))).train()
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.detach(), loop[name], rtol=1e-5, atol=1e-7)


def test_layers_of_different_ranks_are_batched_separately_and_exactly():
    """peft rank_pattern: Grams of different sizes; one SGD step per layer equals the explicit formula."""
    base = tiny_llama(2)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                          rank_pattern={"v_proj": 2})
    model = peft.get_peft_model(base, cfg)
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    assert {lay.lora_A["default"].weight.shape[0] for lay in layers} == {2, 4}
    model(**_batches(1)[0]).loss.backward()
    before = [(lay.lora_A["default"].weight.detach().clone(), lay.lora_B["default"].weight.detach().clone(),
               lay.lora_A["default"].weight.grad.clone(), lay.lora_B["default"].weight.grad.clone()) for lay in layers]
    scaled_optimizer(model, 0.1, base="sgd", damping=0.05, order="simultaneous").step()  # the formula below
    for lay, (A0, B0, gA, gB) in zip(layers, before):
        eye = torch.eye(A0.shape[0])
        torch.testing.assert_close(lay.lora_A["default"].weight.detach(),
                                   A0 - 0.1 * torch.linalg.inv(B0.T @ B0 + 0.05 * eye) @ gA, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lay.lora_B["default"].weight.detach(),
                                   B0 - 0.1 * gB @ torch.linalg.inv(A0 @ A0.T + 0.05 * eye), rtol=1e-5, atol=1e-6)
