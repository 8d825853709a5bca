"""Linear teacher–student: y = (W0 + ΔW)ᵀ x + ε, x ~ N(0, Σ), ΔW of rank r*.

Only sufficient statistics are kept: Σ̂ = XᵀX/N and G = Xᵀ(Y − X W0)/N. Then

    L(A, B) = L(W0) − ⟨A B, G⟩ + ½ tr((A B)ᵀ Σ̂ A B)
    ∇_A L   = Σ̂ A (B Bᵀ) − G Bᵀ,        ∇_B L = (Aᵀ Σ̂ A) B − Aᵀ G,

so a step costs O((d² + dk) r) whatever N is, O(dkr) in the population limit
(Σ̂ = Σ = I exactly), and never forms a d×k product of the factors.

Where G = Σ̂ ΔW holds by construction (the population limit, or noise-free labels Y = X(W0 + ΔW)),
the step reads the thin factors of ΔW = ΔL ΔR instead of G:

    G Bᵀ = (Σ̂ΔL)(ΔR Bᵀ),        Aᵀ G = (Aᵀ Σ̂ΔL) ΔR,

an O((d + k) r r*) pass in place of two d×k ones: O(d² r) a step with N samples, O((d + k) r (r + r*))
in the population limit with Σ = I.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np
import torch
from omegaconf import MISSING

from .. import kernels
from ..config import ConfigError, build, checked, fail, register
from ..linalg import Tensor, gaussian, left_apply, mT, on_numpy_blas, random_orthonormal
from .base import Problem, ProblemConfig, TeacherConfig, frozen_weight, real_matrix, torch_dtype


@register("problem", "linear")
@dataclass
class LinearConfig(TeacherConfig):
    """The paper's T2 toy: d = k = 100, r* = 4, N = 16d, ΔW's singular values 1, .75, .5, .25."""

    kind: str = "linear"
    d: int = checked(100, "int", 1)
    k: int = checked(100, "int", 1)
    n: Any = checked(1600, "int", 1, allow=("population",))  # samples, or "population" (Σ̂ = Σ exactly)
    w0: str = checked("gaussian", "choice", ("gaussian", "orthonormal", "zeros"))
    w0_scale: float = checked(1.0, "num", 0)
    cov_kappa: float = checked(1.0, "num", 1)  # input covariance: geometric eigenvalues 1 to 1/cov_kappa, random basis
    cov_spectrum: Optional[List[float]] = None  # or an explicit list of d eigenvalues

    def __post_init__(self):
        super().__post_init__()
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' or 'zeros' when d < k (d={self.d}, k={self.k})")
        self._numlist("cov_spectrum", length=self.d)
        if self.cov_spectrum is not None and self.cov_kappa != 1:
            fail(self.where, "cov_kappa", self.cov_kappa, "1 when cov_spectrum is given (one or the other)")


@register("problem", "arrays")
@dataclass
class ArraysConfig(ProblemConfig):
    """A small problem written inline in the config (LinearTeacher.from_arrays)."""

    kind: str = "arrays"
    X: Any = checked(MISSING, "rows")  # N×d, nested lists
    Y: Any = checked(MISSING, "rows")  # N×k
    W0: Any = checked(MISSING, "rows")  # d×k
    delta: Any = None  # ΔW (d×k), optional: without it the risk is NaN
    r_star: Optional[int] = checked(None, "int", 1)  # default: the numerical rank of delta


_CHUNK_ELEMENTS = 2**22  # rows of X are drawn in blocks of about this many entries


def _version(x: Optional[Tensor]):
    """x's in-place version counter (None for None, and for inference-mode tensors, which keep none)."""
    if x is None:
        return None
    try:
        return x._version
    except RuntimeError:
        return None


def _teacher_labels(X, Y, W0, D, device) -> bool:
    """Whether the caller's Y is the teacher's X(W0 + D) to the round-off of forming it in float64: entrywise
    |Y − X(W0 + D)| ≤ 2γ_{d+2}·|X|(|W0| + |D|) + u|Y|, γ_n = nu/(1 − nu), u float64's unit round-off (two
    evaluations of the product, the caller's and this one, in any order of summation; the last term rounds the
    difference). Checked on the arrays as given, in float64 whatever the problem's dtype, block by block over rows:
    labels formed or rounded in a lower precision are not the teacher's (their rounding is far above the bound), so
    a worst-case bound in float32's unit, which admits noise of a few % at d = 1024, is never used. Label noise above
    ≈ 2(d + 2)u·|X|(|W0| + |D|) (2e-12 at T1's sizes) is not the teacher's either."""
    def as_given(a):  # the caller's array as a tensor, in its own dtype, on the problem's device
        return (a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))).to(device)

    X, Y, W0, D = (as_given(a) for a in (X, Y, W0, D))
    f64 = torch.float64
    u = torch.finfo(f64).eps / 2
    n = X.shape[1] + 2
    gamma = n * u / (1 - n * u)
    W0, D = W0.to(f64), D.to(f64)
    W, W_abs = W0 + D, W0.abs() + D.abs()
    rows = max(1, _CHUNK_ELEMENTS // max(X.shape[1], Y.shape[1]))  # blocks of rows: no N×d float64 copies
    for start in range(0, X.shape[0], rows):
        Xb, Yb = X[start:start + rows].to(f64), Y[start:start + rows].to(f64)
        if not bool(((Yb - Xb @ W).abs_() <= 2 * gamma * (Xb.abs() @ W_abs) + u * Yb.abs()).all()):
            return False
    return True


def _batch_size(A: Tensor) -> int:
    return math.prod(A.shape[:-2])


_RESIDUAL_BLOCK = 2**16  # entries of one residual block: in cache on a CPU, one launch's worth on a GPU


def _chunked_sq_residual(P: Tensor, B: Tensor, T: Tensor) -> Tensor:
    """‖P B − T‖_F² per run, formed block by block (runs × rows of T): exact (no cancellation near the
    floor, unlike the expanded form), each block P B − T in one fused product (baddbmm) small enough to
    stay in cache — a batch of logged rows is memory-bound otherwise. On the CPU through numpy's BLAS
    (``linalg.matmul`` says why), whole runs per block."""
    lead, (d, r), k = torch.broadcast_shapes(P.shape[:-2], B.shape[:-2]), P.shape[-2:], T.shape[-1]
    Pf = P.expand(*lead, d, r).reshape(-1, d, r)
    Bf = B.expand(*lead, r, k).reshape(-1, r, k)
    if on_numpy_blas(Pf, Bf, T):
        return torch.from_numpy(_sq_residual_numpy(Pf.numpy(), Bf.numpy(), T.numpy())).reshape(lead)
    rows = min(d, max(1, _RESIDUAL_BLOCK // k))
    runs = max(1, _RESIDUAL_BLOCK // (rows * k))
    total = torch.zeros(Pf.shape[0], dtype=P.dtype, device=P.device)
    for first in range(0, Pf.shape[0], runs):
        part = slice(first, first + runs)
        n = Pf[part].shape[0]
        for start in range(0, d, rows):
            block = T[start:start + rows].expand(n, -1, -1)
            resid = torch.baddbmm(block, Pf[part, start:start + rows], Bf[part], beta=-1)
            total[part] += (resid * resid).sum(dim=(-2, -1))
    return total.reshape(lead)


def _sq_residual_numpy(P: np.ndarray, B: np.ndarray, T: np.ndarray) -> np.ndarray:
    """``_chunked_sq_residual`` on numpy arrays: blocks of whole runs while a run's residual fits the
    block, of rows of T otherwise, so the scratch stays at 4·_RESIDUAL_BLOCK entries whatever d and k."""
    budget = 4 * _RESIDUAL_BLOCK
    d, k = T.shape
    rows = min(d, max(1, budget // k))
    runs = max(1, budget // (rows * k))
    out = np.zeros(P.shape[0], dtype=P.dtype)
    scratch = np.empty((min(runs, P.shape[0]), rows, k), dtype=P.dtype)
    with np.errstate(all="ignore"):  # a diverging run overflows quietly, as under torch
        for first in range(0, P.shape[0], runs):
            n = min(runs, P.shape[0] - first)
            for start in range(0, d, rows):
                m = min(rows, d - start)
                resid = scratch[:n, :m]
                np.matmul(P[first:first + n, start:start + m], B[first:first + n], out=resid)
                resid -= T[start:start + m]
                flat = resid.reshape(n, -1)
                out[first:first + n] += (flat[:, None, :] @ flat[:, :, None])[:, 0, 0]  # each run's sum of squares
    return out


def _check_shapes(shapes: dict) -> None:
    """X (N×d), Y (N×k), W0 (d×k), delta (d×k): name the array whose shape disagrees with the others.

    Each size is shared by two arrays (N: X, Y; d: X, W0; k: Y, W0). The array in every disagreement
    is the one named (a transposed W0 disagrees on d and on k); a single disagreement names the
    less basic array of the two (X before W0 before Y); delta is checked against the sizes then agreed."""
    X, Y, W0 = shapes["X"], shapes["Y"], shapes["W0"]
    d, k = X[1], W0[1]
    given = f"X={X}, Y={Y}, W0={W0}"
    bad = {size for size, (a, b) in {"N": (X[0], Y[0]), "d": (X[1], W0[0]), "k": (Y[1], W0[1])}.items() if a != b}
    if bad == {"N", "d", "k"}:
        raise ConfigError(f"{given}: allowed X (N×d), Y (N×k) and W0 (d×k) sharing N, d and k (no two agree)")
    if bad:
        culprit = {frozenset("Nd"): "X", frozenset("Nk"): "Y", frozenset("dk"): "W0",
                   frozenset("N"): "Y", frozenset("d"): "W0", frozenset("k"): "Y"}[frozenset(bad)]
        expected = {"X": ("N", Y[0], "d", W0[0]), "Y": ("N", X[0], "k", W0[1]), "W0": ("d", X[1], "k", Y[1])}[culprit]
        shape = shapes[culprit]
        others = ", ".join(f"{name}={shapes[name]}" for name in ("X", "Y", "W0") if name != culprit)
        hint = " (transposed?)" if shape == (expected[3], expected[1]) else ""
        fail("", culprit, shape, f"shape ({expected[0]}={expected[1]}, {expected[2]}={expected[3]}) to match "
                                 f"{others}{hint}")
    if "delta" in shapes and shapes["delta"] != (d, k):
        D = shapes["delta"]
        hint = " (transposed?)" if D == (k, d) else ""
        fail("", "delta", D, f"shape (d={d}, k={k}) or None, to match X={X} and W0={W0}{hint}")


class LinearTeacher(Problem):
    """The paper's linear model (SPEC §2). Build from a config or keywords, or ``from_arrays``."""

    kind = "linear"

    def __init__(self, config: Optional[LinearConfig] = None, **kwargs):
        cfg, dtype, dev = self._draw_truth(config, kwargs, LinearConfig)
        d, k = cfg.d, cfg.k
        self.noise = cfg.noise
        self.W0 = frozen_weight(cfg.w0, d, k, cfg.w0_scale, self.stream("w0"), dtype, dev)

        cov_sqrt = None
        if cfg.cov_spectrum is not None or cfg.cov_kappa > 1:
            spec = (torch.tensor(cfg.cov_spectrum, dtype=dtype, device=dev) if cfg.cov_spectrum is not None
                    else torch.logspace(0, -math.log10(cfg.cov_kappa), d, dtype=dtype, device=dev))
            Q = random_orthonormal(d, d, self.stream("covariance"), dtype, dev)
            cov_sqrt = (Q * spec.sqrt()) @ mT(Q)
        self.risk_weight = cov_sqrt

        if cfg.n == "population":
            self.n = None
            self._sigma = None if cov_sqrt is None else cov_sqrt @ cov_sqrt
            self.G = self.delta if self._sigma is None else self._sigma @ self.delta
            self._loss_floor = 0.5 * k * cfg.noise**2
            self._mark_teacher()  # the noise averages out of the population gradient
        else:
            self.n = int(cfg.n)
            xtx, g, rr = self._draw_statistics(cov_sqrt)
            self._set_statistics(xtx, g, rr)
            if self.noise == 0:
                self._mark_teacher()

    # -- construction --------------------------------------------------------------------------
    def _draw_statistics(self, cov_sqrt):
        """Accumulate Σ̂, G and ‖Y − XW0‖²/N over row blocks of X, never holding all of X. X and the
        noise have streams of their own, each drawn block by block, so a sweep over N nests both."""
        d, k, n = self.d, self.k, self.n
        design, noise = self.stream("design"), self.stream("noise")
        dtype, dev = self.W0.dtype, self.W0.device
        xtx = torch.zeros(d, d, dtype=dtype, device=dev)
        xtr = torch.zeros(d, k, dtype=dtype, device=dev)
        rr = torch.zeros((), dtype=dtype, device=dev)
        rows = max(1, _CHUNK_ELEMENTS // max(d, k))
        for start in range(0, n, rows):
            m = min(rows, n - start)
            X = gaussian(m, d, generator=design, dtype=dtype, device=dev)
            if cov_sqrt is not None:
                X = X @ cov_sqrt
            # Y − X W0 = X ΔW + ε: the residual at W0, drawn without W0's large terms.
            R0 = (X @ self.delta_L) @ self.delta_R
            if self.noise > 0:
                R0 = R0 + self.noise * gaussian(m, k, generator=noise, dtype=dtype, device=dev)
            xtx += mT(X) @ X
            xtr += mT(X) @ R0
            rr += (R0 * R0).sum()
        return xtx / n, xtr / n, rr / n

    def _set_statistics(self, sigma_hat: Tensor, G: Tensor, resid_sq: Tensor):
        self._sigma = sigma_hat
        self.G = G
        self._loss0 = 0.5 * resid_sq  # L(W0)
        chol, info = torch.linalg.cholesky_ex(sigma_hat)
        if int(info) == 0:
            # L = ½‖Cᵀ(AB − Ŵ)‖² + L⊥ with Ŵ = Σ̂⁻¹G the least-squares shift: accurate
            # near zero loss, where the expanded form cancels catastrophically.
            w_hat = torch.cholesky_solve(G, chol)
            self._chol = chol
            self._loss_target = mT(chol) @ w_hat
            self._loss_floor = torch.clamp(self._loss0 - 0.5 * (w_hat * G).sum(), min=0.0)
        else:  # N < d: Σ̂ is singular, keep the expanded form
            self._chol = None

    @classmethod
    def from_arrays(cls, X, Y, W0, delta=None, r_star: Optional[int] = None, dtype: str = "float64",
                    device: str = "cpu") -> "LinearTeacher":
        """A problem from the user's own data. X: N×d, Y: N×k, W0: d×k, delta (ΔW): d×k or None.

        The risk is the identity-covariance population risk ½‖AB − ΔW‖_F²; without
        ``delta`` it is NaN. r* is ``r_star`` if given, else the numerical rank of ``delta``.
        ``Y=None`` takes the teacher's noise-free labels X(W0 + ΔW) (``delta`` needed): then G = Σ̂ ΔW by
        construction, and the step reads ΔW's factors instead of G (the module docstring). So does a given Y that
        is X(W0 + delta) to the round-off of forming it in float64 (``_teacher_labels``): noise-free labels
        computed by the caller. Then ``noise`` is 0; otherwise NaN (unknown).
        """
        build(ProblemConfig, {"dtype": dtype, "device": device}, where="")  # the storage checks of every problem
        X_given, W0_given = X, W0  # as the caller gave them (the labels' check reads them so)
        if Y is None and delta is None:
            fail("", "Y", None, "an N×k array, or null with delta given (the teacher's noise-free labels X(W0 + ΔW))")
        self = cls.__new__(cls)
        self.config = None
        self.tf32 = dtype == "tf32"
        tdt = torch_dtype(dtype)
        arrs = {}
        for name, a in (("X", X), ("Y", Y), ("W0", W0), ("delta", delta)):
            if a is not None:
                arrs[name] = real_matrix(a, name, tdt, device)
        X, W0 = arrs["X"], arrs["W0"]
        n, d = X.shape
        if n < 1 or d < 1 or W0.shape[1] < 1:
            fail("", "X", tuple(X.shape), "at least one sample (N ≥ 1) and one feature")
        shapes = {name: tuple(a.shape) for name, a in arrs.items()}
        _check_shapes({"Y": (n, W0.shape[1]), **shapes})
        k = W0.shape[1]
        self.d, self.k, self.n = d, k, n
        self.noise = float("nan") if Y is not None else 0.0
        self.W0 = W0
        self.risk_weight = None
        if r_star is not None and not (isinstance(r_star, int) and 1 <= r_star <= min(d, k)):
            fail("", "r_star", r_star, f"null or an integer in [1, {min(d, k)}]")
        self.r_star = r_star
        self.U_star = self.S_star = self.V_star = None
        if "delta" in arrs:
            D = arrs["delta"]
            # float64 for the same reason as Problem.svd_G: ΔW's factors set every risk's accuracy.
            U, s, Vh = (x.to(tdt) for x in torch.linalg.svd(D.double(), full_matrices=False))
            tol = max(d, k) * torch.finfo(tdt).eps * float(s[0]) if len(s) else 0.0
            numerical_rank = max(1, int((s > tol).sum()))
            rs = r_star if r_star is not None else numerical_rank
            self.r_star = rs
            self.U_star, self.S_star, self.V_star = U[:, :rs], s[:rs], mT(Vh[:rs])
            # ΔW is kept exactly (all numerically nonzero directions), not truncated to r*.
            keep = max(rs, numerical_rank)
            self.delta_L, self.delta_R = U[:, :keep] * s[:keep], Vh[:keep]
        # Y − X W0, or X ΔW for the teacher's own labels (ΔW as kept: ΔL ΔR), as the generator draws it
        R0 = arrs["Y"] - X @ W0 if Y is not None else (X @ self.delta_L) @ self.delta_R
        self._set_statistics(mT(X) @ X / n, mT(X) @ R0 / n, (R0 * R0).sum() / n)
        if Y is not None and "delta" in arrs and _teacher_labels(X_given, Y, W0_given, delta, device):
            self.noise = 0.0
        if self.noise == 0.0:
            self._mark_teacher()
        return self

    # -- sufficient statistics -----------------------------------------------------------------
    @property
    def sigma_hat(self) -> Tensor:
        """Σ̂ = XᵀX/N (Σ itself in the population limit)."""
        if self._sigma is None:
            return torch.eye(self.d, dtype=self.dtype, device=self.device)
        return self._sigma

    @property
    def xty(self) -> Tensor:
        """XᵀY/N = Σ̂ W0 + G."""
        return self.sigma_hat @ self.W0 + self.G

    # -- objective -----------------------------------------------------------------------------
    def _sigma_times(self, A: Tensor) -> Tensor:
        return A if self._sigma is None else left_apply(self._sigma, A)

    fused = True  # the G pass of lorasim.kernels where it applies; False: plain matmuls; a dict: tuned launch
    teacher_step = True  # False: the step reads G even where G = Σ̂ΔW by construction (``teacher_factors``)
    # True: the fused step forms Σ̂A from Σ̂'s upper 2×2 blocks (kernels.symmetric_partials, ¾ of Σ̂'s bytes). Not the
    # default: on an H100 the b = 1 step was 2–3 % faster at d = 16384 only, and slower below 12288 (benchmarks.md).
    sigma_halves = False

    def describe(self) -> dict:
        out = super().describe()
        # what a step reads (problem.json): ΔW's factors where G = Σ̂ΔW by construction, else G itself
        out["step_reads"] = "teacher_factors" if self.teacher_factors() is not None else "G"
        return out

    def _teacher_parts(self) -> tuple:
        """G, Σ̂, ΔL and ΔR with their version counters: a tensor replaced, or changed in place, changes this."""
        return tuple((x, _version(x)) for x in (self.G, self._sigma, self.delta_L, self.delta_R))

    def _mark_teacher(self) -> None:
        """Record that G = Σ̂ ΔL ΔR holds by construction for the G, Σ̂ and ΔW now set (the population limit, or
        noise-free labels): the step then reads Σ̂ΔL and ΔR instead of G. Any of the four replaced or changed in
        place later (a user's own G) ends it; a shift (``shifted``) keeps it, since it moves G and ΔW together."""
        self._teacher_key = self._teacher_parts()

    def teacher_factors(self) -> Optional[tuple[Tensor, Tensor]]:
        """(Σ̂ΔL, ΔR) with G = (Σ̂ΔL) ΔR, while that holds by construction; None otherwise (G from noisy labels
        or the user's data), where the step reads G itself."""
        key = self.__dict__.get("_teacher_key")
        if key is None or not self.teacher_step:
            return None
        for (x, version), now in zip(key, (self.G, self._sigma, self.delta_L, self.delta_R)):
            if x is not now or (version is not None and x._version != version):
                return None
        cached = self.__dict__.get("_teacher")
        if cached is None or cached[0] is not key:
            with self.matmul_mode(training=False):  # full float32 under tf32, whichever call makes it first
                SL = self._sigma_times(self.delta_L).contiguous()
            views = None
            if on_numpy_blas(SL, self.delta_R):  # for _blas_grads: (Σ̂ or None, Σ̂ΔL, ΔR)
                views = (None if self._sigma is None else self._sigma.numpy(), SL.numpy(), self.delta_R.numpy())
            cached = (key, (SL, self.delta_R), views)
            self._teacher = cached
        return cached[1]

    def _g_products(self, A_cat: Tensor, Bt_cat: Tensor) -> tuple[Tensor, Tensor]:
        """(G Bᵀ, Aᵀ G) for side-by-side factors A_cat (d × w) and Bt_cat (k × w), through ΔW's factors where
        G = Σ̂ ΔW by construction."""
        teacher = self.teacher_factors()
        if teacher is not None:
            SL, R = teacher
            return SL @ (R @ Bt_cat), (mT(A_cat) @ SL) @ R
        return self.G @ Bt_cat, mT(A_cat) @ self.G

    def grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        if self.fused is not False and A.shape[:-2] == B.shape[:-2] and on_numpy_blas(A, B, self.G):
            return self._blas_grads(A, B)
        if A.dim() > 2 or (self.fused is not False and kernels.usable(self.G, A.shape[-1])):
            return self._fused_grads(A, B)
        SA = self._sigma_times(A)
        GBt, AtG = self._g_products(A, mT(B))
        return SA @ (B @ mT(B)) - GBt, (mT(A) @ SA) @ B - AtG

    def descend(self, A: Tensor, B: Tensor, lr_A, lr_B) -> bool:
        """A −= lr_A ∇_A and B −= lr_B ∇_B in place, in the gradient's last kernel (``kernels.assemble`` with step
        sizes), where that kernel runs: CUDA (or Triton's interpreter), contiguous batched factors, per-run step
        sizes as tensors. Returns whether it did; if not, nothing changed. Plain GD's step then writes no gradient
        and launches no update of its own (``Solver.descend_in_place``)."""
        tensors = isinstance(lr_A, Tensor) and isinstance(lr_B, Tensor)
        if not (tensors and A.dim() == 3 and A.is_contiguous() and B.is_contiguous() and self.fused is not False
                and kernels.assemble_usable(A, A.shape[-1])):
            return False
        self._fused_grads(A, B, step_sizes=(lr_A, lr_B))
        return True

    def _fused_grads(self, A: Tensor, B: Tensor, step_sizes=None) -> tuple[Tensor, Tensor]:
        """The same gradient with G read once for G Bᵀ and Aᵀ G (lorasim.kernels; plain matmuls
        where the kernel does not apply). A batch of runs is laid side by side as one d × (b·r)
        factor, so Σ̂ and G are read once per step for the whole batch, in one product each. With
        ``step_sizes`` (``descend``): the factors take the step in place, and it returns them, not a gradient."""
        lead, (d, r), k = A.shape[:-2], A.shape[-2:], B.shape[-1]
        wide_tf32 = A.is_cuda and self.matmul_precision == "tf32" and A[..., 0, :].numel() > kernels.MAX_WIDTH
        if wide_tf32:
            # The same d × (b·r) factor, as the transposed view of a (b·r) × d copy: cuBLAS's tf32 GEMMs then take
            # the layout G Bᵀ's view has. On an H100 at d = k = 16384, w = 1024, Σ̂ A ran at 415 TFLOP/s from the
            # view against 376 from a side-by-side copy, Gᵀ A at 391 against 352, and the b = 64 step took 4.55 ms
            # against 5.08 (benchmarks.md). The copy costs what the side-by-side one did (83 µs against 74).
            A_cat = A.reshape(-1, d, r).transpose(1, 2).reshape(-1, d).T
        else:
            A_cat = A.reshape(-1, d, r).permute(1, 0, 2).reshape(d, -1)
        Bt_cat = B.reshape(-1, k).T  # a view: rows of the stacked B are the runs' rows
        prec = kernels.FOR_MATMUL[self.matmul_precision]
        # Σ̂A and G Bᵀ (d × b·r) and (AᵀG)ᵀ (k × b·r), each a product or a stack of partial products whose sum is
        # the product (kernels.skinny_partials): the kernels below sum the stacks as they read them.
        if self._sigma is None:
            SA = A_cat
        elif self.sigma_halves:
            SA = kernels.symmetric_partials(self._sigma, A_cat, precision=prec, fused=self.fused)
        else:
            SA = kernels.skinny_partials(self._sigma, A_cat, precision=prec, fused=self.fused)[0]
        if self.teacher_factors() is not None:  # no pass over G at all
            GBt, AtG = self._g_products(A_cat, Bt_cat)
            AtGt = AtG.T
        elif wide_tf32:
            # A wide batch is compute-bound, and in tf32 cuBLAS's layouts differ there: on an H200 at d = k =
            # 16384, w = 1024, Aᵀ G ran at 223 TFLOP/s, G Bᵀ at 399 and Σ̂ A at 378 (benchmarks.md). So Aᵀ G
            # is formed as (Gᵀ A)ᵀ from a kept transposed copy of G, Σ̂ A's layout. (In float32 the step did
            # not get faster: 33.8 ms against 33.2.)
            GBt, AtGt = self.G @ Bt_cat, self._G_transposed() @ A_cat
        else:
            GBt, AtGt = kernels.skinny_partials(self.G, Bt_cat, A_cat, precision=prec, fused=self.fused)

        def unstack(M):  # d × (b·r) → (..., d, r)
            return M.reshape(d, -1, r).permute(1, 0, 2).reshape(*lead, d, r)

        if step_sizes is None and (self.fused is False or not kernels.assemble_usable(A_cat, r)):
            SA = unstack(kernels.summed(SA))
            AtG = kernels.summed(AtGt).T.reshape(*lead, r, k)
            return SA @ (B @ mT(B)) - unstack(kernels.summed(GBt)), (mT(A) @ SA) @ B - AtG
        # The r×r products in one launch (kernels.gram_partials), then the last step for both factors in another, in
        # the factors' layout (kernels.assemble): ∇_A = (Σ̂A)(BBᵀ) − GBᵀ, and ∇_B through its transpose,
        # Bᵀ(AᵀΣ̂A)ᵀ − (AᵀG)ᵀ. Exact float32 for a float32 problem (r FMAs an entry), tf32 for a tf32 one, as its
        # other training products.
        b, small = A_cat.shape[1] // r, "tf32" if self.matmul_precision == "tf32" else "ieee"
        BBt, AtSA = kernels.gram_partials([(Bt_cat, Bt_cat), (A_cat, SA)], r, small)  # stacks over row chunks
        # Into new gradients, or (descend) into the factors themselves: every product that reads A was formed above,
        # and ∇_B's job reads its rows of Bᵀ before it writes them.
        gA, gB = (A.new_empty(b, d, r), A.new_empty(b, r, k)) if step_sizes is None else (A, B)
        kernels.assemble([(SA, BBt, GBt, gA), (Bt_cat, mT(AtSA), AtGt, mT(gB))], small, step_sizes)
        return gA.reshape(*lead, d, r), gB.reshape(*lead, r, k)

    def _blas_grads(self, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
        """``_fused_grads`` on the CPU, through numpy's BLAS (``linalg.matmul`` says why): the runs side by
        side as d × (b·r), so Σ̂, G and Gᵀ are each read once per step for the whole batch (Σ̂ alone for a
        teacher's G, through Σ̂ΔL and ΔR), and every product is one BLAS call on views (the batch's small r×r
        products included). T1's gradient (5 runs, d = k = 100, r = 8): 53 µs from the teacher's factors, 76
        from G."""
        (d, r), k = A.shape[-2:], B.shape[-1]
        An, Bn = self._numpy_factors(A, B)
        b = An.shape[0]
        teacher = self.teacher_factors() is not None
        if teacher:
            sigma, SL, R = self._teacher[2]
        else:
            sigma, G, G_T = self._numpy_statistics()
        with np.errstate(all="ignore"):  # a diverging run overflows quietly, as under torch
            A_cat = An.transpose(1, 0, 2).reshape(d, b * r)
            SA = A_cat if sigma is None else sigma @ A_cat
            SA = SA.reshape(d, b, r).transpose(1, 0, 2)  # (b, d, r) views of the side-by-side products
            gA = SA @ (Bn @ Bn.transpose(0, 2, 1))
            B_cat = Bn.reshape(b * r, k)
            gA -= ((B_cat @ R.T) @ SL.T if teacher else B_cat @ G_T).reshape(b, r, d).transpose(0, 2, 1)
            gB = (An.transpose(0, 2, 1) @ SA) @ Bn
            gB -= ((A_cat.T @ SL) @ R if teacher else A_cat.T @ G).reshape(b, r, k)
        if A.dim() != 3:
            gA, gB = gA.reshape(A.shape), gB.reshape(B.shape)
        return torch.from_numpy(gA), torch.from_numpy(gB)

    def _numpy_factors(self, A: Tensor, B: Tensor) -> tuple:
        """A and B as (b, d, r) and (b, r, k) numpy views. A training loop steps the same two tensors in place, so
        their views are kept while the tensors, their storage and layout are the same: making them cost a T1 step
        2.6 µs. (Shapes change on numpy views: torch's reshapes in and out cost it 3 µs.) The problem thereby holds
        the last factors it stepped until it steps others: one batch's A and B."""
        key = (A.data_ptr(), A.shape, A.stride(), B.data_ptr(), B.shape, B.stride())
        cached = self.__dict__.get("_np_factors")
        if cached is None or cached[0] is not A or cached[1] is not B or cached[2] != key:
            (d, r), k = A.shape[-2:], B.shape[-1]
            An, Bn = A.detach().numpy(), B.detach().numpy()
            views = An.reshape(-1, d, r), Bn.reshape(-1, r, k)
            if not (np.may_share_memory(views[0], An) and np.may_share_memory(views[1], Bn)):
                return views  # a layout the reshape had to copy: a copy is not kept (it would not see the steps)
            cached = (A, B, key, views)
            self._np_factors = cached
        return cached[3]

    def _numpy_statistics(self) -> tuple:
        """(Σ̂ or None, G, Gᵀ) as numpy views, kept until G or Σ̂ are replaced or G is changed in place (Gᵀ is a
        copy): a step's conversions cost as much as one of its small products."""
        cached = self.__dict__.get("_np_stats")
        if (cached is None or cached[0] is not self.G or cached[1] is not self._sigma
                or cached[2] != _version(self.G)):
            sigma = None if self._sigma is None else self._sigma.numpy()
            cached = (self.G, self._sigma, _version(self.G), (sigma, self.G.numpy(), self._G_transposed().numpy()))
            self._np_stats = cached
        return cached[3]

    def _G_transposed(self) -> Tensor:
        """Gᵀ, contiguous, kept until G is replaced or changed in place (d·k more memory; made by a batch's first,
        uncaptured step)."""
        cached = self.__dict__.get("_G_T")
        if cached is None or cached[0] is not self.G or cached[1] != _version(self.G):
            cached = (self.G, _version(self.G), self.G.T.contiguous())
            self._G_T = cached
        return cached[2]

    def full_grad(self, D: Tensor) -> Tensor:
        return self._sigma_times(D) - self.G

    def metric_elems(self, r: int) -> int:
        # Loss from the sufficient statistics, error norms from thin QRs of d × (r + r*) and k × (r + r*)
        # factors; the Cholesky path's residual is chunked to its own bound.
        return 4 * (self.d + self.k) * (r + (self.r_star or r))

    def loss(self, A: Tensor, B: Tensor) -> Tensor:
        """Empirical loss (1/2N)‖X(W0 + AB) − Y‖_F²; the population loss when N = population."""
        if self.n is None:
            return self.risk(A, B) + self._loss_floor
        if self._chol is not None:
            return 0.5 * _chunked_sq_residual(left_apply(mT(self._chol), A), B, self._loss_target) + self._loss_floor
        SA = self._sigma @ A
        return (self._loss0 - ((mT(A) @ self.G) * B).sum(dim=(-2, -1))
                + 0.5 * ((mT(A) @ SA) * (B @ mT(B))).sum(dim=(-2, -1)))

    def shifted(self, L: Tensor, R: Tensor) -> "LinearTeacher":
        # G moves by Σ̂ L R and ΔW to [ΔL, L][ΔR; R]: G = Σ̂ ΔW still holds where it held before the shift
        teacher = self.teacher_factors() is not None
        new = super().shifted(L, R)
        if teacher:
            new._mark_teacher()
        return new

    def _regradient(self, L: Tensor, R: Tensor) -> None:
        SL = self._sigma_times(L)
        if self.n is not None:
            # L(W0 − LR) = L(W0) + ⟨LR, G⟩ + ½ tr((LR)ᵀ Σ̂ LR); the least-squares floor is unchanged.
            self._loss0 = self._loss0 + ((mT(L) @ self.G) * R).sum() + 0.5 * ((mT(L) @ SL) * (R @ mT(R))).sum()
            if self._chol is not None:
                self._loss_target = self._loss_target + (mT(self._chol) @ L) @ R
        self.G = self.G + SL @ R
