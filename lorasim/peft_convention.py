"""The one place where lorasim's layout meets peft's.

lorasim (the paper):  W ∈ R^{d×k} (d = in, k = out),  y = (W0 + A B)ᵀ x,
                      A ∈ R^{d×r} (input side),  B ∈ R^{r×k} (output side), no scale.
peft / torch:         W_torch = Wᵀ ∈ R^{out×in},  y = (W_torch + s · lora_B · lora_A) x,
                      lora_A ∈ R^{r×in},  lora_B ∈ R^{out×r},  s = α_L/√r (rsLoRA) or α_L/r.

Since (A B)ᵀ = Bᵀ Aᵀ, the scale is split evenly between the factors:

    A = √s · lora_Aᵀ,    B = √s · lora_Bᵀ,    so  A B = (s · lora_B · lora_A)ᵀ.

Gradients: peft's G = ∇_{W_torch} L is the paper's −G♮ transposed (G♮ = −Gᵀ).
Plain GD with step η on (lora_A, lora_B) equals GD with step s·η on (A, B).
"""
from __future__ import annotations

import math
from typing import Optional

from .config import fail


def lora_scale(r: int, lora_alpha: float = 16.0, rslora: bool = True, scale: Optional[float] = None) -> float:
    """peft's scaling s: α_L/√r with rsLoRA, α_L/r without; an explicit ``scale`` wins."""
    if scale is not None:
        return float(scale)
    return lora_alpha / (math.sqrt(r) if rslora else r)


def _root(s: float) -> float:
    if s <= 0:
        fail("", "s", s, "a positive LoRA scale")
    return math.sqrt(s)


def to_peft(A, B, s: float):
    """Paper-layout (A, B) → (lora_A, lora_B) for a peft layer with scaling s."""
    return A.T / _root(s), B.T / _root(s)


def from_peft(lora_A, lora_B, s: float):
    """(lora_A, lora_B) with scaling s → paper-layout (A, B)."""
    return lora_A.T * _root(s), lora_B.T * _root(s)


def gradient_to_paper(grad_torch):
    """peft's G = ∇_{W_torch} L (out×in) → the paper's G♮ = −∇_W L (in×out)."""
    return -grad_torch.T
