"""LoRA-One for peft models: factor each target layer's one-step gradient into its adapter.

In torch layout (W out × in, y = (W + s·lora_B·lora_A) x; the mapping to lorasim's paper layout
is lorasim/peft_convention.py) with grad = ∇_W L and [−grad]_r = U_r S_r V_rᵀ, the three variants
set balanced factors lora_B = c·U_r√S_r, lora_A = c·√S_r V_rᵀ, so that

    official  s·lora_B·lora_A = (s/γ)·[−grad]_r / σ_1     (c² = 1/(γσ_1); the official code, SPEC §6.2)
    readme    s·lora_B·lora_A = (s/γ)·[−grad]_r           (c² = 1/γ; the README's "step α_L/(γ√r)", §6.6)
    theory    s·lora_B·lora_A = ζ·[−grad]_r               (c² = ζ/s; the spectral init of §6.1)

The SVD is torch.svd_lowrank(−grad, q, niter) as in the official code (q = 512, niter = 16),
exact when q ≥ min(out, in). The base weights are not changed.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.distributed as dist

from .. import streams
from ..peft_convention import lora_scale
from .gradient import collective

VARIANTS = ("official", "readme", "theory")


def lora_one_factors(grad: torch.Tensor, r: int, lora_alpha: float = 16.0, rslora: bool = True,
                     gamma: float = 128.0, variant: str = "official", zeta: float = 1.0, q: int = 512,
                     niter: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A r × in, lora_B out × r), fp32, for one layer's gradient ``grad`` (out × in)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: allowed one of {', '.join(VARIANTS)}")
    out_dim, in_dim = grad.shape
    if not (isinstance(r, int) and 1 <= r <= min(out_dim, in_dim)):
        raise ValueError(f"r={r!r}: allowed an integer in [1, {min(out_dim, in_dim)}]")
    q = min(max(q, r), out_dim, in_dim)
    devices = [grad.device] if grad.is_cuda else []
    with torch.random.fork_rng(devices=devices):  # svd_lowrank draws its test matrix from the global RNG
        torch.manual_seed(streams.stream_seed(seed, "llm/svd_sketch"))
        U, S, V = torch.svd_lowrank(-grad.float(), q=q, niter=niter)
    s = lora_scale(r, lora_alpha, rslora)
    c2 = {"official": 1.0 / (gamma * float(S[0])), "readme": 1.0 / gamma, "theory": zeta / s}[variant]
    root = torch.sqrt(S[:r]) * math.sqrt(c2)
    return (root[:, None] * V[:, :r].T).contiguous(), (U[:, :r] * root).contiguous()


def lora_one_model(model: torch.nn.Module, gradients: dict[str, torch.Tensor], r: int, lora_alpha: float = 16.0,
                   rslora: bool = True, gamma: float = 128.0, variant: str = "official", zeta: float = 1.0,
                   q: int = 512, niter: int = 16, seed: int = 0, lora_dropout: float = 0.0,
                   target_modules: Optional[Union[str, Sequence[str]]] = None, task_type: Optional[str] = None):
    """A peft model (LoraConfig + get_peft_model) whose adapters are LoRA-One's for ``gradients``
    ({module name: grad}, from ``one_step_gradients`` on the same model). Adapters are fp32."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=lora_alpha, use_rslora=rslora, lora_dropout=lora_dropout, task_type=task_type,
                        target_modules=list(target_modules) if target_modules is not None else sorted(gradients))
    peft_model = get_peft_model(model, config)
    adapted = {name: mod for name, mod in peft_model.base_model.model.named_modules() if hasattr(mod, "lora_A")}
    missing = sorted(set(adapted) - set(gradients)) + sorted(set(gradients) - set(adapted))
    if missing:
        raise ValueError(f"gradients: {missing[0]!r} is not both adapted and given a gradient; allowed the same "
                         "set of modules as target_modules selects")
    weights = []
    for name, mod in adapted.items():
        A, B = lora_one_factors(gradients[name], r, lora_alpha, rslora, gamma, variant, zeta, q, niter, seed)
        with torch.no_grad():
            for factor, w in ((A, mod.lora_A["default"].weight), (B, mod.lora_B["default"].weight)):
                w.copy_(factor.to(w))
                weights.append(w.data)
    # Under torch.distributed every rank takes rank 0's factors: the gradients are already equal
    # (all-reduced), and this makes the adapters bitwise equal whatever each rank's SVD rounding.
    collective(weights, lambda buf: dist.broadcast(buf, src=0))
    return peft_model
