"""LoRA-One for peft models: factor each target layer's one-step gradient into its adapter.

In torch layout (W out × in, y = (W + s·lora_B·lora_A) x; the mapping to lorasim's paper layout
is lorasim/peft_convention.py) with grad = ∇_W L and [−grad]_r = U_r S_r V_rᵀ, the three variants
set balanced factors lora_B = c·U_r√S_r, lora_A = c·√S_r V_rᵀ, so that

    official  s·lora_B·lora_A = (s/γ)·[−grad]_r / σ_1     (c² = 1/(γσ_1); the official code, SPEC §6.2)
    readme    s·lora_B·lora_A = (s/γ)·[−grad]_r           (c² = 1/γ; the README's "step α_L/(γ√r)", §6.6)
    theory    s·lora_B·lora_A = ζ·[−grad]_r               (c² = ζ/s; the spectral init of §6.1)

The top-r triplets come from lorasim/llm/svd.py (``svd``: official = torch.svd_lowrank(−grad, q = 512,
niter = 16) as in the official code, exact, randomized) or, without forming the gradient, from
lorasim/llm/sketch.py. The base weights are not changed.

The reference LoRA-GA (``lora_ga_reference_factors`` / ``_peft``, SPEC §6.4) is its sibling here:
unit singular vectors of +G (top-r right, r+1..2r left), out^{1/4}/√γ on both, and its offset moved
into the base. Both go through ``peft_with_adapters``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.distributed as dist

from ..peft_convention import lora_scale
from .gradient import collective
from .svd import seeded_svd_lowrank, top_r

VARIANTS = ("official", "readme", "theory")


def adapter_factors(U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, r: int, lora_alpha: float = 16.0,
                    rslora: bool = True, gamma: float = 128.0, variant: str = "official",
                    zeta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A r × in, lora_B out × r), fp32, from the top singular triplets of −grad (U out × ≥r,
    S (≥r,) largest first, V in × ≥r), scaled by ``variant`` (module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: allowed one of {', '.join(VARIANTS)}")
    s = lora_scale(r, lora_alpha, rslora)
    c2 = {"official": 1.0 / (gamma * float(S[0])), "readme": 1.0 / gamma, "theory": zeta / s}[variant]
    root = torch.sqrt(S[:r].float()) * math.sqrt(c2)
    return (root[:, None] * V[:, :r].float().T).contiguous(), (U[:, :r].float() * root).contiguous()


def lora_one_factors(grad: torch.Tensor, r: int, lora_alpha: float = 16.0, rslora: bool = True,
                     gamma: float = 128.0, variant: str = "official", zeta: float = 1.0, q: int = 512,
                     niter: int = 16, seed: int = 0, svd: str = "official",
                     oversample: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A r × in, lora_B out × r), fp32, for one layer's gradient ``grad`` (out × in); ``svd``
    and its settings as in lorasim.llm.svd.top_r."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: allowed one of {', '.join(VARIANTS)}")
    U, S, V = top_r({"": grad}, r, svd, q, niter, oversample, seed)[""]
    return adapter_factors(U, S, V, r, lora_alpha, rslora, gamma, variant, zeta)


def lora_one_model(model: torch.nn.Module, gradients: dict[str, torch.Tensor], r: int, lora_alpha: float = 16.0,
                   rslora: bool = True, gamma: float = 128.0, variant: str = "official", zeta: float = 1.0,
                   q: int = 512, niter: int = 16, seed: int = 0, lora_dropout: float = 0.0,
                   target_modules: Optional[Union[str, Sequence[str]]] = None, task_type: Optional[str] = None,
                   svd: str = "official", oversample: int = 8):
    """A peft model (LoraConfig + get_peft_model) whose adapters are LoRA-One's for ``gradients``
    ({module name: grad}, from ``one_step_gradients`` on the same model), factorised by ``svd``
    (lorasim.llm.svd.top_r). Adapters are fp32."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: allowed one of {', '.join(VARIANTS)}")
    spectra = top_r(gradients, r, svd, q, niter, oversample, seed, device=next(model.parameters()).device)
    return lora_one_peft(model, spectra, r, lora_alpha, rslora, gamma, variant, zeta, lora_dropout, target_modules,
                         task_type)


def lora_one_peft(model: torch.nn.Module, spectra: dict[str, tuple], r: int, lora_alpha: float = 16.0,
                  rslora: bool = True, gamma: float = 128.0, variant: str = "official", zeta: float = 1.0,
                  lora_dropout: float = 0.0, target_modules: Optional[Union[str, Sequence[str]]] = None,
                  task_type: Optional[str] = None):
    """The peft model of ``lora_one_model`` from the top triplets of each layer's −G ({module name:
    (U, S, V)}, from lorasim.llm.svd.top_r or lorasim.llm.sketch.sketch_top_r)."""
    factors = {name: adapter_factors(*spectrum, r, lora_alpha, rslora, gamma, variant, zeta)
               for name, spectrum in spectra.items()}
    return peft_with_adapters(model, factors, r, lora_alpha, rslora, lora_dropout, target_modules, task_type)


def lora_ga_reference_factors(grad: torch.Tensor, r: int, gamma: float = 16.0, seed: int = 0) -> tuple:
    """(lora_A r × in, lora_B out × r), fp32: the reference LoRA-GA init (Outsider565/LoRA-GA, SPEC §6.4)
    for one layer's gradient. svd_lowrank(+G, q = 4r, niter = 4), no negation; ArB2r: lora_A = the
    top-r right singular vectors (Vᵀ), lora_B = the left ones r+1..2r, unit vectors without singular
    values; "stable" scaling multiplies both by out^{1/4}/√γ. (peft's LoRA-GA differs: it keeps
    lora_B's singular values and scales lora_B alone.)"""
    out_dim, in_dim = grad.shape
    if not (isinstance(r, int) and 1 <= r and 2 * r <= min(out_dim, in_dim)):
        raise ValueError(f"r={r!r}: allowed an integer in [1, {min(out_dim, in_dim) // 2}] (ArB2r takes 2r "
                         "singular vectors)")
    U, _, V = seeded_svd_lowrank(grad.float(), min(4 * r, out_dim, in_dim), 4, seed, "llm/loraga_sketch")
    scale = out_dim ** 0.25 / math.sqrt(gamma)
    return (V[:, :r].T * scale).contiguous(), (U[:, r:2 * r] * scale).contiguous()


def lora_ga_reference_peft(model: torch.nn.Module, gradients: dict[str, torch.Tensor], r: int,
                           lora_alpha: float = 16.0, rslora: bool = True, gamma: float = 16.0, seed: int = 0,
                           lora_dropout: float = 0.0, target_modules=None, task_type: Optional[str] = None):
    """The peft model of the reference LoRA-GA (``lora_ga_reference_factors`` per layer), with its
    offset moved into the base: W0 ← W0 − s·lora_B·lora_A, so the model's output is unchanged at t = 0."""
    factors = {name: lora_ga_reference_factors(g, r, gamma, seed) for name, g in gradients.items()}
    return peft_with_adapters(model, factors, r, lora_alpha, rslora, lora_dropout, target_modules, task_type,
                              subtract=True)


def peft_with_adapters(model: torch.nn.Module, factors: dict[str, tuple], r: int, lora_alpha: float = 16.0,
                       rslora: bool = True, lora_dropout: float = 0.0,
                       target_modules: Optional[Union[str, Sequence[str]]] = None, task_type: Optional[str] = None,
                       subtract: bool = False):
    """get_peft_model with each adapted layer's (lora_A, lora_B) set from ``factors`` ({module name:
    (lora_A, lora_B)}); ``subtract``: the base weight becomes W0 − s·lora_B·lora_A."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=lora_alpha, use_rslora=rslora, lora_dropout=lora_dropout, task_type=task_type,
                        target_modules=list(target_modules) if target_modules is not None else sorted(factors))
    peft_model = get_peft_model(model, config)
    adapted = {name: mod for name, mod in peft_model.base_model.model.named_modules() if hasattr(mod, "lora_A")}
    missing = sorted(set(adapted) - set(factors)) + sorted(set(factors) - set(adapted))
    if missing:
        raise ValueError(f"gradients: {missing[0]!r} is not both adapted and given a gradient; allowed the same "
                         "set of modules as target_modules selects")
    weights = []
    for name, mod in adapted.items():
        A, B = factors[name]
        with torch.no_grad():
            for factor, w in ((A, mod.lora_A["default"].weight), (B, mod.lora_B["default"].weight)):
                w.copy_(factor.to(w))
                weights.append(w.data)
            if subtract:
                base = mod.get_base_layer().weight
                offset = mod.scaling["default"] * (B.to(device=base.device, dtype=torch.float32)
                                                   @ A.to(device=base.device, dtype=torch.float32))
                base.copy_((base.float() - offset).to(base.dtype))
                weights.append(base.data)
    # Under torch.distributed every rank takes rank 0's factors: the gradients are already equal
    # (all-reduced), and this makes the adapters bitwise equal whatever each rank's SVD rounding.
    collective(weights, lambda buf: dist.broadcast(buf, src=0))
    return peft_model
