"""The top-r singular triplets of −G for every target layer: how LoRA-One's init factorises.

LoRA-One needs, per layer, [−G]_r = U_r S_r V_rᵀ (G = ∇_W L, out × in). Three ways, one setting:

    official    torch.svd_lowrank(−G, q = 512, niter = 16), one layer at a time: the reference
                recipe (SPEC §6.2) bit for bit, test matrix from the "llm/svd_sketch" stream.
    exact       the truncated SVD of the full matrix (torch.linalg.svd), layers of one shape batched.
    randomized  a randomized range finder with q = r + oversample columns and ``niter`` power
                iterations (each re-orthonormalised), then an SVD of the q × in projection
                (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1); layers of one shape batched.

Batching stacks at most ``chunk_bytes`` of gradients at a time, so the extra memory is bounded
whatever the model's size. Everything runs on ``device`` (default: the gradients' own; gradients
summed on the host travel to the GPU a chunk at a time), in fp32 unless ``dtype`` says otherwise. The result is {name: (U out × r, S (r,), V in × r)} of −G, largest first.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from .. import streams

SVD_METHODS = ("official", "exact", "randomized")
DEFAULT_SVD = "randomized"  # the measurements behind this choice: benchmarks.md, "LLM init"
CHUNK_BYTES = 1 << 30  # stacked gradients per batched call: bounded extra memory, still large GEMMs


def top_r(gradients: dict[str, torch.Tensor], r: int, method: str = DEFAULT_SVD, q: int = 512, niter: int = 16,
          oversample: int = 8, seed: int = 0, chunk_bytes: int = CHUNK_BYTES, device=None,
          dtype: Optional[torch.dtype] = None) -> dict[str, tuple]:
    """{name: (U_r, S_r, V_r)} of −gradients[name] for each layer, by ``method`` (module docstring).
    ``q`` is official's sketch size; ``oversample`` randomized's (q = r + oversample); ``niter`` both's
    power iterations. ``device``: where to factorise (default: where each gradient is; gradients summed
    on the host travel there one chunk at a time). ``dtype``: the working precision (default: the
    gradients' own, at least fp32; official always works in fp32)."""
    if method not in SVD_METHODS:
        raise ValueError(f"svd={method!r}: allowed one of {', '.join(SVD_METHODS)}")
    if not gradients:
        return {}
    smallest = min(min(g.shape) for g in gradients.values())
    if not (isinstance(r, int) and 1 <= r <= smallest):
        raise ValueError(f"r={r!r}: allowed an integer in [1, {smallest}]")
    if method == "official":
        return {name: official_top_r(g.to(device or g.device), r, q, niter, seed) for name, g in gradients.items()}
    out = {}
    for names, stack in _same_shape_chunks(gradients, chunk_bytes, device, dtype):
        if method == "exact":
            U, S, Vh = torch.linalg.svd(stack, full_matrices=False)
            U, S, V = U[..., :r], S[..., :r], Vh[..., :r, :].mT
        else:
            U, S, V = randomized_top_r(stack, r, r + oversample, niter, seed)
        del stack
        for i, name in enumerate(names):  # −G = (−U) S Vᵀ: the sign goes on U, G is never negated in memory
            out[name] = (-U[i], S[i].contiguous(), V[i].contiguous())
    return out


def official_top_r(grad: torch.Tensor, r: int, q: int = 512, niter: int = 16, seed: int = 0) -> tuple:
    """The reference recipe on one layer: torch.svd_lowrank(−grad, q, niter) with the test matrix
    drawn from the (seed, "llm/svd_sketch") stream (the global RNG is restored afterwards)."""
    U, S, V = seeded_svd_lowrank(-grad.float(), min(max(q, r), *grad.shape), niter, seed, "llm/svd_sketch")
    return U[:, :r], S[:r], V[:, :r]


def seeded_svd_lowrank(M: torch.Tensor, q: int, niter: int, seed: int, stream: str) -> tuple:
    """torch.svd_lowrank(M, q, niter) with its test matrix from the (seed, ``stream``) stream; the
    global RNG it draws from is restored afterwards."""
    devices = [M.device] if M.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(streams.stream_seed(seed, stream))
        return torch.svd_lowrank(M, q=q, niter=niter)


def randomized_top_r(M: torch.Tensor, r: int, q: int, niter: int, seed: int = 0) -> tuple:
    """Top-r (U, S, V) of each matrix of M (batch × m × n) from a q-column randomized range finder
    with ``niter`` power iterations; q is capped at min(m, n), where the result is exact. The test
    matrix is drawn on the CPU (the same numbers on every device) from the "llm/svd_randomized" stream.

    Every small factorisation is a batched one: a tall-skinny QR is CholeskyQR2 with its q × q Gram
    in float64 (one batched Cholesky; torch.linalg.qr and svd loop over the batch on CUDA, one
    solver call per matrix), and the SVD of the q × n projection B comes from the eigendecomposition
    of its q × q Gram B Bᵀ in float64. Where a Gram is not positive definite (Y of deficient rank,
    e.g. q above G's rank) the whole finder runs again with Householder QR."""
    m, n = M.shape[-2:]
    q = min(q, m, n)
    omega = torch.randn(n, q, generator=streams.generator(seed, "llm/svd_randomized")).to(M)
    failed = torch.zeros((), dtype=torch.bool, device=M.device)  # read once at the end: no host sync per step

    def orth(Y):
        nonlocal failed
        X = Y
        for _ in range(2):  # CholeskyQR2: the second pass restores the orthogonality the first loses
            Xd = X.double()
            L, info = torch.linalg.cholesky_ex(Xd.mT @ Xd)
            failed = failed | (info != 0).any()
            X = torch.linalg.solve_triangular(L, Xd.mT, upper=False).mT.to(Y.dtype)
        return X

    for attempt in (orth, householder):
        Y = M @ omega
        for _ in range(niter):  # (M Mᵀ)^niter M Ω, orthonormalised at each half step against round-off
            Y = M @ attempt(M.mT @ attempt(Y))
        Q = attempt(Y)
        if attempt is householder or not bool(failed):  # a Gram not positive definite: Y of deficient rank
            break
    B = Q.mT @ M
    evals, W = torch.linalg.eigh(B.double() @ B.mT.double())  # ascending
    W, S = W.flip(-1)[..., :r], evals.flip(-1)[..., :r].clamp_min(0).sqrt()
    V = (B.mT.double() @ W) / S.clamp_min(torch.finfo(torch.float64).tiny)[..., None, :]
    return (Q.double() @ W).to(M.dtype), S.to(M.dtype), V.to(M.dtype)


def householder(Y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(Y).Q

def _same_shape_chunks(gradients: dict, chunk_bytes: int, device=None,
                       dtype: Optional[torch.dtype] = None) -> Iterator[tuple[list, torch.Tensor]]:
    """(names, stacked gradients on ``device`` in ``dtype``) for runs of same-shape layers, each at most
    ``chunk_bytes`` (and at least one layer). A single layer already there is a view (no copy)."""
    groups: dict = {}
    for name, g in gradients.items():
        key = (tuple(g.shape), torch.device(device) if device is not None else g.device,
               dtype or torch.promote_types(g.dtype, torch.float32))
        groups.setdefault(key, []).append(name)
    for (shape, where, work), names in groups.items():
        step = max(1, chunk_bytes // (gradients[names[0]].numel() * work.itemsize))
        for i in range(0, len(names), step):
            part = names[i:i + step]
            if len(part) == 1:
                yield part, gradients[part[0]].to(device=where, dtype=work).unsqueeze(0)
            else:
                yield part, torch.stack([gradients[n].to(device=where, dtype=work) for n in part])
