"""Subspace-alignment metrics and the per-step record.

sinΘ(U1, U2) := ‖(I − U1U1ᵀ) U2‖_op for orthonormal bases, the sine of the largest
principal angle. The paper's alignment of A is

    align_A(t) = ‖U_{r*,⊥}(G♮)ᵀ U_{r*}(A_t)‖_op = sinΘ(U_{r*}(G♮), U_{r*}(A_t)),

with the complement over all d − r* remaining directions (the notebook's full-SVD
version, not the official LLM code's truncated complement).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .linalg import Tensor, finite_sum, matmul, mT
from .problems.base import Problem

# Column sets a run may log (``run.metrics``):
#   full   every column below;
#   lean   loss, risk and the two alignments with G♮ (the factors' subspaces from r×r Grams);
#   align  risk and the two alignments (A's and B's). No loss, whose exact value needs a d×k residual per row
#          (the most expensive column after the alignments); divergence is then judged on the risk;
#   figure risk and align_A: what figure.png and the sweep's figures draw (the paper's T1 figure), and all a
#          hand-rolled T1 loop logs; the align set without B's side, whose subspace costs as much as A's;
#   risk   loss, risk and ‖AB − ΔW‖ (op and F): no alignment at all.
METRIC_SETS = ("full", "lean", "align", "figure", "risk")


def sin_theta(U1: Tensor, U2: Tensor) -> Tensor:
    """‖(I − U1U1ᵀ)U2‖_op, computed from the projection residual R (exact at small angles).

    ‖R‖_op² is the largest eigenvalue of the small Gram RᵀR, which rounding perturbs only by
    eps·‖R‖²: the same relative accuracy as an SVD of the d×p residual, at a p×p cost.
    """
    resid = U2 - matmul(U1, matmul(mT(U1), U2))
    top = torch.linalg.eigvalsh(matmul(mT(resid), resid))[..., -1]
    return top.clamp(min=0.0).sqrt().clamp(max=1.0)


def principal_angles(U1: Tensor, U2: Tensor) -> Tensor:
    """All principal angles (radians, descending) between span U1 and span U2.

    The cosines come from svd(U1ᵀU2) and the sines from svd((I − U1U1ᵀ)U2); each angle is
    taken from whichever is better conditioned (sines below 1/√2), as scipy does.
    """
    if U2.shape[-1] > U1.shape[-1]:  # the angles are symmetric; let U2 be the narrower basis
        U1, U2 = U2, U1
    cos = torch.linalg.svdvals(mT(U1) @ U2).clamp(max=1.0)  # descending
    sin = torch.linalg.svdvals(U2 - U1 @ (mT(U1) @ U2)).clamp(max=1.0)  # descending
    theta = torch.where(cos > 1 / math.sqrt(2), torch.arcsin(torch.flip(sin, dims=(-1,))), torch.arccos(cos))
    return torch.flip(theta, dims=(-1,))


@dataclass
class AlignmentTargets:
    """Fixed subspaces the trajectory is compared with, computed once per problem."""

    r_align: int
    U_G: Tensor  # top-r_align left singular vectors of G♮ (input side)
    V_G: Tensor  # top-r_align right singular vectors of G♮ (output side)
    U_star: Optional[Tensor]
    V_star: Optional[Tensor]

    @classmethod
    def from_problem(cls, problem, rank: int) -> "AlignmentTargets":
        """r_align = r* when the problem knows it, else the LoRA rank."""
        r = problem.r_star if problem.r_star is not None else rank
        r = min(r, rank, problem.d, problem.k)
        U, _, V = problem.svd_G()
        us = getattr(problem, "U_star", None)
        vs = getattr(problem, "V_star", None)
        return cls(r, U[:, :r], V[:, :r], None if us is None else us[:, :r], None if vs is None else vs[:, :r])


def _rows(columns: dict) -> list[dict]:
    """Stack per-run columns, copy to the host once, and split into one dict per run."""
    names = list(columns)
    table = torch.stack([columns[n].to(torch.float64) for n in names], dim=-1).cpu().tolist()
    return [dict(zip(names, values)) for values in table]


def _risk_columns(problem, A: Tensor, B: Tensor) -> dict:
    batch = A.shape[0]
    err_op, err_fro = problem.error_norms(A, B)
    # The plain risk with Σ = I is ½‖AB − ΔW‖_F², already in hand.
    plain = type(problem).risk is Problem.risk and problem.risk_weight is None
    risk = 0.5 * err_fro**2 if plain else problem.risk(A, B)
    return {"loss": problem.loss(A, B).expand(batch), "risk": risk.expand(batch),
            "err_op": err_op.expand(batch), "err_fro": err_fro.expand(batch)}


def record_risk_batch(problem, A: Tensor, B: Tensor) -> list[dict]:
    """The cheap row for each run of a batch A (b, d, r), B (b, r, k): loss, risk and ‖AB − ΔW‖ (no SVDs of
    the factors), with one copy to the host."""
    return _rows(_risk_columns(problem, A, B))


def record_batch(problem, ref: AlignmentTargets, A: Tensor, B: Tensor, A0: Tensor, B0: Tensor, n_sv: int,
                 frozen_B: bool = False) -> list[dict]:
    """Everything logged at one step, as Python floats (one row of the tidy frame), for each run of a batch
    (A: b×d×r, B: b×r×k), computed on the factors' device with one copy to the host."""
    r = ref.r_align
    batch = A.shape[0]
    nan = torch.tensor(math.nan, dtype=A.dtype, device=A.device)
    UA_full, sA, _ = torch.linalg.svd(A, full_matrices=False)
    _, sB, VhB = torch.linalg.svd(B, full_matrices=False)
    UA, VB = UA_full[..., :r], mT(VhB[..., :r, :])
    a_ok = subspace_defined_mask(sA, r)
    b_ok = subspace_defined_mask(sB, r) & (not frozen_B)
    cols = _risk_columns(problem, A, B)

    def masked(ok, value):
        return torch.where(ok, value, nan)

    cols["align_A"] = masked(a_ok, sin_theta(ref.U_G, UA))
    cols["align_A_star"] = masked(a_ok, sin_theta(ref.U_star, UA)) if ref.U_star is not None else nan.expand(batch)
    cols["align_B"] = masked(b_ok, sin_theta(ref.V_G, VB))
    cols["align_B_star"] = masked(b_ok, sin_theta(ref.V_star, VB)) if ref.V_star is not None else nan.expand(batch)
    if frozen_B:
        cols["balance_drift"] = nan.expand(batch)
    else:
        drift = mT(A) @ A - B @ mT(B) - (mT(A0) @ A0 - B0 @ mT(B0))
        cols["balance_drift"] = torch.linalg.matrix_norm(drift)
    angles = torch.where(a_ok[:, None], principal_angles(ref.U_G, UA), nan)
    for i in range(r):
        cols[f"theta_A_{i + 1}"] = angles[:, i]
    for name, s in (("sv_A", sA), ("sv_B", sB)):
        for i in range(n_sv):
            present = (i < s.shape[-1]) and not (frozen_B and name == "sv_B")
            cols[f"{name}_{i + 1}"] = s[:, i] if present else nan.expand(batch)
    return _rows(cols)


def top_left_subspace(F: Tensor, r: int) -> tuple[Tensor, Tensor, Tensor]:
    """(U, s, resolved): a basis of the top-r left singular subspace of each F (..., m, p), all p singular
    values (descending), and whether the subspace is resolved, from the eigendecomposition of the p×p
    Gram FᵀF — p×p work instead of an m×p SVD. A factor whose Gram overflows is scaled to max |F| = 1 first.

    Squaring halves the relative accuracy of the small singular values: the subspace is off by at most
    about e / (σ_r² − σ_{r+1}² − e), e = (m + 10p)·eps·‖F‖_F² (Davis–Kahan on the Gram's backward
    error), against about eps·σ1 / (σ_r − σ_{r+1}) from an SVD. Where σ_r² − σ_{r+1}² ≤ e that bound
    says nothing (σ_r is at the Gram's round-off: U's columns are then neither unit nor in the
    subspace), and ``resolved`` is False: the caller reports no alignment there."""
    gram = matmul(mT(F), F)
    scale = torch.ones(F.shape[:-2] + (1, 1), dtype=F.dtype, device=F.device)
    if not finite_sum(gram):  # rescale only what overflowed (a pass over F costs as much as the Gram)
        big = F.abs().amax(dim=(-2, -1), keepdim=True)
        scale = torch.where(torch.isfinite(gram).flatten(-2).all(-1)[..., None, None] | (big == 0), scale, big)
        gram = mT(F / scale) @ (F / scale)
    lam, V = torch.linalg.eigh(gram)  # ascending
    m, p = F.shape[-2:]
    e = (m + 10 * p) * torch.finfo(F.dtype).eps * lam.clamp(min=0.0).sum(dim=-1)
    below = lam[..., p - r - 1] if p > r else torch.zeros_like(e)
    resolved = lam[..., p - r] - below > e
    s = torch.flip(lam, dims=(-1,)).clamp(min=0.0).sqrt()
    top = s[..., :r]
    V_top = torch.flip(V[..., -r:], dims=(-1,))
    # U = F V / σ, with a zero column where σ = 0 (no direction to report)
    U = matmul(F, V_top / torch.where(top > 0, top * scale[..., 0], torch.ones_like(top))[..., None, :])
    return U, s * scale[..., 0], resolved


def _align_columns(problem, ref: AlignmentTargets, A: Tensor, B: Tensor, frozen_B: bool, with_B: bool = True) -> dict:
    """The align set's columns as (b,) tensors: the risk, and align_A and (``with_B``) align_B with the factors'
    top-r subspaces from r×r Grams (``top_left_subspace``), NaN where a subspace is undefined or unresolved."""
    r = ref.r_align
    nan = torch.tensor(math.nan, dtype=A.dtype, device=A.device)
    cols = {"risk": problem.risk(A, B).expand(A.shape[0])}
    UA, sA, resolved = top_left_subspace(A, r)
    cols["align_A"] = torch.where(subspace_defined_mask(sA, r) & resolved, sin_theta(ref.U_G, UA), nan)
    if not with_B:
        return cols
    if frozen_B:
        cols["align_B"] = nan.expand(A.shape[0])
    else:
        VB, sB, resolved = top_left_subspace(mT(B), r)
        cols["align_B"] = torch.where(subspace_defined_mask(sB, r) & resolved, sin_theta(ref.V_G, VB), nan)
    return cols


def record_align_batch(problem, ref: AlignmentTargets, A: Tensor, B: Tensor, frozen_B: bool = False) -> list[dict]:
    """The align row (``metrics=align``) for each run of a batch: risk, align_A and align_B."""
    return _rows(_align_columns(problem, ref, A, B, frozen_B))


def record_figure_batch(problem, ref: AlignmentTargets, A: Tensor, B: Tensor, frozen_B: bool = False) -> list[dict]:
    """The figure row (``metrics=figure``) for each run of a batch: risk and align_A, the align row's values."""
    return _rows(_align_columns(problem, ref, A, B, frozen_B, with_B=False))


def record_lean_batch(problem, ref: AlignmentTargets, A: Tensor, B: Tensor, frozen_B: bool = False) -> list[dict]:
    """The lean row (``metrics=lean``) for each run of a batch: the align row and the loss."""
    return _rows({"loss": problem.loss(A, B).expand(A.shape[0]), **_align_columns(problem, ref, A, B, frozen_B)})


def subspace_defined_mask(s: Tensor, r: int, rel_gap: float = 1e-10) -> Tensor:
    """``subspace_defined`` for a batch of singular-value vectors s (b, p): a (b,) bool tensor,
    computed on their device (no host sync)."""
    if s.shape[-1] < r:
        return torch.zeros(s.shape[:-1], dtype=torch.bool, device=s.device)
    ok = s[..., r - 1] > 0
    if s.shape[-1] > r:
        ok = ok & (s[..., r - 1] - s[..., r] > rel_gap * s[..., 0])
    return ok


def subspace_defined(s: Tensor, r: int, rel_gap: float = 1e-10) -> bool:
    """Whether a factor with singular values ``s`` has a well-defined top-r subspace.

    It does not when σ_r = 0 (B0 = 0) or when σ_r and σ_{r+1} tie (LoRA-GA's A0 has r equal
    singular values): then any basis SVD returns is arbitrary, and so would the alignment be.
    """
    return bool(subspace_defined_mask(s[None], r, rel_gap)[0])
