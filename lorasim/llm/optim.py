"""Scaled AdamW / SGD for peft LoRA pairs: LoRA-One "with preconditioners" (SPEC §6.3).

For each pair (lora_A r×in, lora_B out×r) the gradients are transformed by damped r×r Grams,

    g_A ← (lora_Bᵀ lora_B + λI)⁻¹ g_A,        g_B ← g_B (lora_A lora_Aᵀ + λI)⁻¹,

which in paper layout (lorasim/peft_convention.py: A ∝ lora_Aᵀ, B ∝ lora_Bᵀ) is ScaledGD(λ)'s
∇_A (BBᵀ + λI)⁻¹ and (AᵀA + λI)⁻¹ ∇_B: lorasim.solvers' ``precondition`` transform, whose explicit
inverses are used here, with lorasim.solvers' ``adam_direction`` as the Adam (tests check the two
paths agree). The r×r inverses of all layers are taken in one batched call per side (per rank, if ranks differ):
a model has hundreds of LoRA layers, and one small solve each costs a launch (and on CUDA, with
MAGMA, a host round trip) apiece. The base rule (AdamW or SGD) then runs on the transformed gradient
(``precondition="before"``: LoRA-One's AdamWr and peft's create_riemannian_optimizer), or on the raw
gradient with its step transformed (``"after"``).

``order="gauss_seidel"`` (the default: the official AdamWr, SPEC §6.3 b) updates every lora_A first
and builds lora_B's Gram from the updated lora_A; ``"simultaneous"`` (theory, peft's
create_riemannian_optimizer, pilancilab SGDr) builds both Grams from the pre-step pair. The
defaults are the official AdamWr's throughout: inv, λ = 1e-6, no Adam bias correction. Parameters that are not in a LoRA pair (a classifier head,
DoRA's magnitude) take the base rule unchanged.

It is a plain ``torch.optim.Optimizer``: use it in a loop, or hand it to the HF Trainer through
``Trainer(optimizers=(optimizer, scheduler))``.
"""
from __future__ import annotations

from typing import Iterable

import torch

from ..config import fail
from ..solvers import adam_direction, precondition

BASES = ("adamw", "sgd")
_precondition = precondition  # the transform; ``precondition`` is also this optimizer's before/after keyword


def lora_pairs(named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> list[tuple[str, str]]:
    """(lora_A name, lora_B name) for every trainable 2-D peft pair, matched as peft does (".lora_A." ↔ ".lora_B.")."""
    params = dict(named_parameters)
    pairs = []
    for name, p in params.items():
        partner = params.get(name.replace(".lora_A.", ".lora_B.")) if ".lora_A." in name else None
        if partner is not None and p.ndim == partner.ndim == 2 and p.requires_grad and partner.requires_grad:
            pairs.append((name, name.replace(".lora_A.", ".lora_B.")))
    return pairs


class ScaledLoRAOptimizer(torch.optim.Optimizer):
    """AdamW or SGD whose LoRA-pair gradients are preconditioned (see the module docstring).

    AdamW's bias correction is the textbook m̂/(√v̂ + ε) (torch.optim.AdamW's); off, the step is
    m/(√v + ε) as in the official AdamWr (correct_bias=False). Weight decay is decoupled. SGD takes
    an optional heavy-ball ``momentum``.
    """

    def __init__(self, named_parameters, lr: float, base: str = "adamw", damping: float = 1e-6,
                 order: str = "gauss_seidel", inverse: str = "inv", precondition: str = "before",
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bias_correction: bool = False, momentum: float = 0.0):
        named = [(n, p) for n, p in named_parameters if p.requires_grad]
        checks = {"base": (base, BASES), "order": (order, ("simultaneous", "gauss_seidel")),
                  "inverse": (inverse, ("inv", "pinv")), "precondition": (precondition, ("before", "after"))}
        for field, (value, allowed) in checks.items():
            if value not in allowed:
                fail("optimizer", field, value, "one of " + ", ".join(allowed))
        for field, value in {"lr": lr, "damping": damping, "eps": eps, "weight_decay": weight_decay,
                             "momentum": momentum}.items():
            if not (isinstance(value, (int, float)) and value >= 0):
                fail("optimizer", field, value, "a number ≥ 0")
        if not named:
            fail("optimizer", "named_parameters", "[]", "at least one trainable parameter")
        by_name = dict(named)
        pairs = lora_pairs(named)
        paired = {n for pair in pairs for n in pair}
        super().__init__([p for _, p in named], dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                                     momentum=momentum))
        self.base, self.order, self.bias_correction = base, order, bias_correction
        self.before = precondition == "before"
        self.preconditioner = _precondition(damping, inverse)
        self.pairs = [(by_name[a], by_name[b]) for a, b in pairs]
        self.unpaired = [p for n, p in named if n not in paired]
        self.group_of = {p: g for g in self.param_groups for p in g["params"]}

    def _inverses(self, grams: list) -> list:
        """(gram + λI)⁻¹ for each r×r Gram, batched per (size, device, dtype)."""
        out = [None] * len(grams)
        by_shape = {}
        for i, g in enumerate(grams):
            by_shape.setdefault((g.shape[-1], g.device, g.dtype), []).append(i)
        for idx in by_shape.values():
            inv = self.preconditioner.inverse_grams(torch.stack([grams[i] for i in idx]))
            for j, i in enumerate(idx):
                out[i] = inv[j]
        return out

    def _direction(self, p, g):
        group, state = self.group_of[p], self.state[p]
        if self.base == "sgd":
            if group["momentum"] == 0:
                return g
            buf = state.setdefault("momentum", torch.zeros_like(g))
            return buf.mul_(group["momentum"]).add_(g)
        if not state:
            state.update(t=0, m=torch.zeros_like(g), v=torch.zeros_like(g))
        state["t"] += 1
        return adam_direction(g, state["m"], state["v"], state["t"], *group["betas"], group["eps"], self.bias_correction)

    def _apply(self, p, d):
        group = self.group_of[p]
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(d, alpha=-group["lr"])

    def _update(self, p, g, precondition=None):
        """One base-rule step of p; ``precondition`` maps the gradient (before) or the step (after)."""
        if g is None:
            return
        if precondition is not None and self.before:
            g = precondition(g)
        d = self._direction(p, g)
        self._apply(p, d if precondition is None or self.before else precondition(d))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        inv_for_A = self._inverses([_hi(b).T @ _hi(b) for _, b in self.pairs])  # (lora_Bᵀlora_B + λI)⁻¹, pre-step
        inv_for_B = None if self.order == "gauss_seidel" else self._inverses([_hi(a) @ _hi(a).T for a, _ in self.pairs])
        for (lora_A, _), P in zip(self.pairs, inv_for_A):
            self._update(lora_A, lora_A.grad, lambda g, P=P: (P @ g.to(P.dtype)).to(g.dtype))
        if inv_for_B is None:  # Gauss–Seidel: lora_B's Gram from the updated lora_A
            inv_for_B = self._inverses([_hi(a) @ _hi(a).T for a, _ in self.pairs])
        for (_, lora_B), P in zip(self.pairs, inv_for_B):
            self._update(lora_B, lora_B.grad, lambda g, P=P: (g.to(P.dtype) @ P).to(g.dtype))
        for p in self.unpaired:
            self._update(p, p.grad)
        return loss


def _hi(x: torch.Tensor) -> torch.Tensor:
    """x in at least fp32: bf16 adapters get fp32 Grams and inverses."""
    return x.detach().to(torch.promote_types(x.dtype, torch.float32))


def scaled_optimizer(model: torch.nn.Module, lr: float, **kwargs) -> ScaledLoRAOptimizer:
    """``ScaledLoRAOptimizer`` over the model's trainable parameters; it must hold at least one LoRA pair."""
    opt = ScaledLoRAOptimizer(model.named_parameters(), lr, **kwargs)
    if not opt.pairs:
        fail("optimizer", "model", type(model).__name__, "a peft model with trainable lora_A/lora_B pairs")
    return opt
