"""LoRA-One's init at the speed of the passes (issue 15), on the CPU: where the one-step gradient is
summed (the async offload is bitwise the synchronous sum), each SVD method against a float64 exact
SVD, and the single-pass sketch against the formed gradient. Speed itself is measured by
``lorasim-llm-bench``, never here.

Tolerances come from perturbation theory, not from the runs: an fp32 factorisation is the exact
one of G + E with ‖E‖ ≤ c·√n·ε32·σ1 (backward stability), so by Wedin sinΘ ≤ ‖E‖/(σ_r − σ_{r+1})."""
import math
import time

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from lorasim import streams  # noqa: E402
from lorasim.llm import gradient as gradient_mod  # noqa: E402
from lorasim.llm import lora_one_factors, one_step_gradients  # noqa: E402
from lorasim.llm.init import adapter_factors  # noqa: E402
from lorasim.llm.models import tiny_llama  # noqa: E402
from lorasim.llm.sketch import one_step_sketches, sketch_top_r, sketched_top_r, sketch_matrices  # noqa: E402
from lorasim.llm.svd import SVD_METHODS, randomized_top_r, top_r  # noqa: E402
from lorasim.metrics import sin_theta  # noqa: E402

torch.set_num_threads(1)
EPS32 = torch.finfo(torch.float32).eps
R = 4


def _batches(n=3, rows=2, seq=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": (ids := torch.randint(0, 259, (rows, seq), generator=g)), "labels": ids} for _ in range(n)]


@pytest.fixture(scope="module")
def grads():
    return one_step_gradients(tiny_llama(0), _batches(), accumulate_on="cpu")


def _exact64(G: torch.Tensor, r: int):
    U, S, Vh = torch.linalg.svd(-G.double(), full_matrices=False)
    return U, S, Vh.T


def _roundoff_sin(G: torch.Tensor, r: int) -> float:
    """Wedin's bound for an fp32 backward-stable factorisation: 10·√n·ε32·σ1 / (σ_r − σ_{r+1})."""
    S = torch.linalg.svdvals(G.double())
    return 10 * math.sqrt(max(G.shape)) * EPS32 * float(S[0]) / float(S[r - 1] - S[r])


# -- where the gradient is summed ------------------------------------------------------------------
def test_offload_is_the_synchronous_sum_bit_for_bit(monkeypatch):
    """_Offload driven directly (its CPU path: the same slots and worker, no stream): 3 layers × 2·SLOTS
    gradients each, with the worker slowed down so that every slot is reused while adds are pending
    (backpressure). Its sums equal the synchronous ones bit for bit; a lost, repeated or reordered
    add, or a slot overwritten before its add, would change them."""
    from lorasim.llm.gradient import OFFLOAD_SLOTS, _Offload

    g = torch.Generator().manual_seed(4)
    shapes = {"a": (64, 48), "b": (48, 64), "c": (32, 32)}
    for dtype in (torch.float32, torch.bfloat16):
        stream = [(name, torch.randn(*shape, generator=g).to(dtype))
                  for _ in range(2 * OFFLOAD_SLOTS) for name, shape in shapes.items()]
        sync = {n: torch.zeros(sh) for n, sh in shapes.items()}
        for name, grad in stream:
            sync[name].add_(grad.to("cpu"))
        acc = {n: torch.zeros(sh) for n, sh in shapes.items()}
        offload = _Offload(acc, {n: torch.empty(sh, dtype=dtype) for n, sh in shapes.items()})
        slow, waited = offload._accumulate, []

        def accumulate(name, staged, event):
            time.sleep(0.002)
            slow(name, staged, event)
        monkeypatch.setattr(offload, "_accumulate", accumulate)
        for name, grad in stream:
            waited.append(offload.pending[offload.next] is not None and not offload.pending[offload.next].done())
            offload.add(name, grad.clone())
        offload.finish()
        assert any(waited)  # backpressure happened
        assert all(torch.equal(acc[n], sync[n]) for n in shapes), dtype


def test_every_accumulation_mode_gives_the_same_sums(grads):
    model = tiny_llama(0)
    for mode in ("offload", "device", "auto", torch.device("cpu")):
        got = one_step_gradients(model, _batches(), accumulate_on=mode)
        assert all(torch.equal(got[k], grads[k]) for k in grads), mode


def test_a_gradient_held_before_the_pass_is_neither_summed_nor_lost(grads):
    model = tiny_llama(0)
    name = next(iter(grads))
    weight = model.get_submodule(name).weight
    weight.grad = torch.ones_like(weight)
    got = one_step_gradients(model, _batches())
    assert torch.equal(got[name], grads[name]) and torch.equal(weight.grad, torch.ones_like(weight))


def test_accumulation_is_resolved_from_the_setting():
    w = [torch.zeros(2, 2)]
    assert [gradient_mod.resolve_accumulation(w, m) for m in ("auto", "device", "offload", "cpu")] == \
        ["device", "device", "cpu", "cpu"]
    assert gradient_mod.resolve_accumulation(w, torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="^accumulate_on='cuda:7'"):
        gradient_mod.resolve_accumulation([torch.zeros(2, 2)], "cuda:7")


# -- each SVD method against float64 ---------------------------------------------------------------
def test_official_is_svd_lowrank_of_the_reference_recipe_bit_for_bit(grads):
    name, G = next(iter(grads.items()))
    with torch.random.fork_rng():
        torch.manual_seed(streams.stream_seed(0, "llm/svd_sketch"))
        U, S, V = torch.svd_lowrank(-G, q=min(512, *G.shape), niter=16)
    got = top_r({name: G}, R, "official")[name]
    for have, want in zip(got, (U[:, :R], S[:R], V[:, :R])):
        assert torch.equal(have, want)
    A, B = lora_one_factors(G, R, svd="official")
    A2, B2 = adapter_factors(U, S, V, R)
    assert torch.equal(A, A2) and torch.equal(B, B2)


@pytest.mark.parametrize("method", SVD_METHODS)
def test_each_method_matches_float64_exact_within_wedins_bound(grads, method):
    """official (q = 512 ≥ n) and randomized with q ≥ n are exact algorithms: only round-off is left."""
    got = top_r(grads, R, method, oversample=64)  # randomized: q = r + 64 ≥ every dimension here
    for name, G in grads.items():
        U, S, V = _exact64(G, R)
        tol = _roundoff_sin(G, R)
        assert float(sin_theta(U[:, :R], got[name][0].double())) <= tol, (method, name)
        assert float(sin_theta(V[:, :R], got[name][2].double())) <= tol, (method, name)
        assert float((got[name][1].double() - S[:R]).abs().max()) <= 10 * math.sqrt(max(G.shape)) * EPS32 * float(S[0])


def test_randomized_converges_at_the_power_iteration_rate():
    """On M = U diag(ρ^i) Vᵀ the range finder's error after t power iterations is of order
    (σ_{q+1}/σ_r)^{2t+1} (Halko et al. 2011, Cor. 10.10): with q = r + 8 and ρ = 0.9 that is
    0.39^33 ≈ 3e-14 for t = 16, so only round-off is left; t = 0 (a mutation: power iterations
    ignored) leaves an error of order 0.39, far above the t = 16 bound."""
    g = torch.Generator().manual_seed(5)
    m, n, r, q = 120, 90, 6, 14
    U, _ = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    sigma = 0.9 ** torch.arange(n, dtype=torch.float64)
    M = ((U * sigma) @ V.T).float()
    bound = 10 * math.sqrt(n) * EPS32 / float(sigma[r - 1] - sigma[r]) + 10 * float(sigma[q] / sigma[r - 1]) ** 33
    errors = {}
    for t in (16, 0):
        Uh, _, Vh = randomized_top_r(M.unsqueeze(0), r, q, t)
        errors[t] = max(float(sin_theta(U[:, :r], Uh[0].double())), float(sin_theta(V[:, :r], Vh[0].double())))
    assert errors[16] <= bound
    assert errors[0] > 100 * bound  # the check above could fail: without power iterations it would


def test_batched_layers_equal_one_at_a_time(grads):
    """Stacking same-shape layers changes only the GEMM blocking: round-off, never the result."""
    for method in ("exact", "randomized"):
        batched, single = top_r(grads, R, method), top_r(grads, R, method, chunk_bytes=1)
        for name, G in grads.items():
            tol = _roundoff_sin(G, R)
            for i in (0, 2):
                assert float(sin_theta(single[name][i].double(), batched[name][i].double())) <= 2 * tol


# -- the single-pass sketch ------------------------------------------------------------------------
def test_sketches_are_the_sketches_of_the_formed_gradient(grads):
    """Y = GΩ and Z = ΨG, up to fp32 summation. An entry of Y sums, over the tokens, δ times a dot
    product of length in (and likewise Z), so ‖error‖ ≤ γ_n·‖|Δ|ᵀ|X||Ω|‖ with n = tokens + in (+ out
    for the formed G's own rounding), γ_n = n·ε32; |G| stands in for Σ_t|δ_t||x_t|ᵀ ≥ |G|."""
    model = tiny_llama(0)
    sketches = one_step_sketches(model, _batches(), q=8)
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())
    tokens = sum(b["input_ids"].numel() for b in _batches())
    for name, G in grads.items():
        sk = sketches[name]
        n = tokens + sum(G.shape)
        assert float(torch.linalg.matrix_norm(sk.Y - G @ sk.omega)) <= n * EPS32 * float(
            torch.linalg.matrix_norm(G.abs() @ sk.omega.abs()))
        assert float(torch.linalg.matrix_norm(sk.Z - sk.psi @ G)) <= n * EPS32 * float(
            torch.linalg.matrix_norm(sk.psi.abs() @ G.abs()))


def test_a_bf16_model_is_sketched_and_summed_in_fp32():
    """bf16 activations, fp32 sums: the sketch of a bf16 model against its formed gradient. Autograd
    rounds each batch's weight gradient to bf16 (relative 2⁻⁹ per entry, 3 batches), the sketch does
    not, so they differ by at most 3·2⁻⁹·‖|G||Ω|‖ plus fp32 round-off; an fp32 G would agree to 1e-6."""
    model = tiny_llama(0).to(torch.bfloat16)
    G = one_step_gradients(model, _batches(), accumulate_on="device")
    assert all(g.dtype == torch.float32 for g in G.values())
    sketches = one_step_sketches(model, _batches(), q=8)
    for name, g in G.items():
        sk = sketches[name]
        bound = 3 * 2.0**-9 * float(torch.linalg.matrix_norm(g.abs() @ sk.omega.abs()))
        assert float(torch.linalg.matrix_norm(sk.Y - g @ sk.omega)) <= bound, name


# -- the causal LM's loss backpropagated through its head in chunks ---------------------------------
def _masked_batches(n=3, rows=2, seq=10, seed=1):
    """Batches whose labels drop a prompt and a padding tail (−100), so that the shift, the kept-token
    count and the mask all shape the gradient."""
    out = []
    for b in _batches(n, rows, seq, seed):
        labels = b["labels"].clone()
        labels[0, :3] = labels[1, 7:] = -100
        out.append({**b, "labels": labels, "attention_mask": torch.ones_like(labels)})
    return out


def _cross_entropy(shift: bool):
    """A loss_fn independent of transformers' ForCausalLMLoss: mean next-token (or, unshifted, same-token)
    cross-entropy over the kept labels, in the model's precision."""
    def loss(out, batch):
        logits, labels = (out.logits[:, :-1], batch["labels"][:, 1:]) if shift else (out.logits, batch["labels"])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    return loss


def _rel(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)


def _tiny_causal_lm(model_type: str):
    """A random 2-layer causal LM of a listed type (CHUNKED_MODEL_TYPES), float64."""
    if model_type == "llama":
        return tiny_llama(0).double()
    import transformers

    prefix = {"mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[model_type]
    cfg = getattr(transformers, prefix + "Config")(vocab_size=259, hidden_size=32, intermediate_size=48,
                                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                   max_position_embeddings=512, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(streams.stream_seed(0, "llm/model"))
        return getattr(transformers, prefix + "ForCausalLM")(cfg).double().eval()


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "qwen3"])
def test_the_chunked_head_is_the_gradient_of_the_causal_lm_loss(monkeypatch, model_type):
    """float64 tiny model of each listed type, 3-token chunks (the 20 tokens of a batch end in a ragged chunk): the chunked
    head's gradient against the same model's output run through an independent cross-entropy. Both
    are exact formulas in float64 over ≤ 259 logits (259·ε64 = 2.9e-14), but one_step_gradients
    returns fp32 sums: each of the 3 batches' gradients is rounded to fp32 and added in fp32, so two
    float64 values a hair apart may land an ulp apart. Bound 6·ε32 of the largest entry. The unshifted
    loss, a different function, lies ≫ 1e3 × the bound away: the check can fail."""
    from lorasim.llm import head

    monkeypatch.setattr(head, "CHUNK_BYTES", 8 * 259 * 3)
    ran = []
    monkeypatch.setattr(gradient_mod, "backward_chunked", lambda m, b: (ran.append(1), head.backward_chunked(m, b)))
    model, batches = _tiny_causal_lm(model_type), _masked_batches()
    assert model.config.model_type in head.CHUNKED_MODEL_TYPES
    chunked = one_step_gradients(model, batches, accumulate_on="cpu")
    assert len(ran) == len(batches)
    reference = one_step_gradients(model, batches, accumulate_on="cpu", loss_fn=_cross_entropy(shift=True))
    assert _rel(chunked, reference) <= 6 * EPS32
    assert _rel(one_step_gradients(model, batches, accumulate_on="cpu", loss_fn=_cross_entropy(shift=False)),
                reference) > 1e3 * 6 * EPS32
    # transformers' own loss rounds an fp64 model's logits to fp32 (.float()): agreement to fp32's
    # softmax round-off, (V + 2)·ε32 of the largest entry
    transformers_loss = one_step_gradients(model, batches, accumulate_on="cpu", loss_fn=lambda out, b: out.loss)
    assert _rel(transformers_loss, reference) <= (259 + 2) * EPS32


def test_the_chunked_head_on_a_bf16_model_is_as_accurate_as_transformers_loss(monkeypatch):
    """bf16 tiny Llama, 3-token chunks: both paths against the float64 gradient of the same weights.
    Both run the backbone in bf16; the chunked head keeps its softmax in fp32 and rounds ∂L/∂logits
    to bf16 as transformers' backward does, so its error may not exceed twice transformers' own."""
    from lorasim.llm import head

    monkeypatch.setattr(head, "CHUNK_BYTES", 4 * 259 * 3)
    model, batches = tiny_llama(0).to(torch.bfloat16), _masked_batches()
    exact = one_step_gradients(tiny_llama(0).to(torch.bfloat16).double(), batches, accumulate_on="cpu",
                               loss_fn=_cross_entropy(shift=True))
    chunked = one_step_gradients(model, batches, accumulate_on="cpu")
    theirs = one_step_gradients(model, batches, accumulate_on="cpu", loss_fn=lambda out, b: out.loss)
    assert all(g.dtype == torch.float32 for g in chunked.values())
    assert _rel(chunked, exact) <= 2 * _rel(theirs, exact)


def test_the_chunked_head_is_taken_only_where_it_is_the_models_loss():
    """Only a listed causal LM with labels and a frozen linear head; any other model runs model(**batch)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lorasim.llm.head import chunked_head_applies

    model, batch = tiny_llama(0), _batches(1)[0]
    for p in model.parameters():
        p.requires_grad_(False)
    assert chunked_head_applies(model, batch)
    assert not chunked_head_applies(model, {"input_ids": batch["input_ids"]})
    model.lm_head.weight.requires_grad_(True)
    assert not chunked_head_applies(model, batch)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=259, n_embd=32, n_layer=1, n_head=4, n_positions=64))
    for p in gpt2.parameters():
        p.requires_grad_(False)
    assert not chunked_head_applies(gpt2, batch)

@pytest.mark.parametrize("passes", [1, 2, 4])
def test_the_sketch_is_exact_when_q_reaches_the_rank(passes):
    """One batch of 1 × 6 tokens: every layer's gradient has rank ≤ 6 ≤ q = 8, so the sketch (single
    pass, or the range finder through the data) recovers G's top-r triplets to round-off."""
    model, batches = tiny_llama(0), _batches(n=1, rows=1, seq=6)
    G = one_step_gradients(model, batches)
    got = sketched_top_r(model, batches, 3, q=8, passes=passes)
    tokens = sum(b["input_ids"].numel() for b in batches)
    for name, g in G.items():
        U, S, V = _exact64(g, 3)
        # the fp32 sums' error (n·ε32·σ1, n = tokens + out + in, as in the sums' test) over the gap (Wedin)
        tol = (tokens + sum(g.shape)) * EPS32 * float(S[0] / (S[2] - S[3]))
        assert float(sin_theta(U[:, :3], got[name][0].double())) <= tol, name
        assert float(sin_theta(V[:, :3], got[name][2].double())) <= tol, name


def test_refused_sketch_settings():
    model, batches = tiny_llama(0), _batches(n=1)
    with pytest.raises(ValueError, match="^r=3"):
        sketch_top_r(one_step_sketches(model, batches, q=2), 3)
    with pytest.raises(ValueError, match="^passes=3"):
        sketched_top_r(model, batches, 2, q=4, passes=3)
    with pytest.raises(ValueError, match="^q=0"):
        sketched_top_r(model, batches, 2, q=0)


def _range_finder64(G: torch.Tensor, omega: torch.Tensor, t: int, r: int) -> tuple:
    """The same algorithm on the formed gradient, in float64: t power iterations from Ω, then Ĝ = QQᵀG."""
    M, P = G.double(), omega.double()
    for _ in range(t):
        P = torch.linalg.qr(M.T @ torch.linalg.qr(M @ P).Q).Q
    Q = torch.linalg.qr(M @ P).Q
    Uc, S, Vh = torch.linalg.svd((M.T @ Q).T, full_matrices=False)
    return -(Q @ Uc[:, :r]), S, Vh[:r].T


def test_multi_pass_sketch_is_the_range_finder_run_through_the_data(grads):
    """passes = 2(t+1) equals the float64 range finder with t power iterations on the formed G, from
    the same Ω, up to the sums' round-off (10·√n·ε32, n = tokens × inner dimension) amplified by
    σ1/(σ_r − σ_{r+1}) of Ĝ (Wedin). q = 8 < rank(G), so the result depends on t: the same check
    against the other t fails (shown below), i.e. it could catch a pass skipped or run on the wrong side."""
    model, q, r = tiny_llama(0), 8, 3
    tokens = sum(b["input_ids"].numel() for b in _batches())
    got = {p: sketched_top_r(model, _batches(), r, q=q, passes=p) for p in (2, 4)}
    caught = 0
    for name, G in grads.items():
        omega = sketch_matrices(*G.shape, "cpu", q, 0)[0]
        for passes, t in ((2, 0), (4, 1)):
            U, S, V = _range_finder64(G, omega, t, r)
            tol = 10 * math.sqrt(tokens * max(G.shape)) * EPS32 * float(S[0] / (S[r - 1] - S[r]))
            assert float(sin_theta(U, got[passes][name][0].double())) <= tol, (name, passes)
            assert float(sin_theta(V, got[passes][name][2].double())) <= tol, (name, passes)
            wrong_t = got[6 - passes][name][0].double()
            caught += float(sin_theta(U, wrong_t)) > tol
    assert caught == 2 * len(grads)


def test_every_lora_one_factorisation_is_the_one_its_config_names(monkeypatch):
    """methods.lora_one_spectra gives, bit for bit, what the direct call with the config's settings
    gives (so a dropped setting would show), the sketch without ever forming a gradient; and each
    builds a peft model that trains."""
    from lorasim.config import ConfigError
    from lorasim.llm import methods
    from lorasim.llm.methods import MethodConfig, prepare

    batches = _batches(n=2)
    G = one_step_gradients(tiny_llama(0), batches)
    for svd in SVD_METHODS:
        cfg = MethodConfig(name="lora_one", r=2, svd=svd, svd_q=20, svd_niter=3, svd_oversample=5)
        got, want = methods.lora_one_spectra(cfg, tiny_llama(0), batches), top_r(G, 2, svd, 20, 3, 5)
        assert all(torch.equal(a, b) for n in G for a, b in zip(got[n], want[n])), svd
    cfg = MethodConfig(name="lora_one", r=2, svd="sketch", sketch_q=6, sketch_passes=2)
    want = sketched_top_r(tiny_llama(0), batches, 2, q=6, passes=2)
    with monkeypatch.context() as m:
        m.setattr(methods, "one_step_gradients", lambda *a, **k: pytest.fail("the sketch formed a gradient"))
        got = methods.lora_one_spectra(cfg, tiny_llama(0), batches)
    assert all(torch.equal(a, b) for n in want for a, b in zip(got[n], want[n]))
    for svd in (*SVD_METHODS, "sketch"):
        model, opt = prepare(MethodConfig(name="lora_one", r=2, svd=svd), tiny_llama(0), batches)
        model(**_batches(n=1)[0]).loss.backward()
        opt.step()
        lora_B = [p for n, p in model.named_parameters() if "lora_B" in n]
        assert lora_B and all(float(p.detach().abs().sum()) > 0 for p in lora_B), svd
    with pytest.raises(ConfigError, match=r"^method\.svd='qr'"):
        MethodConfig(name="lora_one", svd="qr")
    with pytest.raises(ConfigError, match=r"^method\.accumulate_on='gpu'"):
        MethodConfig(name="lora_one", accumulate_on="gpu")


def test_a_layer_off_the_embeddings_path_is_still_sketched():
    """A target layer fed by a learned input (not from the embeddings): its output gets a graph of
    its own, so its sketch is that of its formed gradient, not zero."""
    class Prefixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_llama(0)
            self.prefix = torch.nn.Parameter(torch.randn(4, 32, generator=torch.Generator().manual_seed(1)))
            self.side = torch.nn.Linear(32, 32)

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, **batch):
            out = self.inner(**batch)
            out.loss = out.loss + self.side(self.prefix).pow(2).mean()
            return out

    model = Prefixed()
    G = one_step_gradients(model, _batches(n=1), targets=["side"])
    sk = one_step_sketches(model, _batches(n=1), targets=["side"], q=8)["side"]
    assert float(G["side"].abs().max()) > 0
    torch.testing.assert_close(sk.Y, G["side"] @ sk.omega, rtol=1e-5, atol=1e-6 * float(G["side"].abs().max()))


def test_randomized_falls_back_to_householder_on_a_rank_deficient_range():
    """A batch of a rank-3 matrix and a zero one (a layer that got no gradient): the zero layer's
    range Gram is singular, CholeskyQR2 fails, and the finder reruns with Householder QR. Both
    results are then finite and the rank-3 triplets exact; without the fallback the zero layer's
    factors are NaN (checked below on the Cholesky path alone)."""
    g = torch.Generator().manual_seed(2)
    M = (torch.randn(40, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 30, generator=g, dtype=torch.float64))
    U, S, V = randomized_top_r(torch.stack([M.float(), torch.zeros(40, 30)]), 3, 8, 2)
    assert torch.isfinite(U).all() and torch.isfinite(S).all() and torch.isfinite(V).all()
    assert float(S[1].abs().max()) == 0.0
    U0, S0, Vh0 = torch.linalg.svd(M)
    tol = 10 * math.sqrt(40) * EPS32 * float(S0[0] / S0[2])
    assert float(sin_theta(U0[:, :3], U[0].double())) <= tol and float(sin_theta(Vh0[:3].T, V[0].double())) <= tol
    L, info = torch.linalg.cholesky_ex(torch.zeros(8, 8, dtype=torch.float64))
    assert int(info) != 0 and not torch.isfinite(torch.linalg.solve_triangular(L, torch.ones(8, 40, dtype=torch.float64),
                                                                                upper=False)).all()


def test_the_bench_measures_every_stage_and_writes_its_table(tmp_path, capsys):
    """lorasim-llm-bench on a tiny random Llama (its numbers are not checked here, its rows are):
    every stage finishes, the plain passes are the unit, and the factorisations carry accuracy columns."""
    import pandas as pd

    from lorasim.llm.bench import main

    main(["--models", "tiny", "--device", "cpu", "--batches", "2", "--batch-size", "1", "--seq", "8", "--r", "2",
          "--sketch-q", "4", "--sketch-passes", "1", "2", "--inits", "lora", "lora_one", "lora_one:sketch",
          "--out", str(tmp_path / "t_")])
    table = pd.read_csv(tmp_path / "t_llm_bench.csv")
    assert (table["status"] == "ok").all()
    assert list(table["stage"]) == ["plain passes", "target passes", "gradient cpu", "reference (fp64 exact)",
                                    "svd official", "svd exact", "svd randomized", "sketch q=4 passes=1",
                                    "sketch q=4 passes=2", "init lora", "init lora_one (randomized)",
                                    "init lora_one (randomized): gradient + svd", "init lora_one:sketch",
                                    "init lora_one:sketch: gradient + svd"]
    part = table["stage"].str.endswith(": gradient + svd")  # timed inside the init above it; no CPU peak
    assert table["x_plain"].iloc[0] == 1.0 and (table["seconds"] > 0).all() and (table["peak_gib"][~part] > 0).all()
    whole = table["seconds"].shift(1)[part]
    assert (table["seconds"][part] < whole).all()
    scored = table[table["stage"].str.startswith(("svd o", "svd r", "sketch"))]
    assert scored[["sin_U", "sin_V", "sin_median", "rel_err"]].notna().all().all()
    assert "init lora_one:sketch" in capsys.readouterr().out


def test_the_bench_skips_a_shapes_slow_stages_unless_named(tmp_path, monkeypatch):
    """SLOW_AT's stages are skipped by default for their shape, and run when the flags name them."""
    import pandas as pd

    from lorasim.llm import bench

    monkeypatch.setattr(bench, "SLOW_AT", {"tiny": {"svd", "pissa", "cpu"}})
    small = ["--models", "tiny", "--device", "cpu", "--batches", "1", "--batch-size", "1", "--seq", "8", "--r", "2",
             "--sketch-q", "4", "--sketch-passes", "1"]
    bench.main(small + ["--out", str(tmp_path / "a_")])
    stages = list(pd.read_csv(tmp_path / "a_llm_bench.csv")["stage"])
    assert not any(s.startswith(("svd", "reference", "gradient cpu", "init pissa")) for s in stages)
    assert "init lora_ga" in stages and "sketch q=4 passes=1" in stages
    bench.main(small + ["--only", "svd", "init", "--inits", "pissa", "--accumulate", "cpu", "--out", str(tmp_path / "b_")])
    stages = list(pd.read_csv(tmp_path / "b_llm_bench.csv")["stage"])
    assert {"svd exact", "gradient cpu", "init pissa"} <= set(stages)
