"""A causal LM's next-token loss, backpropagated through its output head a chunk of tokens at a time.

The init's passes only need the gradient reaching the backbone. A transformers ``…ForCausalLM``
forms the logits of every token at once, upcasts them to fp32 and keeps log-softmax for the
backward: at Llama-3.2-1B's vocabulary (128 256) and 16 × 256 tokens that is 1 GiB of bf16 logits
and then 2 GiB fp32 buffers at the top of the backward, beside every layer's activations. On the
H200 it put device accumulation 0.8 GiB over a plain step; without it the init's peak fell by 5.3
GiB (benchmarks.md, "LLM init"). Here the backbone runs as usual and
the head's part of the backward is formed in closed form, chunk by chunk, then handed to autograd:

    ∂L/∂logits_t = (softmax(logits_t) − e_{y_t}) / n     for the n tokens t whose label is kept,
    ∂L/∂h_t      = bf16(∂L/∂logits_t) · W_head            (0 for ignored tokens),

the gradient of transformers' ForCausalLMLoss (labels shifted by one, ignore_index −100, the mean
over kept tokens, logits upcast to fp32; an fp64 model's stay fp64, where transformers rounds them
to fp32), with the head frozen as it is in every init. The extra memory is one chunk's logits
(CHUNK_BYTES). Only model types whose logits are exactly
``lm_head(last hidden state)`` take this path (no soft-capping or logit scaling); every other model,
and every custom ``loss_fn``, runs ``model(**batch)`` unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNKED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")  # logits = lm_head(hidden), loss = ForCausalLMLoss
CHUNK_BYTES = 1 << 28  # fp32 logits of one chunk of tokens
IGNORE_INDEX = -100


def chunked_head_applies(model: torch.nn.Module, batch: dict) -> bool:
    """Whether ``model``'s loss on ``batch`` is the one ``backward_chunked`` backpropagates: a causal
    LM of a listed type, with labels, and a frozen linear head (no head gradient is needed)."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    return (getattr(getattr(model, "config", None), "model_type", None) in CHUNKED_MODEL_TYPES
            and type(model).__name__.endswith("ForCausalLM") and "labels" in batch
            and isinstance(head, torch.nn.Linear) and not any(p.requires_grad for p in head.parameters()))


def backward_chunked(model: torch.nn.Module, batch: dict) -> None:
    """Backward of ``model(**batch).loss`` (module docstring) without the logits of all tokens at once."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.base_model(**inputs, use_cache=False).last_hidden_state
    head = model.get_output_embeddings()
    labels = F.pad(batch["labels"], (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(hidden.device)
    h = hidden.detach().reshape(-1, hidden.shape[-1])
    kept = labels != IGNORE_INDEX
    n = kept.sum()  # a tensor: no host sync; no kept token gives nan, as transformers' mean does
    grad = torch.empty_like(h)
    work = torch.promote_types(h.dtype, torch.float32)  # transformers' .float(), but an fp64 model stays fp64
    step = max(1, CHUNK_BYTES // (work.itemsize * head.out_features))
    with torch.no_grad():
        for s in range(0, h.shape[0], step):
            p = head(h[s:s + step]).to(work)
            p.sub_(p.logsumexp(-1, keepdim=True)).exp_()  # softmax, in place: one chunk buffer
            y, keep = labels[s:s + step], kept[s:s + step]
            p.scatter_add_(1, y.clamp_min(0)[:, None], -keep[:, None].to(p.dtype))
            p.mul_(keep[:, None].to(p.dtype) / n)
            grad[s:s + step] = p.to(h.dtype) @ head.weight
            del p
    hidden.backward(grad.view_as(hidden))
