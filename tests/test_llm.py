"""LoRA-One on a tiny random Llama through peft: gradient, init identity, save/load round trip."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from lorasim.llm import lora_one_factors, lora_one_model, one_step_gradients, target_linear_names  # noqa: E402
from lorasim.peft_convention import lora_scale  # noqa: E402

torch.set_num_threads(1)


def _tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg).eval()


def _batches(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, 64, (2, 10), generator=g)
        out.append({"input_ids": ids, "labels": ids})
    return out


def test_targets_are_every_linear_but_the_head():
    names = target_linear_names(_tiny_llama())
    assert len(names) == 2 * 7 and not any("lm_head" in n for n in names)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                     "down_proj"}
    assert target_linear_names(_tiny_llama(), ["q_proj"]) == ["model.layers.0.self_attn.q_proj",
                                                              "model.layers.1.self_attn.q_proj"]
    with pytest.raises(ValueError, match="^targets="):
        target_linear_names(_tiny_llama(), ["nothing"])


def test_one_step_gradient_equals_full_autograd_mean_and_restores_the_model():
    model = _tiny_llama()
    batches = _batches()
    grads = one_step_gradients(model, batches)
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())
    # Oracle: plain autograd over all parameters, batch by batch, averaged.
    ref = {n: torch.zeros_like(m.weight) for n, m in model.named_modules() if n in grads}
    for b in batches:
        model.zero_grad()
        model(**b).loss.backward()
        for n, m in model.named_modules():
            if n in ref:
                ref[n] += m.weight.grad / len(batches)
    for n in grads:
        torch.testing.assert_close(grads[n], ref[n], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant", ["official", "readme", "theory"])
def test_lora_one_identity_in_peft_layout(variant):
    """s·lora_B·lora_A = (s/γ)[−G]_r/σ1 (official), (s/γ)[−G]_r (readme), ζ[−G]_r (theory)."""
    g = torch.Generator().manual_seed(3)
    G = torch.randn(24, 40, generator=g, dtype=torch.float64).float()
    r, aL, gamma, zeta = 4, 16.0, 128.0, 0.5
    s = lora_scale(r, aL, rslora=True)
    A, B = lora_one_factors(G, r, lora_alpha=aL, gamma=gamma, variant=variant, zeta=zeta)
    U, S, Vh = torch.linalg.svd(-G.double(), full_matrices=False)
    best = (U[:, :r] * S[:r]) @ Vh[:r]
    want = {"official": s / gamma * best / S[0], "readme": s / gamma * best, "theory": zeta * best}[variant]
    # float32 randomized SVD: errors of order (size)·ε32 relative to the largest entry (1.2e-5 seen
    # with torch 2.11's LAPACK)
    torch.testing.assert_close((s * B.double() @ A.double()), want, rtol=1e-4, atol=5e-5 * float(want.abs().max()))
    # balanced factors: lora_B ᵀlora_B = lora_A lora_Aᵀ
    gram = A @ A.T
    torch.testing.assert_close(B.T @ B, gram, rtol=1e-4, atol=1e-5 * float(gram.abs().max()))
    if variant == "official":  # ‖ΔW0‖_op = α_L/(γ√r), whatever the gradient's scale
        assert abs(float(torch.linalg.matrix_norm(s * B @ A, ord=2)) - aL / (gamma * r**0.5)) < 1e-6


def test_lora_one_model_is_a_standard_peft_model_that_round_trips(tmp_path):
    base = _tiny_llama()
    grads = one_step_gradients(base, _batches())
    model = lora_one_model(base, grads, r=4, gamma=128.0)
    assert isinstance(model, peft.PeftModel)
    s = lora_scale(4, 16.0, True)
    mods = dict(model.base_model.model.named_modules())
    for name, G in grads.items():
        lay = mods[name]
        dW = s * lay.lora_B["default"].weight @ lay.lora_A["default"].weight
        U, S, Vh = torch.linalg.svd(-G.double(), full_matrices=False)
        want = (s / 128.0) * (U[:, :4] * S[:4]) @ Vh[:4] / S[0]
        torch.testing.assert_close(dW.double(), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    ids = _batches(1, seed=9)[0]["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    again = peft.PeftModel.from_pretrained(_tiny_llama(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, out, rtol=0, atol=0)
    # The base weights were not moved: with the adapters off, the output is the base model's.
    with torch.no_grad(), model.disable_adapter():
        torch.testing.assert_close(model(input_ids=ids).logits, _tiny_llama()(input_ids=ids).logits, rtol=0, atol=0)


def test_bad_inputs_name_the_field():
    G = torch.randn(6, 5)
    with pytest.raises(ValueError, match="^variant="):
        lora_one_factors(G, 2, variant="magic")
    with pytest.raises(ValueError, match="^r="):
        lora_one_factors(G, 9)
    base = _tiny_llama()
    grads = one_step_gradients(base, _batches(1), targets=["q_proj"])
    grads.pop("model.layers.1.self_attn.q_proj")
    with pytest.raises(ValueError, match="^gradients:"):  # target_modules adapts a layer without a gradient
        lora_one_model(base, grads, r=2, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="^batches:"):
        one_step_gradients(_tiny_llama(), [])
