"""The one-step full-batch gradient of a model's target linear layers, with bounded memory.

G_W = (1/m) Σ_batches ∇_W loss(batch) for every target weight W (torch layout, out × in), the
quantity LoRA-One factorises (SPEC §4.3, §6.2 step 2). Only the target weights take gradients;
every other parameter is frozen for the pass. Each weight's gradient is moved off the device
and freed as soon as autograd has accumulated it (a post-accumulate hook), so the peak device
memory is the model, one micro-batch's activations and one target layer's gradient — not a
gradient for every parameter at once; the accumulators (fp32, one per target weight) live on
``accumulate_on`` (the CPU by default).

Under torch.distributed (torchrun, accelerate) each rank passes its own shard of the init batches;
the sums and the batch count are all-reduced, so every rank gets the mean over all ranks' batches —
the gradient one process would compute on their union — before any SVD.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import torch
import torch.distributed as dist

TASK_HEADS = ("classifier", "score", "lm_head")  # trained in full (peft modules_to_save), never adapted


def target_linear_names(model: torch.nn.Module, targets: Union[str, Sequence[str]] = "all-linear") -> list[str]:
    """Names of the nn.Linear modules LoRA adapts: every one except the output head or a task head
    ("all-linear": the official "all" preset, peft's "all-linear"), or those whose name ends with one
    of ``targets``."""
    out_head = getattr(model, "get_output_embeddings", lambda: None)()
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or mod is out_head or name.split(".")[-1] in TASK_HEADS:
            continue
        if targets == "all-linear" or any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise ValueError(f"targets={targets!r}: allowed 'all-linear' or module-name suffixes present in the model")
    return names


def one_step_gradients(model: torch.nn.Module, batches: Iterable[dict], targets: Union[str, Sequence[str]] = "all-linear",
                       accumulate_on: Union[str, torch.device] = "cpu",
                       loss_fn: Optional[callable] = None) -> dict[str, torch.Tensor]:
    """{module name: mean over ``batches`` of ∇_W loss} for the target linear layers (out × in, fp32).

    ``batches`` are keyword dicts for ``model(**batch)``; the loss is ``output.loss`` unless
    ``loss_fn(output, batch)`` is given. The model's ``requires_grad`` flags and training mode
    are restored afterwards.
    """
    weights = {name: model.get_submodule(name).weight for name in target_linear_names(model, targets)}
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    acc = {name: torch.zeros(w.shape, dtype=torch.float32, device=accumulate_on) for name, w in weights.items()}
    hooks = []

    def take(name):
        def hook(p):
            acc[name] += p.grad.detach().to(device=accumulate_on, dtype=torch.float32)
            p.grad = None  # freed at once: one target gradient on the device at a time
        return hook

    count = 0
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for name, w in weights.items():
            w.requires_grad_(True)
            hooks.append(w.register_post_accumulate_grad_hook(take(name)))
        model.eval()  # no dropout in the gradient estimate
        for count, batch in enumerate(batches, 1):
            out = model(**batch)
            (loss_fn(out, batch) if loss_fn is not None else out.loss).backward()
    finally:
        for h in hooks:
            h.remove()
        for p, f in flags.items():
            p.requires_grad_(f)
        model.train(was_training)
    total = torch.tensor([count], dtype=torch.int64)  # summed over the ranks with the accumulators
    collective([*acc.values(), total], lambda buf: dist.all_reduce(buf))
    count = int(total.item())
    if count == 0:
        raise ValueError("batches: allowed at least one batch")
    return {name: g / count for name, g in acc.items()}


def collective(tensors: Iterable[torch.Tensor], op) -> None:
    """``op(buf)``, a torch.distributed collective in place (all_reduce, broadcast), on each tensor in
    turn, where a default process group of more than one rank runs. NCCL works on CUDA tensors only,
    so CPU tensors travel through the rank's GPU one at a time."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for t in tensors:
        buf = t if comm is None or t.device == comm else t.to(comm)
        op(buf)
        if buf is not t:
            t.copy_(buf)
