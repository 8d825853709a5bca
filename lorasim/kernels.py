"""Skinny products of one big matrix, reading it once: ``M @ R`` and ``Lᵀ @ M`` in one pass.

The LoRA gradient of the linear model needs G Bᵀ (d×r) and Aᵀ G (r×k) from the same d×k
matrix G. Two cuBLAS calls read G twice; at r ≪ d both are bound by memory traffic, so
reading G once halves the dominant cost of a step. Σ̂ A uses the same kernel with only the
right factor.

Layout of the pass: program (i, j) owns row block i (``row_subtiles`` tiles of BM rows) and the
j-th of Pn column chunks, with Pn chosen so the grid fills the multiprocessors once. It sweeps its
columns step by step, keeping M R's (BM × w) accumulators in registers, and writes each column
step's share of (Lᵀ M)ᵀ (BN × w, summed over the block's tiles) once to its own slice of a partial
buffer, with no read-modify-write. The Pn partials of M R and the Pm partials of Lᵀ M are summed
afterwards; the latter are w/(BM·row_subtiles) of M's bytes (12.5 % at w = 16 in the default 2 × 64-row
blocks), written once and read once. No atomics: the result is deterministic.

Precision (measured on an H200 at 16384², w = 16, against float64 products; benchmarks.md):
``"tf32x3"`` (the default) splits each operand into two tf32 parts on the tensor cores and keeps
float32-level accuracy in norm (3.5e-7 relative, cuBLAS fp32: 4e-7 to 1.6e-6), but not float32's
unbiased rounding: its products come out about 2.6e-7 too small (the mean signed relative error of
products of positive matrices, at any length of the sum; cuBLAS fp32 and ``"ieee"``: below 1e-8). The
tensor cores' accumulation truncates inside each tile's product; a 32- or 16-column tile halves or
quarters that bias at 1.5–2.7× the time, and a round-to-nearest split of the operands leaves it as it is.
Over many steps the bias adds up where rounding would average out (C08 fails under float32 on CUDA,
theory/README.md). ``"ieee"`` is exact float32 on the FMA units, about 12× slower here because the pass
then runs out of FMA throughput (32 FMAs per element of M); ``"tf32"`` is one tf32 pass (7.7e-4
relative, 6.5e-4 low on average).

Only float32 on CUDA with Triton installed; everything else goes through torch.matmul, which
is also the reference the tests compare against (``skinny_products_reference``). ``kernel_table``
times the launch configurations (``lorasim-bench --only kernel``); ``best_kernel_config`` picks one.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import time
from typing import Optional, Union

import torch

Tensor = torch.Tensor
PRECISIONS = ("ieee", "tf32x3", "tf32")
# The pass a problem's matmul precision maps to: float32 problems get float32-level accuracy.
FOR_MATMUL = {"ieee": "tf32x3", "tf32": "tf32"}
MAX_WIDTH = 64  # wider products are compute-bound GEMMs: cuBLAS does those better
# Triton's interpreter runs the kernel on CPU tensors (slowly): how the tests check it without a GPU.
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

try:  # Triton ships with CUDA builds of torch; CPU builds have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def skinny_products_reference(M: Tensor, R: Optional[Tensor], L: Optional[Tensor]):
    """(M @ R, Lᵀ @ M) through torch.matmul; either factor may be None."""
    return (None if R is None else M @ R), (None if L is None else L.T @ M)


# The kernels' element offsets (row × stride + column, and a partial buffer's slot × length) are 32-bit
# products: Triton passes a size or stride that fits in 32 bits as int32 and multiplies in int32, so an offset
# past 2³¹ − 1 wraps and reads or writes the wrong element, silently. Where a tensor could hold one (d·k ≳ 2.1e9
# for G: d = k = 46341 in float32, 8.6 GB), torch's products are used instead.
MAX_OFFSET = 2**31 - 1


def addressable(*tensors: Tensor) -> bool:
    """Whether every element of every tensor lies within MAX_OFFSET elements of its first: the largest offset a
    kernel forms, Σ (size − 1)·stride, fits in int32."""
    return all(sum((size - 1) * step for size, step in zip(M.shape, M.stride())) <= MAX_OFFSET
               for M in tensors if M.numel() > 0)


def usable(M: Tensor, width: int) -> bool:
    """Whether the fused kernel applies: float32 on CUDA, Triton present, a skinny width, 32-bit offsets."""
    return (triton is not None and (M.is_cuda or _INTERPRET) and M.dtype == torch.float32 and M.dim() == 2
            and 1 <= width <= MAX_WIDTH and addressable(M))


if triton is not None:

    @triton.jit
    def _left_tile(L, row0, m, s_lm, s_lw, offs_w, w_ok, BM: tl.constexpr):
        rows = row0 + tl.arange(0, BM)
        return tl.load(L + rows[:, None] * s_lm + offs_w[None, :] * s_lw, mask=(rows < m)[:, None] & w_ok[None, :],
                       other=0.0)

    @triton.jit
    def _tf32_parts(x):
        # x = hi + lo exactly for finite |x| < 2^128·(1 − 2^-12): hi is x rounded to tf32's 10 mantissa bits (to
        # nearest, ties away from zero, as cvt.rna: adding half of the 13 dropped bits' range carries into the kept
        # ones), so |lo| ≤ 2^-11 |x| and the tensor cores, which cut lo to tf32, lose at most 2^-22 |x|. Three
        # instructions an element where Triton's split (cvt.rna) takes five; the tile's split is most of the pass's
        # instructions (benchmarks.md). For inf and NaN lo is NaN, for finite values that round past 2^128 ∓inf:
        # see ``_dot3``.
        hi = ((x.to(tl.uint32, bitcast=True) + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)
        return hi, x - hi

    @triton.jit
    def _dot3(a_hi, a_lo, b_hi, b_lo, acc):
        # acc + a b to float32's level from three tf32 products (lo·lo is below float32's unit), small terms first,
        # in Triton's order (a_lo b_hi, then a_hi b_lo). The products chain from zero and join acc in one float32
        # addition, as in Triton's tf32x3: the tensor cores truncate as they accumulate, and a running sum fed to
        # every product drifts low with the length of the sweep (−1.7e-4 at n = 16384, benchmarks.md, "the G pass's
        # tf32x3 products are biased low"). Non-finite operands: their lo is NaN, so every product they enter is
        # NaN (IEEE would give ±inf for an inf times a non-zero). Triton zeroes a NaN sum of the small terms, which
        # keeps inf but would turn a NaN whose rounding carries into the sign bit (hi = ±0) into a finite product.
        t = tl.dot(a_lo, b_hi, input_precision="tf32")
        t = tl.dot(a_hi, b_lo, t, input_precision="tf32")
        return acc + tl.dot(a_hi, b_hi, t, input_precision="tf32")

    @triton.jit
    def _tile_products(M, row0, col, cols, c_ok, m, s_mm, s_mn, r_hi, r_lo, l_hi, l_lo, acc, part,
                       HAS_R: tl.constexpr, HAS_L: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       PRECISION: tl.constexpr, LEFT_AS_A: tl.constexpr, TMA: tl.constexpr, SPLIT: tl.constexpr):
        # One BM × BN tile of M at (row0, col): its M R share added to acc (BM × w), its (Lᵀ M)ᵀ share to part.
        # With TMA, M is a tensor descriptor and the tile comes from the tensor-memory accelerator (Hopper's bulk
        # copy engine): no per-element address arithmetic, out-of-range entries read as 0. Otherwise M is a
        # pointer and the tile a masked load. SPLIT: tf32x3 with the factors' parts split by the caller (L's
        # once, outside the sweep) and the tile's here; otherwise r_hi and l_hi are the factors' tiles and
        # Triton splits every operand of every product.
        if TMA:
            tile = M.load([row0, col])
        else:
            rows = row0 + tl.arange(0, BM)
            tile = tl.load(M + rows[:, None] * s_mm + cols[None, :] * s_mn,
                           mask=(rows < m)[:, None] & c_ok[None, :], other=0.0)
        if SPLIT:  # the tile's parts as stored, for M R and for Lᵀ M with Lᵀ as the left operand
            t_hi, t_lo = _tf32_parts(tile)
        if HAS_R:
            if SPLIT:
                acc = _dot3(t_hi, t_lo, r_hi, r_lo, acc)
            else:
                acc = tl.dot(tile, r_hi, acc, input_precision=PRECISION)
        if HAS_L:
            if LEFT_AS_A:  # Lᵀ (w × BM) as the left operand, the tile as stored: part is (w × BN)
                if SPLIT:
                    part = _dot3(tl.trans(l_hi), tl.trans(l_lo), t_hi, t_lo, part)
                else:
                    part = tl.dot(tl.trans(l_hi), tile, part, input_precision=PRECISION)
            else:
                if SPLIT:
                    tt_hi, tt_lo = _tf32_parts(tl.trans(tile))
                    part = _dot3(tt_hi, tt_lo, l_hi, l_lo, part)
                else:
                    part = tl.dot(tl.trans(tile), l_hi, part, input_precision=PRECISION)
        return acc, part

    @triton.jit
    def _left_parts(L, row0, m, s_lm, s_lw, offs_w, w_ok, BM: tl.constexpr, SPLIT: tl.constexpr):
        l_tile = _left_tile(L, row0, m, s_lm, s_lw, offs_w, w_ok, BM)
        if SPLIT:
            return _tf32_parts(l_tile)
        return l_tile, l_tile

    @triton.jit
    def _store_rows(out, acc, row0, m, BM: tl.constexpr, BW: tl.constexpr):
        rows = row0 + tl.arange(0, BM)
        tl.store(out + rows[:, None] * BW, acc, mask=(rows < m)[:, None])

    @triton.jit
    def _skinny_kernel(M, R, L, OUT_R, OUT_L, m, n, w,
                       s_mm, s_mn, s_rn, s_rw, s_lm, s_lw,
                       cols_per_prog: tl.constexpr,
                       HAS_R: tl.constexpr, HAS_L: tl.constexpr,
                       BM: tl.constexpr, BN: tl.constexpr, BW: tl.constexpr, SUBTILES: tl.constexpr,
                       PRECISION: tl.constexpr, LEFT_AS_A: tl.constexpr, TMA: tl.constexpr, SPLIT: tl.constexpr):
        # Program (i, j) owns SUBTILES row tiles of BM rows (row block i) and the j-th chunk of columns. Each
        # column step reads the block's tiles one below the other: their M R shares go to one accumulator per
        # tile, held in registers over the sweep, and their (Lᵀ M)ᵀ shares are summed into one BN × w part,
        # written once to the row block's slice of the partial buffer and summed over row blocks later. More
        # subtiles write fewer of those partials (268 MB at d = 16384, w = 16 with one 64-row tile a block).
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        row0 = pid_m * (SUBTILES * BM)
        offs_w = tl.arange(0, BW)
        w_ok = offs_w < w
        l0, l0_lo = _left_parts(L, row0, m, s_lm, s_lw, offs_w, w_ok, BM, SPLIT)
        l1, l1_lo = _left_parts(L, row0 + BM, m, s_lm, s_lw, offs_w, w_ok, BM, SPLIT)
        l2, l2_lo = _left_parts(L, row0 + 2 * BM, m, s_lm, s_lw, offs_w, w_ok, BM, SPLIT)
        l3, l3_lo = _left_parts(L, row0 + 3 * BM, m, s_lm, s_lw, offs_w, w_ok, BM, SPLIT)
        acc0 = tl.zeros((BM, BW), dtype=tl.float32)
        acc1 = tl.zeros((BM, BW), dtype=tl.float32)
        acc2 = tl.zeros((BM, BW), dtype=tl.float32)
        acc3 = tl.zeros((BM, BW), dtype=tl.float32)
        col0 = pid_n * cols_per_prog
        for j in range(0, cols_per_prog, BN):
            cols = col0 + j + tl.arange(0, BN)
            c_ok = cols < n
            if HAS_R:
                r_tile = tl.load(R + cols[:, None] * s_rn + offs_w[None, :] * s_rw,
                                 mask=c_ok[:, None] & w_ok[None, :], other=0.0)
            else:
                r_tile = tl.zeros((BN, BW), dtype=tl.float32)
            if SPLIT:
                r_hi, r_lo = _tf32_parts(r_tile)
            else:
                r_hi, r_lo = r_tile, r_tile
            if LEFT_AS_A:
                part = tl.zeros((BW, BN), dtype=tl.float32)
            else:
                part = tl.zeros((BN, BW), dtype=tl.float32)
            acc0, part = _tile_products(M, row0, col0 + j, cols, c_ok, m, s_mm, s_mn, r_hi, r_lo, l0, l0_lo,
                                        acc0, part, HAS_R, HAS_L, BM, BN, PRECISION, LEFT_AS_A, TMA, SPLIT)
            if SUBTILES > 1:
                acc1, part = _tile_products(M, row0 + BM, col0 + j, cols, c_ok, m, s_mm, s_mn, r_hi, r_lo, l1,
                                            l1_lo, acc1, part, HAS_R, HAS_L, BM, BN, PRECISION, LEFT_AS_A, TMA,
                                            SPLIT)
            if SUBTILES > 2:
                acc2, part = _tile_products(M, row0 + 2 * BM, col0 + j, cols, c_ok, m, s_mm, s_mn, r_hi, r_lo, l2,
                                            l2_lo, acc2, part, HAS_R, HAS_L, BM, BN, PRECISION, LEFT_AS_A, TMA,
                                            SPLIT)
                acc3, part = _tile_products(M, row0 + 3 * BM, col0 + j, cols, c_ok, m, s_mm, s_mn, r_hi, r_lo, l3,
                                            l3_lo, acc3, part, HAS_R, HAS_L, BM, BN, PRECISION, LEFT_AS_A, TMA,
                                            SPLIT)
            if HAS_L:
                if LEFT_AS_A:
                    tl.store(OUT_L + pid_m * n * BW + cols[None, :] * BW + offs_w[:, None], part, mask=c_ok[None, :])
                else:
                    tl.store(OUT_L + pid_m * n * BW + cols[:, None] * BW + offs_w[None, :], part, mask=c_ok[:, None])
        if HAS_R:
            out_r = OUT_R + pid_n * m * BW + offs_w[None, :]
            _store_rows(out_r, acc0, row0, m, BM, BW)
            if SUBTILES > 1:
                _store_rows(out_r, acc1, row0 + BM, m, BM, BW)
            if SUBTILES > 2:
                _store_rows(out_r, acc2, row0 + 2 * BM, m, BM, BW)
                _store_rows(out_r, acc3, row0 + 3 * BM, m, BM, BW)




def summed(M: Tensor) -> Tensor:
    """A product from its stack of partial products (p, n, w), or the product itself (n × w) as given."""
    if M.dim() == 2:
        return M
    return M[0] if M.shape[0] == 1 else M.sum(0)


def _as_stack(M: Tensor) -> Tensor:
    return M if M.dim() == 3 else M.unsqueeze(0)


if triton is not None:

    @triton.jit
    def _load_summed(M, rows, cols, ok, s_p, s_n, s_w, PARTS: tl.constexpr, BN: tl.constexpr, BR: tl.constexpr):
        # The (rows × cols) tile of a product given as PARTS partial products, summed in a fixed order.
        out = tl.zeros((BN, BR), dtype=tl.float32)
        for q in range(PARTS):
            out += tl.load(M + q * s_p + rows[:, None] * s_n + cols[None, :] * s_w, mask=ok, other=0.0)
        return out

    @triton.jit
    def _assemble_block(P, S, Q, OUT, LR, n, r, b, rows, s_pp, s_pn, s_pw, s_sp, s_sb, s_sl, s_sc, s_qp, s_qn, s_qw,
                        s_ob, s_on, s_oc, s_lr, P_PARTS: tl.constexpr, S_PARTS: tl.constexpr, Q_PARTS: tl.constexpr,
                        BN: tl.constexpr, BR: tl.constexpr, PRECISION: tl.constexpr, DESCEND: tl.constexpr):
        # Rows ``rows`` of run b's block: OUT_b = P_b S_b − Q_b, each operand read once and its stack summed; with
        # DESCEND, OUT_b holds the factor and becomes OUT_b − lr_b (P_b S_b − Q_b). This program reads P's rows
        # before it writes OUT's, so OUT may be P itself (∇_B's job reads Bᵀ).
        cs = tl.arange(0, BR)
        c_ok = cs < r
        both = (rows < n)[:, None] & c_ok[None, :]
        cols = b * r + cs
        p = _load_summed(P, rows, cols, both, s_pp, s_pn, s_pw, P_PARTS, BN, BR)
        sm = _load_summed(S + b * s_sb, cs, cs, c_ok[:, None] & c_ok[None, :], s_sp, s_sl, s_sc, S_PARTS, BR, BR)
        q = _load_summed(Q, rows, cols, both, s_qp, s_qn, s_qw, Q_PARTS, BN, BR)
        out = tl.dot(p, sm, input_precision=PRECISION) - q
        where = OUT + b * s_ob + rows[:, None] * s_on + cs[None, :] * s_oc
        if DESCEND:
            out = tl.load(where, mask=both, other=0.0) - tl.load(LR + b * s_lr) * out
        tl.store(where, out, mask=both)

    @triton.jit
    def _assemble_kernel(P0, S0, Q0, OUT0, LR0, n0, P1, S1, Q1, OUT1, LR1, n1, r,
                         s0_pp, s0_pn, s0_pw, s0_sp, s0_sb, s0_sl, s0_sc, s0_qp, s0_qn, s0_qw, s0_ob, s0_on, s0_oc,
                         s0_lr,
                         s1_pp, s1_pn, s1_pw, s1_sp, s1_sb, s1_sl, s1_sc, s1_qp, s1_qn, s1_qw, s1_ob, s1_on, s1_oc,
                         s1_lr,
                         P0_PARTS: tl.constexpr, S0_PARTS: tl.constexpr, Q0_PARTS: tl.constexpr,
                         P1_PARTS: tl.constexpr, S1_PARTS: tl.constexpr, Q1_PARTS: tl.constexpr,
                         BN: tl.constexpr, BR: tl.constexpr, PRECISION: tl.constexpr, DESCEND: tl.constexpr):
        # Program (i, b, j): rows i·BN… of run b's block of job j.
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        b = tl.program_id(1)
        if tl.program_id(2) == 0:
            _assemble_block(P0, S0, Q0, OUT0, LR0, n0, r, b, rows, s0_pp, s0_pn, s0_pw, s0_sp, s0_sb, s0_sl, s0_sc,
                            s0_qp, s0_qn, s0_qw, s0_ob, s0_on, s0_oc, s0_lr, P0_PARTS, S0_PARTS, Q0_PARTS, BN, BR,
                            PRECISION, DESCEND)
        else:
            _assemble_block(P1, S1, Q1, OUT1, LR1, n1, r, b, rows, s1_pp, s1_pn, s1_pw, s1_sp, s1_sb, s1_sl, s1_sc,
                            s1_qp, s1_qn, s1_qw, s1_ob, s1_on, s1_oc, s1_lr, P1_PARTS, S1_PARTS, Q1_PARTS, BN, BR,
                            PRECISION, DESCEND)


def assemble_usable(P: Tensor, r: int) -> bool:
    """Whether ``assemble`` runs its kernel: float32 on CUDA with Triton, r ≤ MAX_WIDTH."""
    return triton is not None and (P.is_cuda or _INTERPRET) and P.dtype == torch.float32 and 1 <= r <= MAX_WIDTH


def _kernel_reads(operands, r: int) -> bool:
    """Whether the small kernels (assemble, gram_partials) apply to every one of ``operands``: float32, all on one
    CUDA device (or interpreted), Triton present, r ≤ MAX_WIDTH, 32-bit offsets (``addressable``)."""
    first = operands[0]
    return (assemble_usable(first, r) and all(M.dtype == torch.float32 and M.device == first.device for M in operands)
            and addressable(*operands))


def assemble_reference(P: Tensor, S: Tensor, Q: Tensor) -> Tensor:
    """``assemble``'s result for one job through torch: (b, n, r)."""
    S = summed(S) if S.dim() == 4 else S
    b, r = S.shape[0], S.shape[-1]
    P, Q = summed(P), summed(Q)
    return P.unflatten(1, (b, r)).transpose(0, 1) @ S - Q.unflatten(1, (b, r)).transpose(0, 1)


def _rows_per_program(n: int, b: int, device) -> int:
    """Row tiles of 16 to 128 rows, as many as fill about two programs per multiprocessor: a deep stack of
    partial products (every row tile of the G pass writes one) then is read by enough programs at once."""
    want = max(1, n * b // (2 * _slots(device)))
    return max(16, min(128, 1 << (want.bit_length() - 1)))


# The deepest stack ``assemble`` sums as it reads. Each of its programs reads a stack's tiles one after another, so a
# deep stack runs at a fraction of the copy rate: on an H100 at d = 16384, r = 16, b = 1 the G pass's stack of 256
# row tiles' Aᵀ G partials (268 MB) took 144 µs inside assemble, where torch's reduction had read it in 94.5 µs
# (benchmarks.md). A deeper stack is summed by torch first; at d = 4096 (64 deep) reading it inside was faster.
MAX_PARTS = 64


def _shallow(M: Tensor) -> Tensor:
    return M if M.shape[0] <= MAX_PARTS else M.sum(0, keepdim=True)


def assemble(jobs, precision: str, step_sizes=None) -> None:
    """out_b = P_b S_b − Q_b for each job (P, S, Q, out) of ``jobs`` (one or two), in one launch: b runs laid side
    by side, P_b and Q_b the b-th block of r columns of P and Q (n × b·r, any strides, or stacks (p, n, b·r) of
    partial products), S (b, r, r) or a stack (p, b, r, r), out (b, n, r), any strides (views welcome). Stacks
    up to MAX_PARTS deep are summed as they are read, deeper ones by torch first.

    ``step_sizes`` (one per job: a tensor of b step sizes, or of one for all runs): out holds a factor and
    becomes out_b − lr_b (P_b S_b − Q_b), a step of gradient descent in the same launch. out may then be P
    itself (each program reads its rows of P before it writes them), but no other operand.

    The gradient's last step, ∇_A = (Σ̂A)(BBᵀ) − GBᵀ and ∇_Bᵀ = Bᵀ(AᵀΣ̂A)ᵀ − (AᵀG)ᵀ, from the side-by-side
    products: one kernel reads each operand once and writes the result in the factors' layout, where a
    batched product and a subtraction on permuted views read and wrote the d·b·r elements three more times;
    the partial products of the G pass and of ``gram_partials`` are summed on the way (no kernels of their own).
    Without Triton (or off CUDA): the same through torch."""
    P0, S0, Q0, out0 = jobs[0]
    r, b = out0.shape[-1], out0.shape[0]
    rates = None if step_sizes is None else [lr.reshape(-1) for lr in step_sizes]
    if rates is not None and (len(rates) != len(jobs) or any(lr.numel() not in (1, b) for lr in rates)):
        raise ValueError(f"step_sizes: allowed one tensor of 1 or b = {b} step sizes per job ({len(jobs)})")
    if not _kernel_reads([M for job in jobs for M in job] + (rates or []), r):
        for i, (P, S, Q, out) in enumerate(jobs):
            if rates is None:
                out.copy_(assemble_reference(P, S, Q))
            else:
                out.sub_(rates[i].reshape(-1, 1, 1) * assemble_reference(P, S, Q))
        return
    args, parts = [], []
    for i, (P, S, Q, out) in ((0, jobs[0]), (len(jobs) - 1, jobs[-1])):
        P3, Q3, S4 = _shallow(_as_stack(P)), _shallow(_as_stack(Q)), _shallow(S if S.dim() == 4 else S.unsqueeze(0))
        lr = out if rates is None else rates[i]  # an unread pointer where there is no descent
        args.append((P3, S4, Q3, out, lr, P3.shape[1], 0 if rates is None or lr.numel() == 1 else lr.stride(0)))
        parts.append((P3.shape[0], S4.shape[0], Q3.shape[0]))
    strides = [[st for M in a[:4] for st in M.stride()] + [a[-1]] for a in args]
    n_max = max(a[5] for a in args)
    BR = max(16, triton.next_power_of_2(r))
    BN = min(_rows_per_program(n_max, b * len(jobs), out0.device), max(16, 8192 // BR))
    (p0, s0, q0), (p1, s1, q1) = parts
    _assemble_kernel[(triton.cdiv(n_max, BN), b, len(jobs))](
        *args[0][:6], *args[1][:6], r, *strides[0], *strides[1], P0_PARTS=p0, S0_PARTS=s0, Q0_PARTS=q0,
        P1_PARTS=p1, S1_PARTS=s1, Q1_PARTS=q1, BN=BN, BR=BR, PRECISION=precision, DESCEND=rates is not None,
        num_warps=4)

if triton is not None:

    @triton.jit
    def _gram_chunk(X, Y, n, first, cols, c_ok, s_xn, s_xw, s_yp, s_yn, s_yw, rows_per_prog: tl.constexpr,
                    Y_PARTS: tl.constexpr, BN: tl.constexpr, BR: tl.constexpr, PRECISION: tl.constexpr):
        acc = tl.zeros((BR, BR), dtype=tl.float32)
        for i in range(0, rows_per_prog, BN):
            rows = first + i + tl.arange(0, BN)
            ok = (rows < n)[:, None] & c_ok[None, :]
            x = tl.load(X + rows[:, None] * s_xn + cols[None, :] * s_xw, mask=ok, other=0.0)
            y = _load_summed(Y, rows, cols, ok, s_yp, s_yn, s_yw, Y_PARTS, BN, BR)
            acc = tl.dot(tl.trans(x), y, acc, input_precision=PRECISION)
        return acc

    @triton.jit
    def _gram_kernel(X0, Y0, X1, Y1, OUT, n0, n1, r,
                     s_x0n, s_x0w, s_y0p, s_y0n, s_y0w, s_x1n, s_x1w, s_y1p, s_y1n, s_y1w, s_oj, s_oc, s_ob,
                     rows_per_prog: tl.constexpr, Y0_PARTS: tl.constexpr, Y1_PARTS: tl.constexpr,
                     BN: tl.constexpr, BR: tl.constexpr, PRECISION: tl.constexpr):
        # Program (c, b, j): pair j's run-b blocks over the c-th chunk of rows, X_bᵀ Y_b, written to its own
        # r×r slot of the partial buffer (summed by the reader: no atomics, so the result is deterministic).
        c = tl.program_id(0)
        b = tl.program_id(1)
        cs = tl.arange(0, BR)
        c_ok = cs < r
        cols = b * r + cs
        first = c * rows_per_prog
        if tl.program_id(2) == 0:
            acc = _gram_chunk(X0, Y0, n0, first, cols, c_ok, s_x0n, s_x0w, s_y0p, s_y0n, s_y0w, rows_per_prog,
                              Y0_PARTS, BN, BR, PRECISION)
        else:
            acc = _gram_chunk(X1, Y1, n1, first, cols, c_ok, s_x1n, s_x1w, s_y1p, s_y1n, s_y1w, rows_per_prog,
                              Y1_PARTS, BN, BR, PRECISION)
        tl.store(OUT + tl.program_id(2) * s_oj + c * s_oc + b * s_ob + cs[:, None] * BR + cs[None, :], acc)


def grams_reference(pairs, r: int) -> Tensor:
    """``grams``' result through torch: (len(pairs), b, r, r)."""
    def blocks(M):  # n × (b·r) → (b, n, r)
        return summed(M).unflatten(1, (-1, r)).transpose(0, 1)
    return torch.stack([blocks(X).mT @ blocks(Y) for X, Y in pairs])


# Rows a program of the Gram kernel sums, in powers of two from 64 (the kernel's row tile) to GRAM_ROWS: as few as
# give the launch about two programs per multiprocessor, and at most GRAM_CHUNKS chunks (``assemble`` sums that
# stack for every r×r block it reads) up to n = GRAM_CHUNKS·GRAM_ROWS = 16384; longer factors keep GRAM_ROWS and get
# more chunks. Measured on an H100 at r = 16, b = 1 (benchmarks.md): at d = 4096, 128 rows (32 chunks) took 6–8 %
# less time a step than 512 rows (8 chunks, whose programs sum 8 tiles each, one after another); at d = 16384,
# 128 rows (128 chunks) took 2 % more than 512 (32 chunks). A batch fills the grid with its runs and keeps
# GRAM_ROWS.
GRAM_ROWS = 512
GRAM_CHUNKS = 32


def gram_rows(n: int, programs_per_chunk: int = 1, slots: int = 132) -> int:
    """Rows per program of the Gram kernel for factors of n rows, with ``programs_per_chunk`` programs (runs ×
    pairs) per chunk of rows on a device of ``slots`` multiprocessors."""
    chunks = max(1, min(GRAM_CHUNKS, -(-2 * slots // programs_per_chunk)))
    per_chunk = -(-n // chunks)
    return max(64, min(GRAM_ROWS, 1 << max(0, per_chunk - 1).bit_length()))


def gram_partials(pairs, r: int, precision: str) -> Tensor:
    """X_bᵀ Y_b for every run b and every pair (X, Y) of ``pairs`` (one or two), in one launch, as a stack of
    partial products over chunks of rows: (len(pairs), chunks, b, r, r). X and Y are n × (b·r) with the runs'
    r columns side by side (any strides; the two pairs may differ in n; Y may be a stack (p, n, b·r) of partial
    products, summed here). ``grams`` sums the chunks; ``assemble`` sums them as it reads them.

    The gradient's r×r products, B Bᵀ (X = Y = Bᵀ side by side, n = k) and Aᵀ(Σ̂A) (n = d). As batched matmuls
    they are reductions of length n into a few hundred outputs: cuBLAS splits them over several kernels (split-K
    and its reduction) and, for a batch, reads the d·b·r factors at a fraction of the copy rate (on an H200 at
    d = 16384, b = 64, r = 16 the two took 278 µs for 201 MB, benchmarks.md). Here each program sums a chunk of
    rows in registers. Without Triton (or off CUDA): the product through torch, one chunk."""
    (X0, Y0), (X1, Y1) = pairs[0], pairs[-1]
    Y0, Y1 = _as_stack(Y0), _as_stack(Y1)
    b = X0.shape[1] // r
    if not _kernel_reads([X0, Y0, X1, Y1], r):
        return grams_reference(pairs, r).unsqueeze(1)
    BR = max(16, triton.next_power_of_2(r))
    BN = 64
    n_max = max(X0.shape[0], X1.shape[0])
    jobs = len(pairs)
    rows = gram_rows(n_max, b * len(pairs), _slots(X0.device))
    chunks = -(-n_max // rows)
    parts = torch.empty(jobs, chunks, b, BR, BR, dtype=torch.float32, device=X0.device)
    _gram_kernel[(chunks, b, jobs)](X0, Y0, X1, Y1, parts, X0.shape[0], X1.shape[0], r,
                                    *X0.stride(), *Y0.stride(), *X1.stride(), *Y1.stride(), *parts.stride()[:3],
                                    rows_per_prog=rows, Y0_PARTS=Y0.shape[0], Y1_PARTS=Y1.shape[0],
                                    BN=BN, BR=BR, PRECISION=precision, num_warps=4)
    return parts[..., :r, :r]


def grams(pairs, r: int, precision: str) -> Tensor:
    """``gram_partials``' chunks summed: (len(pairs), b, r, r)."""
    parts = gram_partials(pairs, r, precision)
    return parts[:, 0] if parts.shape[1] == 1 else parts.sum(1)


def plan_grid(row_tiles: int, col_tiles: int, slots: int) -> tuple[int, int]:
    """One program per row tile (Pm = row_tiles), and the columns split Pn ways so that the grid
    fills about ``slots`` concurrent programs: each extra column split adds an m×w partial of
    M R, each row tile an n×w partial of Lᵀ M (a few per cent of M's bytes at w ≤ 64)."""
    pn = max(1, min(col_tiles, slots // max(1, row_tiles)))
    return row_tiles, pn


def _slots(device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 8


# Launch configurations, from `lorasim-bench --only kernel` on an H200 (benchmarks.md): the two-sided
# pass is fastest with small tiles, TMA loads and two programs per multiprocessor; a one-sided pass
# (Σ̂ A) with 128×64 tiles. Row blocks of two tiles (three pipeline stages, so that both tiles' buffers fit) halve
# the partials of Lᵀ M: on an H100 the step at r = 16, b = 1 took 1.6 % less time at d = 16384 and 1.4 % at 4096,
# and blocks of four were slower (benchmarks.md). The kernel's own tf32x3 split ("hoisted") took the two-sided pass
# from 519 to 425 µs on an H100 at d = 16384 (ncu), and the step from 0.930 to 0.857 ms.
# Another table's best two-sided one: fused=best_kernel_config(table).
CONFIG = {"block": (64, 64), "num_warps": 4, "num_stages": 3, "tma": None, "ctas_per_sm": 2, "left_as_a": False,
          "row_subtiles": 2, "split": "auto"}
CONFIG_ONE_SIDED = {"block": (128, 64), "num_warps": 8, "num_stages": 4, "tma": None, "ctas_per_sm": 1,
                    "left_as_a": False, "row_subtiles": 1, "split": "auto"}
ROW_SUBTILES = (1, 2, 4)
# How tf32x3 splits its operands: "triton" (Triton's own, inside every product: cvt.rna, five instructions an
# element, and in Triton's code for sm_90, pipelined, each column step stores L's loop-invariant parts to shared
# memory again, behind fences), or "hoisted" (by the kernel, ``_tf32_parts``: three instructions an element; L's
# parts once before the sweep, R's once a step, the tile once a step for each product, in its layout; then three
# tf32 products), or "auto": hoisted for products up to HOISTED_MAX_WIDTH columns wide (the widths timed: 8 and 16,
# which pad to 16, and 32), Triton's for wider ones (64 timed).
# The hoisted split executes 25 % fewer instructions in the two-sided pass (ncu on an H100 at d = 16384, w = 16:
# 142.7 M against 191.5 M) at the same accuracy, and the b = 1 step at d = 16384 took 11 % less time at r = 8 and 8 % at
# r = 16 and 8 % at r = 32 (1.32 ms against 1.44), but 7.5 % more at r = 64 (2.73 ms against 2.54), where it keeps
# 64 columns of L's two parts in registers for the whole sweep (benchmarks.md). Other precisions ignore it.
SPLITS = ("auto", "triton", "hoisted")
HOISTED_MAX_WIDTH = 32


def resolved_split(split: str, width: int) -> str:
    """The split a launch of a product ``width`` columns wide (padded to a power of two ≥ 16) uses."""
    if split != "auto":
        return split
    return "hoisted" if max(16, 1 << max(0, width - 1).bit_length()) <= HOISTED_MAX_WIDTH else "triton"


def skinny_products(M: Tensor, R: Optional[Tensor] = None, L: Optional[Tensor] = None,
                    precision: str = "tf32x3", fused: Union[bool, dict] = True, **config):
    """(M @ R, Lᵀ @ M) reading M (m×n) once: ``skinny_partials``' stacks, summed."""
    MR, LMt = skinny_partials(M, R, L, precision, fused, **config)
    return None if MR is None else summed(MR), None if LMt is None else summed(LMt).T


def skinny_partials(M: Tensor, R: Optional[Tensor] = None, L: Optional[Tensor] = None,
                    precision: str = "tf32x3", fused: Union[bool, dict] = True, **config):
    """M @ R and (Lᵀ @ M)ᵀ, reading M (m×n) once, as stacks of partial products whose sums are the products:
    (p, m, w) and (q, n, w), p the column splits of the grid and q its row blocks (``assemble`` and ``grams``
    sum them as they read them). R is n×w, L is m×w, either may be None.
    ``config`` overrides entries of ``CONFIG`` (block, num_warps, num_stages, tma, ctas_per_sm,
    left_as_a, row_subtiles: the row tiles of a block, one of ROW_SUBTILES; split: how tf32x3 splits, one of
    SPLITS). ``fused``: False takes torch.matmul (the plain step lorasim-bench compares with);
    a dict is a two-sided launch configuration (``best_kernel_config``) under ``config``.

    Falls back to torch.matmul where the kernel does not apply (see ``usable``). ``tma``: load
    M's tiles with the tensor-memory accelerator (default: on Hopper-class GPUs when M's rows
    are 16-byte aligned, as TMA requires).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed one of {', '.join(PRECISIONS)}")
    unknown = set(config) - set(CONFIG)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: allowed keys {', '.join(CONFIG)}")
    two_sided = R is not None and L is not None
    tuned = fused if isinstance(fused, dict) and two_sided else {}
    cfg = {**(CONFIG if two_sided else CONFIG_ONE_SIDED), **tuned, **config}
    if cfg["row_subtiles"] not in ROW_SUBTILES:
        raise ValueError(f"row_subtiles={cfg['row_subtiles']!r}: allowed one of {', '.join(map(str, ROW_SUBTILES))}")
    if cfg["split"] not in SPLITS:
        raise ValueError(f"split={cfg['split']!r}: allowed one of {', '.join(SPLITS)}")
    width = (R if R is not None else L).shape[-1]
    if fused is False or not usable(M, width) or not addressable(*(F for F in (R, L) if F is not None)):
        MR, LM = skinny_products_reference(M, R, L)
        return None if MR is None else MR.unsqueeze(0), None if LM is None else LM.T.unsqueeze(0)
    m, n = M.shape
    BM, BN = cfg["block"]
    BW = max(16, triton.next_power_of_2(width))
    row_blocks, col_tiles = -(-m // (BM * cfg["row_subtiles"])), -(-n // BN)
    pm, pn = plan_grid(row_blocks, col_tiles, cfg["ctas_per_sm"] * _slots(M.device))
    cols_per_prog = -(-col_tiles // pn) * BN
    pn = -(-n // cols_per_prog)  # drop splits the rounding left empty
    if max(pn * m * BW if R is not None else 0, pm * n * BW if L is not None else 0) > MAX_OFFSET + 1:
        return skinny_partials(M, R, L, precision, False)  # a partial buffer the kernel's offsets can't span
    dummy = M  # an unused pointer argument still needs a tensor
    out_r = torch.empty(pn, m, BW, dtype=torch.float32, device=M.device) if R is not None else dummy
    out_l = torch.empty(pm, n, BW, dtype=torch.float32, device=M.device) if L is not None else dummy
    hoisted = resolved_split(cfg["split"], width) == "hoisted" and precision == "tf32x3"
    common = dict(HAS_R=R is not None, HAS_L=L is not None, BM=BM, BN=BN, BW=BW, SUBTILES=cfg["row_subtiles"],
                  PRECISION=precision, SPLIT=hoisted,
                  LEFT_AS_A=cfg["left_as_a"], num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    Rt, r_strides = (R, (R.stride(0), R.stride(1))) if R is not None else (dummy, (0, 0))
    Lt, l_strides = (L, (L.stride(0), L.stride(1))) if L is not None else (dummy, (0, 0))
    tma = cfg["tma"]
    if tma is None:
        tma = (M.is_cuda and torch.cuda.get_device_capability(M.device)[0] >= 9 and M.stride(1) == 1
               and (M.stride(0) * 4) % 16 == 0 and M.data_ptr() % 16 == 0)
    if tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        M_arg, m_strides = TensorDescriptor.from_tensor(M, [BM, BN]), (0, 0)
    else:
        M_arg, m_strides = M, (M.stride(0), M.stride(1))
    _skinny_kernel[(pm, pn)](M_arg, Rt, Lt, out_r, out_l, m, n, width, *m_strides, *r_strides, *l_strides,
                             cols_per_prog, TMA=bool(tma), **common)
    return None if R is None else out_r[..., :width], None if L is None else out_l[..., :width]


# The split row of a symmetric matrix's 2×2 blocks (``symmetric_partials``): a multiple of the passes' row blocks
# (128 rows), so the upper blocks have no partial row tile, and of 4 elements, so each block's first element stays
# 16-byte aligned (TMA).
SYMMETRIC_SPLIT = 128


def symmetric_partials(S: Tensor, R: Tensor, precision: str = "tf32x3", fused: Union[bool, dict] = True) -> Tensor:
    """S @ R for a symmetric S (m × m), R m × w, as a stack of partial products (p, m, w), reading S's upper 2×2
    blocks only: [[S11, S12], [S12ᵀ, S22]] R = [S11 R1 + S12 R2; S12ᵀ R1 + S22 R2], the diagonal blocks by one-sided
    passes and S12 by one two-sided pass (``skinny_partials``), so ¾ of S's bytes are read. The lower-left block is
    never read: where S is symmetric only to round-off (XᵀX from a GEMM), this is the product of S's upper blocks
    mirrored. S12ᵀ R1's deep stack (one part per row block of S12) is summed here, the other parts are stacked, and
    a shorter half is padded with zero parts. Where the kernel does not apply, or m < 2·SYMMETRIC_SPLIT: S's
    product as ``skinny_partials`` gives it, all of S read."""
    m, w = S.shape[0], R.shape[-1]
    if S.dim() != 2 or S.shape[1] != m or R.dim() != 2 or R.shape[0] != m:
        raise ValueError(f"S, R: allowed S square (m × m) and R m × w, got {tuple(S.shape)} and {tuple(R.shape)}")
    h = (m // 2) // SYMMETRIC_SPLIT * SYMMETRIC_SPLIT
    if fused is False or h == 0 or not usable(S, w) or not addressable(R):
        return skinny_partials(S, R, None, precision, fused)[0]
    if isinstance(fused, dict):  # a tuned G-pass launch for S12, with TMA only where S's layout allows it
        fused = {**fused, "tma": None}
    upper_left = skinny_partials(S[:h, :h], R[:h], None, precision, fused)[0]
    lower_right = skinny_partials(S[h:, h:], R[h:], None, precision, fused)[0]
    right, left = skinny_partials(S[:h, h:], R[h:], R[:h], precision, fused)  # S12 R2 and (R1ᵀ S12)ᵀ = S12ᵀ R1
    top = torch.cat([upper_left, right])
    bottom = torch.cat([lower_right, left.sum(0, keepdim=True)])
    out = top.new_zeros(max(len(top), len(bottom)), m, w)
    out[:len(top), :h] = top
    out[:len(bottom), h:] = bottom
    return out


# -- tuning ----------------------------------------------------------------------------------------------
SWEEP_OPS = ("ttg.local_alloc", "ttg.local_load", "ttg.convert_layout", "ttng.fence_async_shared",
             "ttng.warp_group_dot", "ttng.warp_group_dot_wait", "tt.dot", "ttg.async_copy_global_to_local")


def sweep_ops(arch: int = 90, num_warps: int = 4, num_stages: int = 3, **config) -> dict:
    """What one column step of the two-sided tf32x3 pass does on chip: the count of each of SWEEP_OPS inside the
    sweep's loop in Triton's GPU IR for compute capability ``arch`` (9.0: Hopper), compiled here without a GPU
    (pointer loads: a TMA descriptor needs a device). ``config``: CONFIG's row_subtiles, split, block, left_as_a.
    The counts depend on Triton's version and pipeliner (num_stages).
    Where time goes is for ``kernel_table`` to say; this says which shared-memory stores and fences a variant
    removes from the loop (benchmarks.md)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cfg = {**CONFIG, **config}
    names = ("cols_per_prog", "HAS_R", "HAS_L", "BM", "BN", "BW", "SUBTILES", "PRECISION", "LEFT_AS_A", "TMA", "SPLIT")
    values = (4096, True, True, *cfg["block"], 16, cfg["row_subtiles"], "tf32x3", cfg["left_as_a"], False,
              resolved_split(cfg["split"], 16) == "hoisted")
    pointers = {name: "*fp32" for name in ("M", "R", "L", "OUT_R", "OUT_L")}
    ints = {name: "i32" for name in ("m", "n", "w", "s_mm", "s_mn", "s_rn", "s_rw", "s_lm", "s_lw")}
    source = ASTSource(fn=_skinny_kernel, signature={**pointers, **ints, **{name: "constexpr" for name in names}},
                       constexprs=dict(zip(names, values)))
    ir = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                        options={"num_warps": num_warps, "num_stages": num_stages}).asm["ttgir"]
    head = ir.index("scf.for")  # the sweep: the first loop, from the brace that ends its line to the matching one
    start = ir.rindex("{", head, ir.index("\n", head))
    depth, end = 0, start
    for end in range(start, len(ir)):
        depth += {"{": 1, "}": -1}.get(ir[end], 0)
        if depth == 0:
            break
    return {op: len(re.findall(re.escape(op) + r"[\s(]", ir[start:end])) for op in SWEEP_OPS}


def replayable(fn, dev):
    """fn as one CUDA graph replay, so that a kernel's time excludes the host's work of launching it (argument
    handling, a TMA descriptor, allocations): timed eagerly, a GPU that is idle between calls records that work
    inside the events too (tens of µs against a pass of ~0.5 ms). fn itself where graphs don't apply (CPU) or
    capture fails; the second value says which ("graph" or "eager")."""
    if dev.type != "cuda":
        return fn, "eager"
    try:
        fn()  # compiled and allocated before capture
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    except Exception:  # a launch that can't be captured: time it as it is
        torch.cuda.synchronize(dev)
        return fn, "eager"
    return graph.replay, "graph"


def timed(fn, dev, reps: int, warmup: int = 2) -> float:
    """Median seconds of fn() over ``reps`` runs (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(out)


# (block, warps, stages). Tall tiles write fewer partials of Lᵀ M (one per row tile: 268 MB at d = 16384 with
# 64 rows, a quarter with 256), which every step writes and reads again.
KERNEL_CONFIGS = [((128, 64), 8, 4), ((64, 64), 4, 4), ((128, 32), 4, 4), ((64, 128), 4, 3), ((256, 32), 8, 4),
                  ((256, 16), 4, 4)]


# (block, warps, stages, row tiles a block, CTAs per SM) with the kernel's own split: deeper row blocks write fewer
# partials of Lᵀ M (134 MB at d = 16384, w = 16 with blocks of 2 × 64 rows, written by the pass and read again).
HOISTED_CONFIGS = [((64, 64), 4, 4, 1, 2), ((64, 64), 4, 3, 2, 2), ((64, 64), 4, 2, 4, 2), ((64, 64), 4, 3, 4, 1),
                   ((64, 32), 4, 3, 4, 2), ((64, 32), 4, 3, 2, 2), ((128, 64), 8, 3, 2, 1)]


BIAS_SHAPES = ((32, 32, 8), (100, 100, 8), (4096, 4096, 16))


def bias_table(dev, shapes=BIAS_SHAPES) -> list[dict]:
    """The signed error of the pass in each precision, and of torch.matmul (cuBLAS's float32), one row per
    (shape, precision): for M (m×n), R (n×w) and L (m×w) with entries U(0, 1), whose products have no
    cancellation, the mean over every entry of M R and Lᵀ M of (computed − exact)/exact (exact: float64),
    its sd, z = mean/(sd/√N) and the largest |error|. Rounding to nearest gives |z| of order 1; an
    accumulation that truncates gives a mean of one sign (benchmarks.md)."""
    from . import streams

    g = streams.generator(0, "bench/bias", dev)
    old = torch.get_float32_matmul_precision()
    rows = []
    try:
        torch.set_float32_matmul_precision("highest")  # cuBLAS in true float32
        for m, n, w in shapes:
            M, R, L = (torch.rand(*shape, generator=g, device=dev) for shape in ((m, n), (n, w), (m, w)))
            ref_r, ref_l = M.double() @ R.double(), L.double().T @ M.double()
            outs = {p: skinny_products(M, R, L, precision=p) for p in PRECISIONS}
            outs["tf32x3/triton"] = skinny_products(M, R, L, precision="tf32x3", split="triton")
            outs["cublas"] = skinny_products_reference(M, R, L)
            for name, (mr, lm) in outs.items():
                err = torch.cat([(mr.double() / ref_r - 1).flatten(), (lm.double() / ref_l - 1).flatten()])
                mean, sd = float(err.mean()), float(err.std())
                rows.append({"m": m, "n": n, "w": w, "precision": name, "mean": mean, "sd": sd,
                             "z": mean / (sd / math.sqrt(err.numel())), "max_abs": float(err.abs().max())})
    finally:
        torch.set_float32_matmul_precision(old)
    return rows


def kernel_table(dev, sizes=(16384,), width: int = 16, reps: int = 10, report=print,
                 match: Optional[str] = None) -> list[dict]:
    """The fused G pass alone, one row per variant: block shapes × loads (pointers / TMA) × CTAs per SM ×
    precisions, against two cuBLAS products, plus the one-sided passes of the default configuration.
    ``match``: a regular expression; only variants whose name it finds are run (each new configuration costs a
    compilation of seconds). Times are of CUDA graph replays (``replayable``; ``timing`` says where one was not).

    Error is ‖out − ref‖/‖ref‖ against float64 products of the same inputs (fresh random data);
    ``deterministic`` says whether two runs agree bit for bit; ``config`` (JSON) is every launch
    setting of the row, for ``best_kernel_config``. ``report(row)`` sees each row as it is measured."""
    from . import streams

    rows = []

    def add(variant, fn=None, config=None, refs=None):  # d and the references (refs: others): the size measured
        if match is not None and not re.search(match, variant):
            return
        want_r, want_l = refs or (ref_r, ref_l)
        fn = fn or (lambda: skinny_products(M, R, L, **config))  # no fn: the fused pass with ``config``
        try:
            a, b = fn()
            a2, b2 = fn()
            replay, how = replayable(fn, dev)
            t = timed(replay, dev, reps=reps)
        except Exception as e:  # a configuration the chip or compiler refuses: record, go on
            rows.append({"d": d, "w": width, "variant": variant, "ms": math.nan, "error": type(e).__name__})
        else:
            errs = [float((x.double() - r).norm() / r.norm()) for x, r in ((a, want_r), (b, want_l)) if x is not None]
            same = all(torch.equal(x, y) for x, y in ((a, a2), (b, b2)) if x is not None)
            rows.append({"d": d, "w": width, "variant": variant, "ms": 1e3 * t, "timing": how,
                         "GBps": d * d * 4 / t / 1e9, "rel_err": max(errs), "deterministic": same,
                         "config": json.dumps({**CONFIG, **config}) if config is not None else None})
        report(rows[-1])

    for d in sizes:
        M, R, L = (torch.randn(*shape, generator=streams.generator(d, f"bench/kernel_{what}", dev), device=dev)
                   for what, shape in (("M", (d, d)), ("R", (d, width)), ("L", (d, width))))
        ref_r, ref_l = (M.double() @ R.double()), (L.double().T @ M.double())
        add("cublas x2", lambda: (M @ R, L.T @ M))
        add("cublas right only", lambda: (M @ R, None))
        grid = itertools.product(KERNEL_CONFIGS, (False, True), (1, 2), ("tf32x3", "tf32"))
        for (block, warps, stages), tma, cps, prec in grid:  # one tile a row block: the partials as they were
            kw = dict(precision=prec, block=block, num_warps=warps, num_stages=stages, tma=tma, ctas_per_sm=cps,
                      row_subtiles=1, split="triton")
            add(f"{block} w{warps} s{stages} tma={int(tma)} cps={cps} split=triton {prec}", config=kw)
        for block, warps, stages, subtiles, cps in HOISTED_CONFIGS:  # the operands split by the kernel
            kw = dict(precision="tf32x3", block=block, num_warps=warps, num_stages=stages, tma=True, ctas_per_sm=cps,
                      row_subtiles=subtiles, split="hoisted")
            add(f"{block} w{warps} s{stages} tma=1 cps={cps} subtiles={subtiles} split=hoisted tf32x3", config=kw)
        for subtiles, stages, cps in itertools.product(ROW_SUBTILES[1:], (2, 3, 4), (1, 2)):
            kw = dict(precision="tf32x3", block=(64, 64), num_warps=4, num_stages=stages, tma=True, ctas_per_sm=cps,
                      row_subtiles=subtiles, split="triton")
            add(f"(64, 64) w4 s{stages} tma=1 cps={cps} subtiles={subtiles} split=triton tf32x3", config=kw)
        for (block, warps, stages), tma in itertools.product(KERNEL_CONFIGS[:2], (False, True)):
            kw = dict(precision="tf32x3", block=block, num_warps=warps, num_stages=stages, tma=tma, left_as_a=True,
                      row_subtiles=1, split="triton")
            add(f"{block} w{warps} s{stages} tma={int(tma)} left_as_a split=triton tf32x3", config=kw)
        add("default ieee", lambda: skinny_products(M, R, L, precision="ieee"))
        add("default right only", lambda: skinny_products(M, R, None))
        add("default right only, split=triton", lambda: skinny_products(M, R, None, split="triton"))
        add("default left only", lambda: skinny_products(M, None, L))
        halves = "symmetric right only (upper 2x2 blocks; GBps counts all of M)"
        if match is None or re.search(match, halves):  # Σ̂ A's pass from a symmetric matrix's upper blocks
            S = (M + M.T) / 2
            add(halves, lambda: (summed(symmetric_partials(S, R)), None), refs=(S.double() @ R.double(), None))
            del S
    return rows


def best_kernel_config(rows: list[dict]) -> dict:
    """The fastest two-sided configuration of a kernel table (``kernel_table``'s rows, or its CSV read
    back) among those with float32-level error (tf32x3) and bit-reproducible results, at its largest d (times of
    different sizes do not compare); {} if none."""
    best = None
    largest = max((row["d"] for row in rows), default=None)
    for row in rows:
        if not isinstance(row.get("config"), str) or row["d"] != largest:  # cuBLAS rows, failed launches (NaN in a
            continue                                                         # CSV read back), other sizes
        cfg = json.loads(row["config"])
        ok = (cfg.get("precision") == "tf32x3" and row["rel_err"] < 1e-6 and str(row["deterministic"]) == "True")
        if ok and (best is None or row["ms"] < best[0]):
            best = (row["ms"], cfg)
    if best is None:
        return {}
    # a table written before row blocks measured one tile a block, not today's default; a table measures one width,
    # so a winning hoisted split is taken as "auto" (Triton's above HOISTED_MAX_WIDTH, where it was slower)
    cfg = {"row_subtiles": 1, "split": "triton",  # a table from before the kernel's split measured Triton's
           **{k: v for k, v in best[1].items() if k != "precision"}, "block": tuple(best[1]["block"])}
    if cfg.get("split") == "hoisted":
        cfg["split"] = "auto"
    return cfg
