"""Small dense linear-algebra kernels shared by problems, inits, solvers and metrics.

Everything here works on a trailing (rows, cols) pair of dimensions, so a leading
batch dimension passes straight through (the GPU backend batches runs that way).
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor


def mT(x: Tensor) -> Tensor:
    return x.transpose(-1, -2)


def gaussian(*shape, generator: torch.Generator, dtype, device) -> Tensor:
    """N(0, 1) entries drawn in float64 and cast, so a seed gives the same instance in any dtype."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64, device=device).to(dtype)


def random_orthonormal(n: int, p: int, generator: torch.Generator, dtype, device) -> Tensor:
    """An n×p matrix with orthonormal columns, Haar-distributed (QR of a Gaussian, sign-fixed)."""
    z = gaussian(n, p, generator=generator, dtype=torch.float64, device=device)
    q, r = torch.linalg.qr(z)
    # Without the sign fix, QR's convention makes the distribution not Haar.
    sign = torch.sign(torch.diagonal(r))
    return (q * torch.where(sign != 0, sign, torch.ones_like(sign))).to(dtype)


def top_left(M: Tensor, p: int) -> Tensor:
    """Orthonormal basis of the top-p left singular subspace of M."""
    U, _, _ = torch.linalg.svd(M, full_matrices=False)
    return U[..., :p]


def top_right(M: Tensor, p: int) -> Tensor:
    """Orthonormal basis of the top-p right singular subspace of M (as columns)."""
    _, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return mT(Vh[..., :p, :])


def product_norms(L: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """Operator and Frobenius norms of L @ R without forming the d×k product.

    L is d×m and R is m×k with m small. With L = Q1 T1 and Rᵀ = Q2 T2 (thin QR),
    L R = Q1 (T1 T2ᵀ) Q2ᵀ, so the norms are those of the m×m core. QR is backward
    stable, so the result keeps full relative accuracy even when L R is a small
    difference of large terms (a risk near convergence), which an expanded
    ‖A B‖² − 2⟨·,·⟩ + ‖Δ‖² formula does not.
    """
    _, T1 = torch.linalg.qr(L)
    _, T2 = torch.linalg.qr(mT(R))
    core = T1 @ mT(T2)
    s = torch.linalg.svdvals(core)
    return s[..., 0], torch.linalg.vector_norm(s, dim=-1)


def damped_gram_solve_right(g: Tensor, F: Tensor, damping: float, inverse: str) -> Tensor:
    """g (F Fᵀ + λI)⁻¹ for g of shape (..., n, r) and F of shape (..., r, m)."""
    gram = F @ mT(F)
    gram = gram + damping * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    if inverse == "pinv":
        return g @ torch.linalg.pinv(gram, hermitian=True)
    sol, info = torch.linalg.solve_ex(gram, mT(g))  # gram is symmetric
    if bool((info != 0).any()) or not bool(torch.isfinite(sol).all()):
        # Singular Gram (e.g. B = 0 with λ = 0): fall back to the identity, as the
        # official AdamWr does when its inversion fails.
        return g
    return mT(sol)
