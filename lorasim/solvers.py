"""Update rules for the adapter pair. A solver maps (A, B, ∇_A, ∇_B) to the next (A, B).

A solver is a base rule (plain step or Adam) on each factor, optionally composed
with the ScaledGD(λ) preconditioner, which only transforms gradients (optax style):

    ∇_A ↦ ∇_A (B Bᵀ + λI)⁻¹,        ∇_B ↦ (AᵀA + λI)⁻¹ ∇_B.

``order="simultaneous"`` (theory, peft, pilancilab SGDr) builds both preconditioners
from the old (A, B); ``"gauss_seidel"`` (LoRA-One's deleted AdamWr) builds B's from the
already-updated A. ``precondition="before"`` scales the gradient before Adam's moments
(AdamWr, peft); ``"after"`` scales Adam's step instead. For a plain step the two agree.

Names: gd, precgd (ScaledGD(λ)), adam, scaled_adam (Riemannian AdamW), full_ft (GD on
W itself, run as A = W − W0 with B = I_k frozen, so the same loop and metrics apply).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from .config import SolverConfig
from .linalg import Tensor, damped_gram_solve_right, mT


@dataclass
class Preconditioner:
    damping: float
    order: str = "simultaneous"
    inverse: str = "inv"
    shift: Optional[Tensor] = None  # added to both Grams; see damped_gram_solve_right

    def for_A(self, g: Tensor, B: Tensor) -> Tensor:
        return damped_gram_solve_right(g, B, self.damping, self.inverse, self.shift)

    def for_B(self, g: Tensor, A: Tensor) -> Tensor:
        return mT(damped_gram_solve_right(mT(g), mT(A), self.damping, self.inverse, self.shift))


@dataclass
class AdamMoments:
    m: Tensor
    v: Tensor


@dataclass
class SolverState:
    t: int = 0
    a: Optional[AdamMoments] = None
    b: Optional[AdamMoments] = None
    extra: dict = field(default_factory=dict)


class Solver:
    """One configured update rule; ``init`` then repeated ``step``."""

    def __init__(self, cfg: SolverConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.adam = cfg.name in ("adam", "scaled_adam")
        self.freeze_B = cfg.name == "full_ft"
        self.precond = (Preconditioner(cfg.damping, cfg.order, cfg.inverse)
                        if cfg.name in ("precgd", "scaled_adam") else None)
        self.set_lr(cfg.lr)

    def set_lr(self, lr) -> None:
        """A float, or a tensor broadcasting over the factors (per-run step sizes in a batch)."""
        self.lr_A = lr
        self.lr_B = None if self.freeze_B else lr * self.cfg.lr_ratio

    @property
    def step_dependent(self) -> bool:
        """Whether a step uses the step count t (Adam's bias correction): a captured CUDA graph
        would freeze t, so the batch engine then runs eagerly."""
        return self.adam and self.cfg.bias_correction

    def init(self, A: Tensor, B: Tensor) -> SolverState:
        if not self.adam:
            return SolverState()
        return SolverState(a=AdamMoments(torch.zeros_like(A), torch.zeros_like(A)),
                           b=AdamMoments(torch.zeros_like(B), torch.zeros_like(B)))

    def _direction(self, g: Tensor, moments: Optional[AdamMoments], t: int) -> Tensor:
        if moments is None:
            return g
        c = self.cfg
        moments.m.mul_(c.beta1).add_(g, alpha=1 - c.beta1)
        moments.v.mul_(c.beta2).addcmul_(g, g, value=1 - c.beta2)
        m, v = moments.m, moments.v
        if c.bias_correction:
            m = m / (1 - c.beta1**t)
            v = v / (1 - c.beta2**t)
        return m / (v.sqrt() + c.eps)

    def step(self, A: Tensor, B: Tensor, gA: Tensor, gB: Tensor, state: SolverState):
        state.t += 1
        P, before = self.precond, self.cfg.precondition != "after"
        if P is not None and before:
            gA = P.for_A(gA, B)
        dA = self._direction(gA, state.a, state.t)
        if P is not None and not before:
            dA = P.for_A(dA, B)
        A_next = A - self.lr_A * dA
        if self.freeze_B:
            return A_next, B
        A_for_B = A_next if P is not None and P.order == "gauss_seidel" else A
        if P is not None and before:
            gB = P.for_B(gB, A_for_B)
        dB = self._direction(gB, state.b, state.t)
        if P is not None and not before:
            dB = P.for_B(dB, A_for_B)
        return A_next, B - self.lr_B * dB
