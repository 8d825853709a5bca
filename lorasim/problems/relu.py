"""ReLU teacher–student: y = relu((W0 + ΔW)ᵀ x) + ε entrywise, x ~ N(0, I_d) (SPEC §3).

The nonlinearity has no sufficient statistics, so each step touches the N samples:
O(N d k) per step, the cost of one forward and backward pass. The population risk
has a closed form through the arc-cosine kernel (Cho & Saul): for x ~ N(0, I),

    E[relu(uᵀx) relu(vᵀx)] = ‖u‖‖v‖ (sin θ + (π − θ) cos θ) / (2π),

which gives, per output column with u = w_j, v = w♮_j and θ their angle,

    E(relu(uᵀx) − relu(vᵀx))² = ½‖u − v‖² − ‖u‖‖v‖ (sin θ − θ cos θ) / π,

written so that it keeps full relative accuracy as u → v (both terms vanish there,
the second like θ³).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import checked, fail, register
from ..linalg import Tensor, gaussian, mT
from .base import Problem, TeacherConfig, frozen_weight


@register("problem", "relu")
@dataclass
class ReLUConfig(TeacherConfig):
    """W0 with orthonormal columns, ΔW small and of low rank (SPEC §3)."""

    kind: str = "relu"
    r_star: int = 2
    kappa: float = 1.0
    delta_norm: float = 0.3  # ‖ΔW‖_op
    d: int = checked(20, "int", 1)
    k: int = checked(10, "int", 1)
    n: int = checked(4000, "int", 1)
    # no zeros: W0 = 0 would give relu'(0) = 0, no gradient ever
    w0: str = checked("orthonormal", "choice", ("gaussian", "orthonormal"))
    w0_scale: float = checked(1.0, "num", 0, lo_open=True)

    def __post_init__(self):
        super().__post_init__()
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' when d < k (d={self.d}, k={self.k})")


def relu_pair_risk(W: Tensor, W_true: Tensor, diff_sq: Tensor) -> Tensor:
    """½ Σ_j E(relu(w_jᵀx) − relu(w♮_jᵀx))² for x ~ N(0, I); ``diff_sq`` = ‖W − W♮‖_F²."""
    a = torch.linalg.vector_norm(W, dim=-2)
    b = torch.linalg.vector_norm(W_true, dim=-2)
    ua = W / a.clamp_min(torch.finfo(W.dtype).tiny).unsqueeze(-2)
    ub = W_true / b.clamp_min(torch.finfo(W.dtype).tiny).unsqueeze(-2)
    # θ = 2 atan2(‖û − v̂‖, ‖û + v̂‖) is accurate at small angles, unlike acos(ûᵀv̂).
    theta = 2 * torch.atan2(torch.linalg.vector_norm(ua - ub, dim=-2), torch.linalg.vector_norm(ua + ub, dim=-2))
    # sin θ − θ cos θ ≈ θ³/3 is negligible next to ½‖u−v‖² ∝ θ² at small θ, so its own
    # cancellation there does not matter; ‖W − W♮‖² comes from the factors, exactly.
    return 0.5 * (0.5 * diff_sq - ((a * b) * (torch.sin(theta) - theta * torch.cos(theta))).sum(dim=-1) / math.pi)


class ReLUTeacher(Problem):
    """Finite-sample ReLU teacher with W0 of orthonormal columns by default and ΔW of rank r*."""

    kind = "relu"

    def __init__(self, config: Optional[ReLUConfig] = None, **kwargs):
        cfg, dtype, dev = self._draw_truth(config, kwargs, ReLUConfig)
        d, k, n = cfg.d, cfg.k, cfg.n
        self.n, self.noise = n, cfg.noise
        self.W0 = frozen_weight(cfg.w0, d, k, cfg.w0_scale, self.stream("w0"), dtype, dev)
        self.W_true = self.W0 + self.delta
        self.X = gaussian(n, d, generator=self.stream("design"), dtype=dtype, device=dev)
        self.Y = torch.relu(self.X @ self.W_true)
        if cfg.noise > 0:
            self.Y = self.Y + cfg.noise * gaussian(n, k, generator=self.stream("noise"), dtype=dtype, device=dev)
        self._regradient(None, None)

    def metric_elems(self, r: int) -> int:
        # W, then XW, relu(XW) − Y, the active mask and the squared residual over the n samples
        return self.d * self.k + 4 * self.n * self.k

    def _residual(self, W: Tensor) -> tuple[Tensor, Tensor]:
        Z = self.X @ W
        return torch.relu(Z) - self.Y, Z > 0

    def _grad_w(self, W: Tensor) -> Tensor:
        """∇_W L at W: (1/N) Xᵀ[(relu(XW) − Y) ⊙ 1{XW > 0}]."""
        resid, active = self._residual(W)
        return mT(self.X) @ (resid * active) / self.n

    def _regradient(self, L, R) -> None:
        self.G = -self._grad_w(self.W0)

    def grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        grad = self._grad_w(self.W0 + A @ B)
        return grad @ mT(B), mT(A) @ grad

    def loss(self, A: Tensor, B: Tensor) -> Tensor:
        resid, _ = self._residual(self.W0 + A @ B)
        return 0.5 * (resid * resid).sum(dim=(-2, -1)) / self.n

    def risk(self, A: Tensor, B: Tensor) -> Tensor:
        """Exact population risk ½ E‖relu((W0+AB)ᵀx) − relu(W♮ᵀx)‖², x ~ N(0, I) (noise-free)."""
        diff_sq = self.error_norms(A, B)[1] ** 2
        return relu_pair_risk(self.W0 + A @ B, self.W_true, diff_sq)
