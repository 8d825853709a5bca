"""Asymmetric Gaussian matrix sensing, the ScaledGD anchor (Tong, Ma, Chi 2021; ANCHORS §B.1).

y_i = ⟨A_i, M*⟩ + ε_i for i = 1..m, with A_i of i.i.d. N(0, 1/m) entries, so that
E Σ_i ⟨A_i, M⟩² = ‖M‖_F². The loss is f(A, B) = ½ Σ_i (⟨A_i, W0 + A B⟩ − y_i)², with
W0 = 0 unless an offset init moves it. In the paper's layout M* plays ΔW (n1×n2),
G = 𝒜*(y) is the spectral-init matrix, and the risk is ½‖A B − M*‖_F².
The anchor's own defaults are n1 = n2 = 200, r* = 10, m = 5 n r*, σ* = linspace(1, 1/κ, r*).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..config import SensingConfig, build
from ..linalg import Tensor, gaussian, mT
from .base import Problem


class MatrixSensing(Problem):
    kind = "sensing"

    def __init__(self, config: Optional[SensingConfig] = None, **kwargs):
        cfg = config if config is not None else build(SensingConfig, kwargs, where="")
        dtype, dev = self._draw_truth(cfg, cfg.n1, cfg.n2)
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

    def _gamma(self, A: Tensor, B: Tensor) -> Tensor:
        return self.adjoint(self.measure(self.W0 + A @ B) - self.y)

    def _regradient(self, L, R) -> None:
        self.G = self.adjoint(self.y - self.measure(self.W0))

    def grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        Gam = self._gamma(A, B)
        return Gam @ mT(B), mT(A) @ Gam

    def loss(self, A: Tensor, B: Tensor) -> Tensor:
        res = self.measure(self.W0 + A @ B) - self.y
        return 0.5 * (res * res).sum(dim=-1)
