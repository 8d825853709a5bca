"""Update rules as chains of gradient transforms (optax style), and the one pair rule.

A transform maps one factor's gradient to a new direction; a solver is a chain of them:

    gd           scale_by_lr
    precgd       precondition(λ) → scale_by_lr                   ScaledGD(λ)
    adam         scale_by_adam → scale_by_lr
    scaled_adam  precondition(λ) → scale_by_adam → scale_by_lr   (precondition="before": AdamWr)
                 scale_by_adam → precondition(λ) → scale_by_lr   (precondition="after")
    full_ft      scale_by_lr on W itself: A = W − W0 with B = I_k frozen, so the loop and metrics apply

``precondition`` is ScaledGD(λ)'s ∇_A ↦ ∇_A (B Bᵀ + λI)⁻¹ and ∇_B ↦ (AᵀA + λI)⁻¹ ∇_B. It needs
the other factor (the partner), which is where the two orders differ, in one place (``Solver.step``):
``order="simultaneous"`` (theory, peft, pilancilab SGDr) gives B's transforms the old A;
``"gauss_seidel"`` (LoRA-One's deleted AdamWr) the already-updated A.

State (Adam's moments, per-run step sizes) is a flat dict of tensors updated in place, so a
captured CUDA graph keeps working and stopping run i of a batch is "zero slice i of every state
tensor". The step count t is the host's (Adam's bias correction reads it; a solver that does is
``step_dependent`` and the batch engine then runs eagerly). lorasim.llm.optim builds the LLM
optimizer from the same ``adam_direction`` and ``precondition``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from .config import Named, checked, register
from .linalg import Tensor, damped_gram_inverse, damped_gram_solve_right, mT

ORDERS = ("simultaneous", "gauss_seidel")


# -- configs: one dataclass per solver name, its fields the name's parameters and their only defaults ------
@dataclass
class SolverConfig(Named):
    """A solver by name; SolverConfig(name="precgd", damping=0.1) is a PrecGDConfig."""

    name: str = "gd"
    group: ClassVar[str] = "solver"
    where: ClassVar[str] = "solver"


@register("solver", "gd")
@dataclass
class GDConfig(SolverConfig):
    """Simultaneous GD on (A, B)."""

    name: str = "gd"
    lr: float = checked(0.25, "num", 0, lo_open=True)
    lr_ratio: float = checked(1.0, "num", 0)  # LoRA+: B's step size is lr_ratio·lr

    def chain(self) -> list:
        return []


@register("solver", "precgd")
@dataclass
class PrecGDConfig(GDConfig):
    """ScaledGD(λ), the toy notebook's η = 0.5, λ = 1e-3."""

    name: str = "precgd"
    lr: float = 0.5
    damping: float = checked(1e-3, "num", 0)  # λ
    order: str = checked("simultaneous", "choice", ORDERS)
    inverse: str = checked("inv", "choice", ("inv", "pinv"))  # pinv: the identity where a Gram overflowed

    def chain(self) -> list:
        return [precondition(self.damping, self.inverse)]


@register("solver", "adam")
@dataclass
class AdamConfig(GDConfig):
    name: str = "adam"
    lr: float = 1e-2
    beta1: float = checked(0.9, "num", 0, 1)
    beta2: float = checked(0.999, "num", 0, 1)
    eps: float = checked(1e-8, "num", 0)  # added to √v
    bias_correction: bool = checked(True, "bool")

    def chain(self) -> list:
        return [scale_by_adam(self.beta1, self.beta2, self.eps, self.bias_correction)]


@register("solver", "scaled_adam")
@dataclass
class ScaledAdamConfig(AdamConfig, PrecGDConfig):
    """Riemannian / scaled Adam. The defaults are LoRA-One's deleted AdamWr: Gauss–Seidel, λ = 1e-6,
    no bias correction, the gradient preconditioned before the moments (peft's
    create_riemannian_optimizer is order=simultaneous)."""

    name: str = "scaled_adam"
    lr: float = 1e-2
    damping: float = 1e-6
    order: str = "gauss_seidel"
    bias_correction: bool = False
    precondition: str = checked("before", "choice", ("before", "after"))  # before | after the Adam moments

    def chain(self) -> list:
        prec, adam = PrecGDConfig.chain(self) + AdamConfig.chain(self)
        return [prec, adam] if self.precondition == "before" else [adam, prec]


@register("solver", "full_ft")
@dataclass
class FullFTConfig(SolverConfig):
    """GD on W itself (no init: W starts at W0)."""

    name: str = "full_ft"
    lr: float = checked(0.5, "num", 0, lo_open=True)

    def chain(self) -> list:
        return []


def adam_direction(g: Tensor, m: Tensor, v: Tensor, t: int, beta1: float, beta2: float, eps: float,
                   bias_correction: bool) -> Tensor:
    """Adam's step direction; updates the moments m, v in place. The one Adam in lorasim."""
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if bias_correction:
        m, v = m / (1 - beta1**t), v / (1 - beta2**t)
    return m / (v.sqrt() + eps)


class Transform:
    """One link of a chain: ``init`` adds its state tensors, ``update`` maps a factor's direction."""

    step_dependent = False

    def init(self, A: Tensor, B: Tensor) -> dict:
        return {}

    def update(self, side: str, g: Tensor, state: dict, partner: Tensor, t: int) -> Tensor:
        raise NotImplementedError


@dataclass
class precondition(Transform):
    """ScaledGD(λ): right-multiply A's direction by (BBᵀ + λI)⁻¹, left-multiply B's by (AᵀA + λI)⁻¹.

    ``gram_shift`` (..., r, r) is added to every Gram: the batch engine puts 1 on the diagonal of a
    run's zero-padded rank slots, so they get no update and stay exactly zero."""

    damping: float
    inverse: str = "inv"
    gram_shift: Optional[Tensor] = None

    def update(self, side, g, state, partner, t):
        if side == "A":
            return damped_gram_solve_right(g, partner, self.damping, self.inverse, self.gram_shift)
        return mT(damped_gram_solve_right(mT(g), mT(partner), self.damping, self.inverse, self.gram_shift))

    def inverse_grams(self, grams: Tensor) -> Tensor:
        """(gram + λI)⁻¹ for a stack of r×r Grams: the explicit form, for optimizers that apply one
        inverse to many parameters (lorasim.llm.optim)."""
        return damped_gram_inverse(grams, self.damping, self.inverse)


@dataclass
class scale_by_adam(Transform):
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    bias_correction: bool = True

    @property
    def step_dependent(self):
        return self.bias_correction

    def init(self, A, B):
        return {f"{side}.{moment}": torch.zeros_like(X) for side, X in (("A", A), ("B", B)) for moment in "mv"}

    def update(self, side, g, state, partner, t):
        return adam_direction(g, state[f"{side}.m"], state[f"{side}.v"], t, self.beta1, self.beta2, self.eps,
                              self.bias_correction)


@dataclass
class scale_by_lr(Transform):
    """Multiply by the step size: ``lr`` for A and ``lr·lr_ratio`` for B (LoRA+). A tensor ``lr`` (one
    per run of a batch, shaped to broadcast over the factors) lives in the state, so a stopped run's
    step size is zeroed with the rest of its state."""

    lr: object
    lr_ratio: float = 1.0

    def init(self, A, B):
        if not isinstance(self.lr, torch.Tensor):
            return {}
        return {"lr.A": self.lr.clone(), "lr.B": self.lr * self.lr_ratio}

    def rate(self, side, state):
        lr = state.get(f"lr.{side}")
        return (self.lr if side == "A" else self.lr * self.lr_ratio) if lr is None else lr

    def update(self, side, g, state, partner, t):
        return self.rate(side, state) * g


@dataclass
class Solver:
    """A chain of transforms and how it is applied to the pair: ``init`` then repeated ``step``."""

    name: str
    chain: list
    order: str = "simultaneous"
    trains_B: bool = True  # False for full fine-tuning: B = I_k stays fixed and A is W − W0

    @property
    def step_dependent(self) -> bool:
        return any(tr.step_dependent for tr in self.chain)

    def init(self, A: Tensor, B: Tensor) -> dict:
        state = {"t": 0}
        for tr in self.chain:
            state.update(tr.init(A, B))
        return state

    def direction(self, side: str, g: Tensor, state: dict, partner: Tensor) -> Tensor:
        for tr in self.chain:
            g = tr.update(side, g, state, partner, state["t"])
        return g

    def step(self, A: Tensor, B: Tensor, gA: Tensor, gB: Optional[Tensor], state: dict):
        """One update, returning the new (A, B) and leaving A and B as they were."""
        A, B = A.clone(), B.clone()
        self.step_(A, B, gA, gB, state)
        return A, B

    def step_(self, A: Tensor, B: Tensor, gA: Tensor, gB: Optional[Tensor], state: dict) -> None:
        """One update of A and B in place. The pair rule: A moves first; B's transforms see the old A or,
        Gauss–Seidel, the new one."""
        state["t"] += 1
        fold = self.folds_step_size(A)
        pA = self._unscaled("A", gA, state, B, fold)
        if not self.trains_B:
            self._descend(A, "A", pA, state, fold)
        elif self.order == "gauss_seidel":
            self._descend(A, "A", pA, state, fold)
            self._descend(B, "B", self._unscaled("B", gB, state, A, fold), state, fold)
        else:
            pB = self._unscaled("B", gB, state, A, fold)
            self._descend(A, "A", pA, state, fold)
            self._descend(B, "B", pB, state, fold)

    # On CUDA the chain's last link, the step size, is folded into the in-place update: X −= lr ⊙ g is one pass
    # over the factor, where lr·g and then X − (lr·g) are two (on an H200 at d = 16384, b = 64, r = 16 the
    # updates moved 670 MB a step; benchmarks.md). The fused multiply-add rounds once where the two operations
    # round twice, so elsewhere, where the golden frames pin every bit, the two operations stay.
    def folds_step_size(self, X: Tensor) -> bool:
        return X.is_cuda and bool(self.chain) and isinstance(self.chain[-1], scale_by_lr)

    def descend_in_place(self, descend, A: Tensor, B: Tensor, state: dict) -> bool:
        """Plain GD's step through ``descend(A, B, lr_A, lr_B)`` (``Problem.descend``: the update inside the
        gradient's last kernel, no gradient written), where the chain is the step size alone and folds it (so on
        CUDA, as ``step_``'s own update). With no other transform there is no partner to see, so both orders are
        the same step. Returns whether it was taken; if not, nothing changed."""
        if not (self.trains_B and len(self.chain) == 1 and self.folds_step_size(A)):
            return False
        rates = self.chain[0]
        if not descend(A, B, rates.rate("A", state), rates.rate("B", state)):
            return False
        state["t"] += 1
        return True

    def _unscaled(self, side: str, g: Tensor, state: dict, partner: Tensor, fold: bool) -> Tensor:
        for tr in (self.chain[:-1] if fold else self.chain):
            g = tr.update(side, g, state, partner, state["t"])
        return g

    def _descend(self, X: Tensor, side: str, direction: Tensor, state: dict, fold: bool) -> None:
        if not fold:
            X.sub_(direction)
            return
        lr = self.chain[-1].rate(side, state)
        if isinstance(lr, torch.Tensor):
            X.addcmul_(lr, direction, value=-1)
        else:
            X.add_(direction, alpha=-lr)

    def freeze(self, state: dict, i: int) -> None:
        """Stop run i of a batch: zero its slice of every state tensor (moments, step sizes)."""
        for value in state.values():
            if isinstance(value, torch.Tensor):
                value[i] = 0


def make_solver(cfg: SolverConfig, lr=None, gram_shift: Optional[Tensor] = None) -> Solver:
    """The chain for ``cfg`` (its ``chain()``, then the step size); ``lr`` overrides cfg.lr (a tensor
    gives one step size per run)."""
    chain = cfg.chain()
    for tr in chain:
        if isinstance(tr, precondition):
            tr.gram_shift = gram_shift
    full = isinstance(cfg, FullFTConfig)
    chain.append(scale_by_lr(cfg.lr if lr is None else lr, getattr(cfg, "lr_ratio", 1.0)))
    return Solver(cfg.name, chain, order=getattr(cfg, "order", "simultaneous"), trains_B=not full)
