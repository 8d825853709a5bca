"""Asymmetric Gaussian matrix sensing, the ScaledGD anchor (Tong, Ma, Chi 2021; ANCHORS §B.1).

y_i = ⟨A_i, M*⟩ + ε_i for i = 1..m, with A_i of i.i.d. N(0, 1/m) entries, so that
E Σ_i ⟨A_i, M⟩² = ‖M‖_F². The loss is f(A, B) = ½ Σ_i (⟨A_i, W0 + A B⟩ − y_i)², with
W0 = 0 unless an offset init moves it. In the paper's layout M* plays ΔW (n1×n2),
G = 𝒜*(y) is the spectral-init matrix, and the risk is ½‖A B − M*‖_F².
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..config import checked, fail, register
from ..linalg import Tensor, gaussian, mT
from .base import Problem, TeacherConfig


@register("problem", "sensing")
@dataclass
class SensingConfig(TeacherConfig):
    """The anchor's setting (MS.m): n1 = n2 = 200, r* = 10, m = 5nr*, σ* = linspace(1, 1/κ, r*). κ = 10, one of
    the anchor's {1, 5, 10, 20} and its noise study's: at κ = 1 GD and ScaledGD coincide and it shows nothing."""

    kind: str = "sensing"
    r_star: int = 10
    kappa: float = 10.0
    n1: int = checked(200, "int", 1)
    n2: int = checked(200, "int", 1)
    m: Optional[int] = checked(None, "int", 1)  # measurements; None means 5·max(n1, n2)·r*
    max_operator_gb: float = checked(8.0, "num", 0, lo_open=True)  # refuse larger dense operators (m × n1·n2)
    dims: ClassVar[tuple[str, str]] = ("n1", "n2")  # ΔW is M*

    def __post_init__(self):
        super().__post_init__()
        if self.m is None:
            self.m = 5 * max(self.n1, self.n2) * self.r_star
        gb = self.m * self.n1 * self.n2 * (8 if self.dtype == "float64" else 4) / 2**30
        if gb > self.max_operator_gb:
            fail(self.where, "m", self.m,
                 f"m·n1·n2 within max_operator_gb={self.max_operator_gb} (needs {gb:.1f} GB)")


class MatrixSensing(Problem):
    kind = "sensing"

    def __init__(self, config: Optional[SensingConfig] = None, **kwargs):
        cfg, dtype, dev = self._draw_truth(config, kwargs, SensingConfig)
        n1, n2, m = cfg.n1, cfg.n2, cfg.m
        self.m = m
        self.W0 = torch.zeros(n1, n2, dtype=dtype, device=dev)
        # Row i is vec(A_i) in row-major order.
        self.operator = gaussian(m, n1 * n2, generator=self.stream("operator"), dtype=dtype, device=dev) / m**0.5
        self.y = self.measure(self.delta)
        if cfg.noise > 0:
            self.y = self.y + cfg.noise * gaussian(m, generator=self.stream("noise"), dtype=dtype, device=dev)
        self._regradient(None, None)

    def measure(self, M: Tensor) -> Tensor:
        """𝒜(M) = (⟨A_i, M⟩)_i."""
        return M.reshape(*M.shape[:-2], -1) @ mT(self.operator)

    def adjoint(self, v: Tensor) -> Tensor:
        """𝒜*(v) = Σ_i v_i A_i."""
        return (v @ self.operator).reshape(*v.shape[:-1], self.d, self.k)

    def _grad_w(self, A: Tensor, B: Tensor) -> Tensor:
        """∇_W f at W = W0 + A B: 𝒜*(𝒜(W) − y)."""
        return self.adjoint(self.measure(self.W0 + A @ B) - self.y)

    def _regradient(self, L, R) -> None:
        self.G = self.adjoint(self.y - self.measure(self.W0))

    def grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        grad = self._grad_w(A, B)
        return grad @ mT(B), mT(A) @ grad

    def loss(self, A: Tensor, B: Tensor) -> Tensor:
        res = self.measure(self.W0 + A @ B) - self.y
        return 0.5 * (res * res).sum(dim=-1)
