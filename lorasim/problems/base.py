"""What every problem exposes to inits, solvers and metrics.

A problem is a loss over the adapter pair (A, B), A ∈ R^{d×r}, B ∈ R^{r×k}, acting
on a frozen W0 ∈ R^{d×k} through W0 + A B (the paper's layout). It knows

* ``G`` — the one-step full fine-tuning direction G♮ = −∇_W L(W0), d×k;
* the ground-truth shift ΔW, kept factored as ``delta_L @ delta_R`` (or None);
* ``grads(A, B)``, ``loss(A, B)``, ``risk(A, B)`` and ``error_norms(A, B)``.

Offset inits (LoRA-GA, PiSSA) move the frozen weight: ``shifted(L, R)`` returns the
same problem with W0 ← W0 − L R, so ΔW ← ΔW + L R and G is recomputed. Risks of
the shifted problem are still measured against the original target W0 + ΔW.
"""
from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import ClassVar, List, Optional

import numpy as np
import torch
from omegaconf import MISSING

from .. import streams
from ..config import Config, build, checked, fail
from ..linalg import (Tensor, finite_sum, frobenius_sq, gaussian, matmul, mT, product_fro, product_norms,
                      random_orthonormal)

# tf32 stores float32 and runs the training loop's float32 products on the tensor cores in
# tf32 (CUDA only; on the CPU it is float32). Construction stays in plain float32.
_DTYPES = {"float64": torch.float64, "float32": torch.float32, "tf32": torch.float32}
DTYPES = tuple(_DTYPES)


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]


@dataclass
class ProblemConfig(Config):
    """Base of the problem configs (one dataclass per kind, beside its problem): the kind and the storage."""

    kind: str = MISSING
    dtype: str = checked("float64", "choice", DTYPES)  # tf32: float32 storage, tf32 products on CUDA
    device: str = checked("cpu", "device")  # cpu | cuda | cuda:N
    where: ClassVar[str] = "problem"


@dataclass
class TeacherConfig(ProblemConfig):
    """Base of the generated teachers' configs (linear, relu, sensing): ΔW's spectrum, the label noise and
    the seed. The defaults are the linear teacher's; the other kinds override those that differ."""

    r_star: int = 4  # rank of ΔW, at most the smaller of its sizes (the fields named by ``dims``)
    kappa: float = checked(4.0, "num", 1)  # λ*_1/λ*_{r*}
    spacing: str = checked("linear", "choice", ("linear", "geometric"))  # λ* from delta_norm down to delta_norm/κ
    singular_values: Optional[List[float]] = None  # explicit λ* (r* values); overrides kappa, spacing, delta_norm
    delta_norm: float = checked(1.0, "num", 0, lo_open=True)  # λ*_1 = ‖ΔW‖_op
    scale: Optional[float] = checked(None, "renamed", "delta_norm")  # deprecated (0.2 name of delta_norm)
    noise: float = checked(0.0, "num", 0)  # label-noise std σ
    seed: int = checked(0, "int", 0)  # problem seed (the init seed is run.seed)
    dims: ClassVar[tuple[str, str]] = ("d", "k")

    def __post_init__(self):
        super().__post_init__()
        self._int("r_star", 1, min(getattr(self, dim) for dim in self.dims))
        self._numlist("singular_values", length=self.r_star)


def singular_values(cfg) -> list[float]:
    """λ*_1 = delta_norm ≥ … ≥ λ*_{r*} = delta_norm/κ, linearly or geometrically spaced, or explicit."""
    if cfg.singular_values is not None:
        return sorted(cfg.singular_values, reverse=True)
    spaced = np.linspace if cfg.spacing == "linear" else np.geomspace
    return [cfg.delta_norm * float(v) for v in spaced(1.0, 1.0 / cfg.kappa, cfg.r_star)]


def frozen_weight(kind, d, k, scale, gen, dtype, device) -> Tensor:
    if kind == "gaussian":
        return scale * gaussian(d, k, generator=gen, dtype=dtype, device=device)
    if kind == "orthonormal":
        return scale * random_orthonormal(d, k, gen, dtype, device)
    return torch.zeros(d, k, dtype=dtype, device=device)


def real_matrix(x, name: str, dtype, device) -> Tensor:
    """A user array as a finite real 2-D tensor, or a ConfigError naming it."""
    if not isinstance(x, torch.Tensor):  # a tensor is checked where it lives: a GPU array never visits the host
        try:
            a = np.asarray(x)
        except ValueError:  # ragged rows
            fail("", name, x, "a 2-D array (rows of equal length)")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) or a.dtype == bool:
            fail("", name, f"array of dtype {a.dtype}", "a real numeric array (integer or float)")
        x = torch.as_tensor(a)
    t = x.detach()
    if t.dtype == torch.bool or t.is_complex():
        fail("", name, f"array of dtype {t.dtype}", "a real numeric array (integer or float)")
    if t.dim() != 2:
        fail("", name, tuple(t.shape), "a 2-D array")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        fail("", name, "array with NaN/inf", "finite values only")
    return t.to(dtype=dtype, device=device)


class Problem:
    """Base class; subclasses set the attributes below and implement grads/loss/_regradient."""

    kind: str = "problem"
    d: int
    k: int
    r_star: Optional[int]
    W0: Tensor
    G: Tensor
    delta_L: Optional[Tensor] = None  # d×r*
    delta_R: Optional[Tensor] = None  # r*×k
    risk_weight: Optional[Tensor] = None  # Σ^{1/2} for the Σ-weighted risk; None means Σ = I
    tf32: bool = False  # dtype "tf32": float32 storage, tf32 tensor-core products in training

    # -- interface ---------------------------------------------------------------------------
    def grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, A: Tensor, B: Tensor) -> Tensor:
        raise NotImplementedError

    def descend(self, A: Tensor, B: Tensor, lr_A, lr_B) -> bool:
        """A −= lr_A ∇_A, B −= lr_B ∇_B in place inside the gradient's own kernels, where a problem can (the linear
        model on CUDA); returns whether it did. By default it cannot, and the solver updates the factors."""
        return False

    def metric_elems(self, r: int) -> int:
        """Scratch elements one run's logged row at rank r may take (the engine sizes batched metric
        computations by it): by default W = W0 + AB and a residual over the n samples."""
        return self.d * self.k + (getattr(self, "n", None) or 0) * self.k

    def full_grad(self, D: Tensor) -> Tensor:
        """∇_W L at W = W0 + D (full fine-tuning); the A-gradient with B = I."""
        eye = torch.eye(self.k, dtype=D.dtype, device=D.device)
        return self.grads(D, eye)[0]

    def _regradient(self, L: Tensor, R: Tensor) -> None:
        """Update G and loss caches after W0 ← W0 − L R."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def _draw_truth(self, config, kwargs: dict, config_class):
        """The config (``config``, or built from keywords), then sizes and a Haar-random ΔW = U* S* V*ᵀ
        (U* d×r*, V* k×r*), kept as the factors U* S* and V*ᵀ; return (config, dtype, device)."""
        cfg = config if config is not None else build(config_class, kwargs, where="")
        d, k = (getattr(cfg, dim) for dim in cfg.dims)
        dtype, dev = torch_dtype(cfg.dtype), torch.device(cfg.device)
        self.config = cfg
        self.tf32 = cfg.dtype == "tf32"
        self.d, self.k, self.r_star = d, k, cfg.r_star
        svals, gen = singular_values(cfg), self.stream("truth")
        self.U_star = random_orthonormal(d, len(svals), gen, dtype, dev)
        self.V_star = random_orthonormal(k, len(svals), gen, dtype, dev)
        self.S_star = torch.tensor(svals, dtype=dtype, device=dev)
        self.delta_L, self.delta_R = self.U_star * self.S_star, self.V_star.T
        return cfg, dtype, dev

    def stream(self, key: str) -> torch.Generator:
        """This problem's generator for one consumer (lorasim.streams): truth, w0, design, noise, ..."""
        return streams.generator(self.config.seed, key, self.config.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.G.dtype

    @property
    def device(self) -> torch.device:
        return self.G.device

    @property
    def matmul_precision(self) -> str:
        """How float32 products run: "ieee" (exact float32) or "tf32"."""
        return "tf32" if self.tf32 else "ieee"

    @contextlib.contextmanager
    def matmul_mode(self, training: bool = True):
        """Within a training loop: let torch's float32 CUDA products use tf32 when dtype is tf32. The metric
        rows (``training=False``) measure the trained state in float32's full precision whatever dtype says:
        tf32 is the training's precision, not the measurement's."""
        if self.device.type != "cuda":
            yield
            return
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high" if self.tf32 and training else "highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(old)

    @property
    def delta(self) -> Optional[Tensor]:
        """ΔW as a dense d×k matrix (None when unknown)."""
        if self.delta_L is None:
            return None
        return self.delta_L @ self.delta_R

    def as_tensor(self, x, name: str) -> Tensor:
        """Validate and convert a user array to this problem's dtype and device."""
        return real_matrix(x, name, self.dtype, self.device)

    def _error_factors(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        """AB − ΔW = [A, −ΔL] [B; ΔR], a product of thin factors."""
        L = torch.cat([A, (-self.delta_L).expand(*A.shape[:-2], *self.delta_L.shape)], dim=-1)
        R = torch.cat([B, self.delta_R.expand(*B.shape[:-2], *self.delta_R.shape)], dim=-2)
        return L, R

    def error_norms(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        """(‖AB − ΔW‖_op, ‖AB − ΔW‖_F); NaN when ΔW is unknown."""
        if self.delta_L is None:
            nan = torch.full(A.shape[:-2], math.nan, dtype=self.dtype, device=self.device)
            return nan, nan
        return product_norms(*self._error_factors(A, B))

    def risk(self, A: Tensor, B: Tensor) -> Tensor:
        """Population risk ½ tr((AB−ΔW)ᵀ Σ (AB−ΔW)); ½‖AB − ΔW‖_F² for Σ = I."""
        if self.delta_L is None:
            return torch.full(A.shape[:-2], math.nan, dtype=self.dtype, device=self.device)
        if not finite_sum(A, B):  # inf or NaN from the guarded QR, which keeps LAPACK off non-finite factors
            L, R = self._error_factors(A, B)
            if self.risk_weight is not None:
                L = self.risk_weight @ L
            return 0.5 * product_fro(L, R) ** 2
        return 0.5 * self._error_fro_sq(A, B)

    def _error_fro_sq(self, A: Tensor, B: Tensor) -> Tensor:
        """‖W(AB − ΔW)‖_F² (W = risk_weight or I) from a thin QR of a d×r factor, without the d×k product.

        With WΔL = Q T (Q orthonormal, kept) and WA = Q C + A⊥, A⊥ ⟂ Q:
        W(AB − ΔW) = Q (C B − T ΔR) + A⊥ B, two mutually orthogonal terms, so the squared norm is
        ‖C B − T ΔR‖² + ‖T⊥ B‖² with A⊥ = Q⊥ T⊥. The same backward error as one QR of [WA, −WΔL]
        (eps·‖A‖‖B‖), at a smaller QR and without concatenating the two factors for every row. Rounding
        leaves Qᵀ A⊥ ~ eps·‖A‖, so the dropped cross term 2⟨Q(CB − TΔR), A⊥B⟩ is first order in eps·‖A‖‖B‖,
        as that backward error is: a second Gram–Schmidt pass would not change the order."""
        Q, TdR = self._delta_basis()
        WA = A if self.risk_weight is None else matmul(self.risk_weight, A)
        C = matmul(mT(Q), WA)
        _, T_perp = torch.linalg.qr(WA - matmul(Q, C), mode="r")
        return frobenius_sq(matmul(C, B) - TdR) + frobenius_sq(matmul(T_perp, B))

    def _delta_basis(self) -> tuple[Tensor, Tensor]:
        """(Q, T ΔR) with W ΔL = Q T, Q orthonormal, kept until ΔL, ΔR or W change (a shifted problem has
        its own)."""
        key = (self.delta_L, self.delta_R, self.risk_weight)
        cached = self.__dict__.get("_delta_qr")
        if cached is None or any(x is not y for x, y in zip(cached[0], key)):
            L = self.delta_L if self.risk_weight is None else self.risk_weight @ self.delta_L
            Q, T = torch.linalg.qr(L)
            cached = (key, Q, T @ self.delta_R)
            self._delta_qr = cached
        return cached[1], cached[2]

    def shifted(self, L: Tensor, R: Tensor) -> "Problem":
        """This problem with the frozen weight moved to W0 − L R (the offset inits)."""
        new = copy.copy(self)
        new.W0 = self.W0 - L @ R
        if self.delta_L is not None:
            new.delta_L = torch.cat([self.delta_L, L], dim=-1)
            new.delta_R = torch.cat([self.delta_R, R], dim=-2)
        new._regradient(L, R)
        return new

    def svd_G(self) -> tuple[Tensor, Tensor, Tensor]:
        """G's thin SVD (U, S, V) with G = U diag(S) Vᵀ, computed once per problem: spectral inits
        and alignment references both need it, and at large d it costs more than many steps."""
        cached = self.__dict__.get("_svd_G")
        if cached is None or cached[0] is not self.G:  # a shifted problem has a new G
            # In float64 whatever the problem's dtype: cuSOLVER's float32 SVD was seen 2e-5 off
            # (H200), which would put a floor under every alignment a float32 run reports. And of
            # G/‖G‖: cuSOLVER's float64 SVD was 8e-12 off at ‖G‖ ~ 1e-6 or 1e4 but 3e-16 at 1 (C17).
            G = self.G.double()
            norm = torch.linalg.matrix_norm(G).clamp_min(torch.finfo(torch.float64).tiny)
            U, S, Vh = torch.linalg.svd(G / norm, full_matrices=False)
            U, S, Vh = U.to(self.dtype), (S * norm).to(self.dtype), Vh.to(self.dtype)
            cached = (self.G, U, S, Vh.transpose(-1, -2))
            self._svd_G = cached
        return cached[1:]

    def describe(self) -> dict:
        """Scalar facts about the instance, for summaries and reports."""
        s = self.svd_G()[1]
        out = {"d": self.d, "k": self.k, "r_star": self.r_star, "sigma1_G": float(s[0])}
        if self.r_star is not None and self.r_star < len(s):
            out["sigma_rstar_plus_1_G"] = float(s[self.r_star])
        return out


def check_factors(problem: Problem, A, B) -> tuple[Tensor, Tensor]:
    """Validate explicit initial factors: shapes (d, r) and (r, k), finite values."""
    A = problem.as_tensor(A, "A0")
    B = problem.as_tensor(B, "B0")
    if A.shape[0] != problem.d:
        fail("", "A0", tuple(A.shape), f"shape (d={problem.d}, r)")
    if B.shape[1] != problem.k or B.shape[0] != A.shape[1]:
        fail("", "B0", tuple(B.shape), f"shape (r={A.shape[1]}, k={problem.k})")
    if A.shape[1] < 1:
        fail("", "A0", tuple(A.shape), "at least one column (rank ≥ 1)")
    return A.clone(), B.clone()

