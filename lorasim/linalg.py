"""Small dense linear-algebra kernels shared by problems, inits, solvers and metrics.

Everything here works on a trailing (rows, cols) pair of dimensions, so a leading
batch dimension passes straight through (the GPU backend batches runs that way).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

Tensor = torch.Tensor
_NUMPY_DTYPES = (torch.float32, torch.float64)


def on_numpy_blas(*xs: Tensor) -> bool:
    """Whether ``matmul`` takes these tensors through numpy: floats of one dtype on the CPU, untracked by
    autograd."""
    dtype, grad = xs[0].dtype, torch.is_grad_enabled()
    if dtype not in _NUMPY_DTYPES:
        return False
    for x in xs:
        if not x.is_cpu or x.dtype != dtype or (grad and x.requires_grad):
            return False
    return True


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b, with CPU products through numpy's BLAS (OpenBLAS in numpy's wheels).

    torch's CPU wheels use oneMKL, whose small and skinny products ran 2–4× slower than OpenBLAS's on
    the AMD CPUs lorasim is benchmarked on (100×100·100×8: 14.8 µs against 3.9; benchmarks.md): the
    step and the metric rows are made of such products. Anything autograd tracks, or not a float on
    the CPU, takes torch.matmul. numpy's BLAS threads follow ``set_threads``."""
    if not on_numpy_blas(a, b):
        return a @ b
    with np.errstate(all="ignore"):  # a diverging run overflows quietly, as under torch
        return torch.from_numpy(np.asarray(np.matmul(a.detach().numpy(), b.detach().numpy())))


def finite_sum(*xs: Tensor) -> bool:
    """Whether the sum of all entries of xs is finite: it is not when an entry is not (or when a finite sum
    overflows, which only costs a caller its exact check). On the CPU through numpy, whose reductions cost a
    fraction of torch's sum and host copy."""
    if on_numpy_blas(*xs):
        return _sum_finite([x.detach().numpy() for x in xs])
    return bool(torch.isfinite(sum(x.sum() for x in xs)))


def finite_sum_check(*xs: Tensor):
    """``finite_sum`` bound to tensors that are updated in place (a training loop's factors): a callable
    () -> bool, which on the CPU sums numpy views made once (a loop checks after every step, and the views'
    making cost as much as the sums)."""
    if not on_numpy_blas(*xs):
        return lambda: finite_sum(*xs)
    views = [x.detach().numpy() for x in xs]
    if not all(v.flags.c_contiguous for v in views):  # a flat view of these would be a copy
        return lambda: _sum_finite(views)
    # The sum as a dot product with ones (BLAS): 3.3 µs a T1 step against 5.0 for the sums' reductions.
    flat = [(v.reshape(-1), np.ones(v.size, dtype=v.dtype)) for v in views]

    def check() -> bool:
        total = 0.0
        with np.errstate(all="ignore"):
            for v, ones in flat:
                total += float(v.dot(ones))
        return math.isfinite(total)
    return check


def _sum_finite(arrays) -> bool:
    total = 0.0
    with np.errstate(all="ignore"):
        for a in arrays:
            total += float(a.sum())
    return math.isfinite(total)


def slot_copier(*pairs: tuple[Tensor, Tensor]):
    """For (buffer, x) pairs, with x updated in place: a callable n -> None that copies each x into slot n
    of its buffer. On the CPU through numpy views made once: a loop that keeps its state at every step
    copied T1's 32 KB factors in 1.4–2.4 µs against 3.4–7.0 through torch's ``copy_``."""
    if not all(on_numpy_blas(buffer, x) for buffer, x in pairs):
        def copy(n: int) -> None:
            for buffer, x in pairs:
                buffer[n].copy_(x)
        return copy
    views = [(buffer.detach().numpy(), x.detach().numpy()) for buffer, x in pairs]

    def copy(n: int) -> None:
        for buffer, x in views:
            np.copyto(buffer[n], x)
    return copy


def frobenius_sq(x: Tensor) -> Tensor:
    """‖x‖_F² over the trailing two dimensions; on the CPU through numpy (torch's reduction over two dimensions
    of a small stacked matrix cost 2× more), whose sum is pairwise: einsum's running sum was 16× less accurate
    in float32 (2.2e-6 against 1.4e-7 over 65536 terms), 30× in float64."""
    if on_numpy_blas(x):
        a = x.detach().numpy()
        with np.errstate(all="ignore"):
            return torch.from_numpy(np.asarray(np.square(a).sum(axis=(-2, -1))))
    return (x * x).sum(dim=(-2, -1))


def set_threads(n: int) -> None:
    """Use n CPU threads: torch's, and numpy's BLAS (``matmul``), which would otherwise take every core."""
    torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


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


def left_apply(M: Tensor, X: Tensor) -> Tensor:
    """M @ X for one matrix M (m×n) and a batch X (..., n, p), as one GEMM over the side-by-side
    columns of X: broadcasting would run one small product per batch element instead."""
    if X.dim() == 2:
        return M @ X
    lead, (n, p) = X.shape[:-2], X.shape[-2:]
    flat = X.reshape(-1, n, p).permute(1, 0, 2).reshape(n, -1)
    return matmul(M, flat).reshape(M.shape[0], -1, p).permute(1, 0, 2).reshape(*lead, M.shape[0], p)


def top_left(M: Tensor, p: int) -> Tensor:
    """Orthonormal basis of the top-p left singular subspace of M."""
    U, _, _ = torch.linalg.svd(M, full_matrices=False)
    return U[..., :p]


def product_norms(L: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """Operator and Frobenius norms of L @ R without forming the d×k product.

    L is d×m and R is m×k with m small. With L = Q1 T1 and Rᵀ = Q2 T2 (thin QR),
    L R = Q1 (T1 T2ᵀ) Q2ᵀ, so the norms are those of the m×m core. QR is backward
    stable, so the result keeps full relative accuracy even when L R is a small
    difference of large terms (a risk near convergence), which an expanded
    ‖A B‖² − 2⟨·,·⟩ + ‖Δ‖² formula does not.
    """
    _, T1 = torch.linalg.qr(L, mode="r")  # R alone: forming Q would double the cost
    _, T2 = torch.linalg.qr(mT(R), mode="r")
    core = T1 @ mT(T2)
    # Finite but huge factors (a diverging run) overflow the core: LAPACK must never see inf or NaN
    # (oneMKL prints DLASCL errors, other builds raise). Such a product's norms are inf (NaN from NaN).
    # Checked on the device, without a host sync, so this stays capturable in a CUDA graph.
    finite = torch.isfinite(core).flatten(-2).all(-1)
    s = torch.linalg.svdvals(torch.where(finite[..., None, None], core, torch.zeros_like(core)))
    bad = torch.where(torch.isnan(core).flatten(-2).any(-1), math.nan, math.inf).to(core.dtype)
    return torch.where(finite, s[..., 0], bad), torch.where(finite, torch.linalg.vector_norm(s, dim=-1), bad)


def product_fro(L: Tensor, R: Tensor) -> Tensor:
    """‖L @ R‖_F without the d×k product, from one thin QR: with L = Q T, ‖L R‖_F = ‖T R‖_F (m×k).

    As accurate as ``product_norms`` (QR is backward stable), at one QR and no SVD: the Frobenius norm
    is all a risk needs. Non-finite L or R gives inf (NaN from NaN), and LAPACK never sees them."""
    # A sum is non-finite when a term is (a finite overflow only costs the exact check): one pass, not two.
    if not bool(torch.isfinite(L.sum(dim=(-2, -1)) + R.sum(dim=(-2, -1))).all()):
        finite = torch.isfinite(L).flatten(-2).all(-1) & torch.isfinite(R).flatten(-2).all(-1)
        if not bool(finite.all()):  # (all finite: the sum overflowed, and huge factors are LAPACK-safe)
            nan = torch.isnan(L).flatten(-2).any(-1) | torch.isnan(R).flatten(-2).any(-1)
            keep = finite[..., None, None]
            norm = _qr_fro(torch.where(keep, L, torch.zeros_like(L)), torch.where(keep, R, torch.zeros_like(R)))
            return torch.where(finite, norm, torch.where(nan, math.nan, math.inf).to(norm.dtype))
    return _qr_fro(L, R)


def _qr_fro(L: Tensor, R: Tensor) -> Tensor:
    _, T = torch.linalg.qr(L, mode="r")
    return torch.linalg.vector_norm(matmul(T, R), dim=(-2, -1))


def damped_gram_solve_right(g: Tensor, F: Tensor, damping: float, inverse: str,
                            shift: Optional[Tensor] = None) -> Tensor:
    """g (F Fᵀ + λI + shift)⁻¹ for g of shape (..., n, r) and F of shape (..., r, m).

    ``shift`` (..., r, r) is added to the Gram: the batch engine puts 1 on the diagonal of the
    zero-padded rows of a run whose rank is below the batch's, so those stay exactly zero.

    Never synchronises with the host, so it can sit inside a captured CUDA graph. Where a
    run's Gram is singular (e.g. B = 0 with λ = 0) that run falls back to the identity, as
    the official AdamWr does when its inversion fails; the other runs of a batch are untouched.
    """
    gram = F @ mT(F)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    gram = gram + damping * eye
    if shift is not None:
        gram = gram + shift
    # A diverging run's Gram can overflow: LAPACK never sees it (that run gets g, the loop then sees
    # its factors blow up and marks it diverged).
    finite = torch.isfinite(gram).flatten(-2).all(-1)
    gram = torch.where(finite[..., None, None], gram, eye)
    if inverse == "pinv":
        return g @ torch.linalg.pinv(gram, hermitian=True)  # the identity where the Gram overflowed
    sol, info = torch.linalg.solve_ex(gram, mT(g))  # gram is symmetric
    ok = (info == 0) & finite & torch.isfinite(sol).all(dim=(-2, -1))
    return torch.where(ok[..., None, None], mT(sol), g)


def damped_gram_inverse(gram: Tensor, damping: float, inverse: str) -> Tensor:
    """(gram + λI)⁻¹ for a batch of symmetric r×r Grams (..., r, r), without a host sync.

    The explicit inverse is what the LLM optimizers apply (one batched inversion for every LoRA
    layer of a model, then one small product per layer). Where a Gram is singular the identity is
    returned for it, as the official AdamWr does when its inversion fails.
    """
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    damped = gram + damping * eye
    finite = torch.isfinite(damped).flatten(-2).all(-1)  # LAPACK never sees an overflowed Gram
    damped = torch.where(finite[..., None, None], damped, eye)
    if inverse == "pinv":
        return torch.linalg.pinv(damped, hermitian=True)  # the identity where the Gram overflowed
    inv, info = torch.linalg.inv_ex(damped)
    ok = (info == 0) & finite & torch.isfinite(inv).all(dim=(-2, -1))
    return torch.where(ok[..., None, None], inv, eye.expand_as(inv))
