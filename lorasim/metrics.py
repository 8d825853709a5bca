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

from .linalg import Tensor, mT, top_left, top_right


def sin_theta(U1: Tensor, U2: Tensor) -> Tensor:
    """‖(I − U1U1ᵀ)U2‖_op, computed from the projection residual (exact at small angles)."""
    resid = U2 - U1 @ (mT(U1) @ U2)
    return torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0)


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
class Reference:
    """Fixed subspaces the trajectory is compared with, computed once per problem."""

    r_align: int
    U_G: Tensor  # top-r_align left singular vectors of G♮ (input side)
    V_G: Tensor  # top-r_align right singular vectors of G♮ (output side)
    U_star: Optional[Tensor]
    V_star: Optional[Tensor]

    @classmethod
    def from_problem(cls, problem, rank: int) -> "Reference":
        """r_align = r* when the problem knows it, else the LoRA rank."""
        r = problem.r_star if problem.r_star is not None else rank
        r = min(r, rank, problem.d, problem.k)
        U, _, Vh = torch.linalg.svd(problem.G, full_matrices=False)
        us = getattr(problem, "U_star", None)
        vs = getattr(problem, "V_star", None)
        return cls(r, U[:, :r], mT(Vh[:r]), None if us is None else us[:, :r], None if vs is None else vs[:, :r])


def record_risk(problem, A: Tensor, B: Tensor) -> dict:
    """The cheap row: loss, risk and ‖AB − ΔW‖ (no SVDs of the factors)."""
    err_op, err_fro = problem.error_norms(A, B)
    return {"loss": float(problem.loss(A, B)), "risk": float(problem.risk(A, B)),
            "err_op": float(err_op), "err_fro": float(err_fro)}


def record(problem, ref: Reference, A: Tensor, B: Tensor, A0: Tensor, B0: Tensor, n_sv: int,
           frozen_B: bool = False) -> dict:
    """Everything logged at one step, as Python floats (one row of the tidy frame)."""
    r = ref.r_align
    sA = torch.linalg.svdvals(A)
    sB = torch.linalg.svdvals(B)
    a_ok = subspace_defined(sA, r)
    b_ok = subspace_defined(sB, r) and not frozen_B
    UA = top_left(A, r)
    VB = top_right(B, r)
    err_op, err_fro = problem.error_norms(A, B)
    row = {
        "loss": float(problem.loss(A, B)),
        "risk": float(problem.risk(A, B)),
        "err_op": float(err_op),
        "err_fro": float(err_fro),
        "align_A": float(sin_theta(ref.U_G, UA)) if a_ok else math.nan,
        "align_A_star": float(sin_theta(ref.U_star, UA)) if a_ok and ref.U_star is not None else math.nan,
        "align_B": float(sin_theta(ref.V_G, VB)) if b_ok else math.nan,
        "align_B_star": float(sin_theta(ref.V_star, VB)) if b_ok and ref.V_star is not None else math.nan,
    }
    if frozen_B:
        row["balance_drift"] = math.nan
    else:
        drift = mT(A) @ A - B @ mT(B) - (mT(A0) @ A0 - B0 @ mT(B0))
        row["balance_drift"] = float(torch.linalg.matrix_norm(drift))
    angles = principal_angles(ref.U_G, UA).tolist() if a_ok else [math.nan] * r
    for i, th in enumerate(angles, start=1):
        row[f"theta_A_{i}"] = th
    sA = sA[:n_sv].tolist()
    sB = [math.nan] * n_sv if frozen_B else sB[:n_sv].tolist()
    for name, values in (("sv_A", sA), ("sv_B", sB)):
        for i in range(n_sv):
            row[f"{name}_{i + 1}"] = values[i] if i < len(values) else math.nan
    return row


def subspace_defined(s: Tensor, r: int, rel_gap: float = 1e-10) -> bool:
    """Whether a factor with singular values ``s`` has a well-defined top-r subspace.

    It does not when σ_r = 0 (B0 = 0) or when σ_r and σ_{r+1} tie (LoRA-GA's A0 has r equal
    singular values): then any basis SVD returns is arbitrary, and so would the alignment be.
    """
    if len(s) < r or not bool(s[r - 1] > 0):
        return False
    return len(s) == r or bool(s[r - 1] - s[r] > rel_gap * s[0])
