"""Shared numerics of the claims (not a claim: lorasim-verify only runs cNN_/pNN_ modules), written
independently of lorasim's own metrics so that the claims can check them: subspace angles, the
float64 truth ΔW, the product dynamics linearised at a solution and its contraction (C9, C10, C13), extreme
eigenvalues, and a threshold's first crossing on a grid, refined by bisection (P1, P3).

``extreme_eigenvalues`` returns the smallest and largest eigenvalue of a symmetric operator given
by its action on a block of vectors. Several claims need only these two numbers of a d×d matrix
(‖Σ̂‖_op, ‖Σ̂ − I‖_op, cond(Σ̂), the contraction ρ = max|1 − ημ| of a linearised map), and a full
``eigvalsh`` of a 4096×4096 float64 matrix costs about a second on a GPU, a Lanczos run tens of
milliseconds. Below ``dense_below`` the operator is materialised and ``torch.linalg.eigvalsh`` is
used (exact to round-off; the ci scale always takes this path).

Lanczos with full (twice-repeated classical Gram–Schmidt) reorthogonalisation, from a fixed-seed
random start, stops when both extreme Ritz pairs have residual |β_m s_{m,i}| ≤ rtol·max|θ|. For a
symmetric operator the eigenvalue error is ≤ that residual and ≤ residual²/gap, so with the default
rtol = 1e−12 the extremes are accurate to round-off whenever they are separated from the rest of
the spectrum by more than ~1e−12 relative (checked against eigvalsh in tests/test_theory.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from lorasim import streams
from lorasim.config import InitConfig, build
from lorasim.inits import make_init

EPS = float(np.finfo(np.float64).eps)


def extreme_eigenvalues(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, *, dtype=torch.float64,
                        device="cpu", dense_below: int = 512, rtol: float = 1e-12, max_iter: int = 1500,
                        check_every: int = 25, seed: int = 0) -> tuple[float, float]:
    """(λ_min, λ_max) of the symmetric n×n operator v ↦ matvec(v) (v: n×p)."""
    if n <= dense_below:
        M = matvec(torch.eye(n, dtype=dtype, device=device))
        ev = torch.linalg.eigvalsh(0.5 * (M + M.T))
        return float(ev[0]), float(ev[-1])
    return _lanczos(matvec, n, dtype, device, rtol, max_iter, check_every, seed)


def sym_extremes(M: torch.Tensor, **kw) -> tuple[float, float]:
    """(λ_min, λ_max) of an explicit symmetric matrix."""
    return extreme_eigenvalues(lambda v: M @ v, M.shape[0], dtype=M.dtype, device=M.device, **kw)


def spd_norm(M: torch.Tensor, **kw) -> float:
    """‖M‖_op of a symmetric positive semi-definite matrix (its largest eigenvalue)."""
    return sym_extremes(M, **kw)[1]


def _lanczos(matvec, n, dtype, device, rtol, max_iter, check_every, seed):
    from scipy.linalg import eigh_tridiagonal

    gen = streams.generator(seed, "theory/lanczos_start")
    q = torch.randn(n, 1, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    q = q / torch.linalg.vector_norm(q)
    m_max = min(n, max_iter)
    Q = torch.zeros(n, m_max, dtype=dtype, device=device)
    alpha = torch.zeros(m_max, dtype=dtype, device=device)
    beta = torch.zeros(m_max, dtype=dtype, device=device)
    for j in range(m_max):
        Q[:, j:j + 1] = q
        w = matvec(q)
        Qj = Q[:, :j + 1]
        h = Qj.T @ w
        w = w - Qj @ h
        h2 = Qj.T @ w  # second pass: full reorthogonalisation to working precision
        w = w - Qj @ h2
        alpha[j] = (h + h2)[j, 0]
        b = torch.linalg.vector_norm(w)
        beta[j] = b
        # After a breakdown (b = 0: the Krylov space is invariant, e.g. Σ̂ = I) q stays 0 and the
        # later coefficients are 0; the check below keeps only the block before the breakdown.
        q = torch.where(b > 0, w / torch.where(b > 0, b, 1.0), torch.zeros_like(w))
        m = j + 1
        if m % check_every and m != m_max:
            continue
        a = alpha[:m].cpu().numpy()
        bb = beta[:m].cpu().numpy()
        scale = max(np.abs(a).max(), np.abs(bb).max(), np.finfo(float).tiny)
        broken = np.nonzero(bb <= 1e-14 * scale)[0]
        if m == n or len(broken):  # the Krylov space is complete (or invariant): exact
            m = int(broken[0]) + 1 if len(broken) else m
            ev = eigh_tridiagonal(a[:m], bb[:m - 1], eigvals_only=True)
            return float(ev[0]), float(ev[-1])
        lo_v, lo_s = eigh_tridiagonal(a, bb[:-1], select="i", select_range=(0, 0))
        hi_v, hi_s = eigh_tridiagonal(a, bb[:-1], select="i", select_range=(m - 1, m - 1))
        res = max(abs(bb[-1] * lo_s[-1, 0]), abs(bb[-1] * hi_s[-1, 0]))
        if res <= rtol * max(abs(lo_v[0]), abs(hi_v[0])):
            return float(lo_v[0]), float(hi_v[0])
    raise RuntimeError(f"Lanczos did not converge in {m_max} steps (residual {res:.2g})")


def sqrt_low_rank_shift(Y: torch.Tensor, shift: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ (shift·I + Y Yᵀ)^{1/2} v for a thin Y (d×p), without forming a d×d matrix.

    With Y = Q diag(s) Wᵀ (thin SVD), (shift·I + YYᵀ)^{1/2} = √shift·(I + Q diag(c) Qᵀ),
    c = √(1 + s²/shift) − 1."""
    Q, s, _ = torch.linalg.svd(Y, full_matrices=False)
    c = torch.sqrt(1 + s * s / shift) - 1
    root = math.sqrt(shift)
    return lambda v: root * (v + Q @ (c[:, None] * (Q.T @ v)))


def fro(x: torch.Tensor) -> float:
    """‖x‖_F (the 2-norm of all entries) as a float."""
    return float(torch.linalg.vector_norm(x))


def sin_theta(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """‖(I − U1U1ᵀ)U2‖_op for orthonormal bases (batched over leading dimensions of U2), from an SVD."""
    return torch.linalg.matrix_norm(U2 - U1 @ (U1.T @ U2), ord=2)


def sampling_tilt(prob) -> float:
    """sinΘ(U_{r*}(G♮), U*), the sampling tilt that small-random-init GD settles on (C3, C4)."""
    return float(sin_theta(prob.svd_G()[0][:, :prob.r_star], prob.U_star))


def op_norm_product(L: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """‖L R‖_op of a thin product (L m×r, R r×n) from the QRs of L and Rᵀ: no m×n matrix."""
    return torch.linalg.matrix_norm(torch.linalg.qr(L)[1] @ torch.linalg.qr(R.T)[1].T, ord=2)


def truth(prob) -> torch.Tensor:
    """ΔW in float64 as the exact product of the problem's stored factors (the labels' target)."""
    return prob.delta_L.double() @ prob.delta_R.double()


def init_factors(prob, name: str, rank: int, seed: int = 0, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(A0, B0) of lorasim's init ``name`` (its keywords ``kw``) on ``prob``."""
    it = make_init(prob, rank, build(InitConfig, dict(name=name, **kw), where="init"), seed=seed)
    return it.A.clone(), it.B.clone()


def gd_orders(prob, A0: torch.Tensor, eta: float, steps: int, tilt: bool = True):
    """GD from (A0, B0 = 0) on the noiseless linear model, order by order in the size of A0 (C3, C6): yields
    (t, ((Â, B̂), (Ã, B̃), (Ǎ, B̌))) for t = 0..steps, with A_t = Â_t + Ã_t + Ǎ_t + … and B_t likewise, the terms
    homogeneous of degree 1, 3 and 5 in A0 (with A0 = α·Â_0, α²Ã and α⁴Ǎ relative to Â). Â, B̂ is the linear
    map z ↦ Mz (C6's closed form), Ã, B̃ the first correction (GD's cubic terms −η(Σ̂ABBᵀ; AᵀΣ̂AB) on the linear
    phase), Ǎ, B̌ the next. Independent of lorasim's solvers: Σ̂ and G♮ are read from the problem, in its dtype.
    ``tilt=False`` (C3's mutant) puts I for Σ̂ in the cubic terms."""
    S, G = prob.sigma_hat, prob.G
    if not tilt:
        S = torch.eye(prob.d, dtype=S.dtype, device=S.device)
    zA, zB = torch.zeros_like(A0), torch.zeros(A0.shape[1], prob.k, dtype=A0.dtype, device=A0.device)
    Ah, Bh, At, Bt, Ac, Bc = A0, zB, zA, zB, zA, zB
    for t in range(steps + 1):
        yield t, ((Ah, Bh), (At, Bt), (Ac, Bc))
        if t == steps:
            return
        SAh = S @ Ah
        Ah, Bh, At, Bt, Ac, Bc = (
            Ah + eta * G @ Bh.T, Bh + eta * Ah.T @ G,
            At + eta * (G @ Bt.T - SAh @ (Bh @ Bh.T)), Bt + eta * (At.T @ G - (Ah.T @ SAh) @ Bh),
            Ac + eta * (G @ Bc.T - S @ (At @ (Bh @ Bh.T) + Ah @ (Bt @ Bh.T + Bh @ Bt.T))),
            Bc + eta * (Ac.T @ G - (At.T @ SAh + SAh.T @ At) @ Bh - (Ah.T @ SAh) @ Bt))


def slope_roundoff(x, rel_err: float) -> float:
    """The most a least-squares slope of y on ``x`` moves when every y is off by at most ``rel_err`` in ln y:
    Σ|x − x̄|·max|δ|/Σ(x − x̄)² (C3, C6: a round-off floor derived before the fit)."""
    dx = np.asarray(x, dtype=float) - float(np.mean(x))
    return float(np.abs(dx).sum() / (dx**2).sum()) * rel_err


def linear_map(prob, eta: float, M1: torch.Tensor, M2: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """F ↦ F − η(Σ̂ F M1 + M2 Σ̂ F): the product dynamics linearised at a solution, on the invariant
    subspace E = F V*ᵀ (M1 = V*ᵀ BᵀB V* and M2 = AAᵀ for GD; the damped projections for PrecGD)."""
    Sh = prob.sigma_hat.double()

    def step(F):
        SF = Sh @ F
        return F - eta * (SF @ M1 + M2 @ SF)

    return step


def contraction(prob, eta: float, M1: torch.Tensor, Y: torch.Tensor) -> float:
    """ρ = max|1 − ημ| over the spectrum of K = (I⊗Σ̂^{1/2})(M1⊗I + I⊗M2)(I⊗Σ̂^{1/2}), M2 = YYᵀ.

    With M1 = WΛWᵀ, K is orthogonally similar (by W⊗I, which commutes with I⊗Σ̂^{1/2} and I⊗M2) to
    blockdiag_j Σ̂^{1/2}(Λ_j I + M2)Σ̂^{1/2}, whose spectrum is that of the symmetric
    T_jΣ̂T_j, T_j = (Λ_j I + M2)^{1/2} = √Λ_j(I + Q diag(c) Qᵀ) from the thin SVD of Y (no d×d root).
    Each block's spectrum increases with Λ_j (Loewner order), so μ_min is that of the smallest Λ_j and
    μ_max that of the largest: two extreme-eigenvalue problems (Lanczos at large d)."""
    Sh = prob.sigma_hat.double()
    lam = torch.linalg.eigvalsh(M1)
    ends = []
    for l, which in ((float(lam[0]), 0), (float(lam[-1]), 1)):
        T = sqrt_low_rank_shift(Y, l)
        ends.append(extreme_eigenvalues(lambda v, T=T: T(Sh @ T(v)), Sh.shape[0], device=Sh.device)[which])
    return max(abs(1 - eta * ends[0]), abs(1 - eta * ends[1]))


def linearisation(prob, solver: str, A=None, B=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(M1, Y), M2 = YYᵀ, of ``linear_map`` for GD or PrecGD (λ = 0) at a solution: balanced (A, B None)
    or at the given factors."""
    V = prob.V_star.double()
    if A is None:
        U, S = prob.U_star.double(), prob.S_star.double()
        if solver == "gd":
            return torch.diag(S), U * S.sqrt()
        return torch.eye(len(S), dtype=S.dtype, device=S.device), U
    BV = B @ V
    if solver == "gd":
        return BV.T @ BV, A
    return BV.T @ torch.linalg.solve(B @ B.T, BV), torch.linalg.qr(A)[0]  # V*ᵀP_BV*, P_A = QQᵀ


def initial_F(prob) -> torch.Tensor:
    """F_0 of the spectral init: A0B0 − ΔW = G♮ − ΔW = (Σ̂ − I)ΔW = (Σ̂ − I)U*S* V*ᵀ."""
    U, S = prob.U_star.double(), prob.S_star.double()
    return prob.sigma_hat.double() @ (U * S) - U * S


def crossing(step, F: torch.Tensor, eps: float, max_steps: int, chunk: int = 64) -> float:
    """First t with ½‖F_t‖² < eps under F_{t+1} = step(F_t); inf if not within max_steps.
    The risks are read back to the host once per ``chunk`` steps (no sync per step)."""
    t0 = 0
    while t0 <= max_steps:
        risks = []
        for _ in range(min(chunk, max_steps + 1 - t0)):
            risks.append(0.5 * (F * F).sum())
            F = step(F)
        hit = np.nonzero(torch.stack(risks).cpu().numpy() < eps)[0]
        if len(hit):
            return t0 + int(hit[0])
        t0 += len(risks)
    return math.inf


def first_below(values, eps: float) -> float:
    """The first index with value < eps; inf if none."""
    hit = np.nonzero(np.asarray(values) < eps)[0]
    return int(hit[0]) if len(hit) else math.inf


def first_crossing(x, y, thr: float, never: float = math.nan):
    """(where ``y`` first exceeds ``thr`` scanning up the grid ``x``, interpolated linearly between the
    bracketing grid points; that bracket (x_{i−1}, x_i)). ``never`` if y never exceeds thr, −inf if y[0]
    already does (the bracket is None in both cases)."""
    y = np.asarray(y, dtype=float)
    above = np.nonzero(y > thr)[0]
    if len(above) == 0:
        return never, None
    i = above[0]
    if i == 0:
        return -math.inf, None
    x0, x1 = x[i - 1], x[i]
    return x0 + (thr - y[i - 1]) * (x1 - x0) / (y[i] - y[i - 1]), (x0, x1)


def bisect(above: Callable[[float], bool], a: float, b: float, iters: int) -> float:
    """The midpoint of [a, b] after ``iters`` halvings that keep ``above`` false at a and true at b."""
    for _ in range(iters):
        mid = 0.5 * (a + b)
        a, b = (a, mid) if above(mid) else (mid, b)
    return 0.5 * (a + b)
