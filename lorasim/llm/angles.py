"""Figure 1(b) inside a real transformer: how far each adapter's subspaces are from the top singular
subspaces of the one-step gradient (SPEC §8.1, §4 R1).

For a layer with one-step gradient G (out × in) and adapter update ΔW_t = s·lora_B·lora_A, let
U, V be G's left (output-side) and right (input-side) singular vectors, P, Q those of ΔW_t, and
F the factor's own singular vectors: lora_A's right ones (input side; paper A = lora_Aᵀ, the toy's
a(t), claim C3) and lora_B's left ones (output side). Logged per layer and side, with the G-basis
of that side:

    full        sinΘ(U_r, P_r) = ‖(I − U_rU_rᵀ) P_r‖_op  (the whole orthogonal complement; lorasim.metrics.sin_theta)
    rms         ‖(I − U_rU_rᵀ) P_r‖_F / √r                (root mean square of the r principal sines: sinΘ is the
                                                          worst direction, this one is the typical direction)
    truncated   ‖U[:, r:4r]ᵀ P_r‖_op                      (the official code's value: complement cut at 4r, so a
                                                          lower bound of ``full``)
    truncated_random  (√(3r) + √r)/√n                     (``truncated``'s level for a random r-space in n = the
                                                          side's width: the Gaussian edge; mean 0.29 at r = 8,
                                                          n = 576, edge 0.32; README)
    delta_top{1,2,_rstar}   sinΘ(U_k, P_k)                ΔW's top-k directions against G's top-k
    factor_top{1,2,_rstar}  sinΘ(U_k, F_k)                the factor's own top-k directions against G's top-k
    factor_full             sinΘ(U_r, F_r)                the factor's whole span (defined at t = 0, where ΔW = 0)
    r_star      the k ≤ r with the largest gap σ_k/σ_{k+1} of G: the top-k subspace that G defines best (an LLM's
                gradient has no true rank; in the toys r* is the teacher's rank)

A value whose subspace is not defined (ΔW or lora_B of rank < k, e.g. lora_B = 0 at t = 0) is NaN.
Sides are named by where they act ("output" is lora_B's, paper B's; "input" is lora_A's, paper A's) —
the official code's "A"/"B" labels are swapped (§8.1). ΔW_t's subspaces come from QR of the two thin
factors and an r×r SVD, never from the out×in product.
"""
from __future__ import annotations

import math

import torch

from ..metrics import sin_theta

SIDES = ("output", "input")
RANK_TOL = 1e-12  # a singular value below this × the largest: the subspace it would complete is not defined


def layer_class(name: str) -> str:
    """q, k, v, o, gate, up, down for Llama-style names; the last name part(s) otherwise."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1] == "dense" else parts[-1].removesuffix("_proj")


def gap_rank(sigma: torch.Tensor, r: int) -> int:
    """The k in 1..r with the largest σ_k/σ_{k+1} (``sigma`` descending, at least r + 1 values)."""
    ratios = sigma[:r] / sigma[1: r + 1].clamp_min(torch.finfo(sigma.dtype).tiny)
    return int(torch.argmax(ratios)) + 1


def truncated_random_level(r: int, n: int) -> float:
    """The official truncated value's level for a random r-space in n dimensions (Gaussian edge)."""
    return (math.sqrt(3 * r) + math.sqrt(r)) / math.sqrt(n)


def _ordered_basis(M: torch.Tensor, side: str, k: int):
    """The top-k singular vectors of a factor on its long side (lora_A: right, lora_B: left), or None
    when M has rank < k there."""
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    if float(s[0]) == 0.0 or float(s[k - 1]) <= RANK_TOL * float(s[0]):
        return None
    return (U if side == "output" else Vh.T)[:, :k]


class GradientSubspaces:
    """Top singular subspaces of each layer's one-step gradient, computed once (float64, exact SVD).
    All the angles' linear algebra runs on the host in float64, whatever ``device`` the model is on:
    hundreds of small float64 SVDs and QRs a log are latency-bound on a GPU (the H200 run of
    alignment_theory spent minutes in them)."""

    def __init__(self, gradients: dict[str, torch.Tensor], r: int, device=None):
        self.r = r
        self.bases, self.r_star = {}, {}
        for name, G in gradients.items():
            U, S, Vh = torch.linalg.svd(G.detach().to(device="cpu", dtype=torch.float64), full_matrices=False)
            self.bases[name] = (U[:, : 4 * r], Vh[: 4 * r].T)
            self.r_star[name] = gap_rank(S, r) if len(S) > r else r

    def angles(self, model: torch.nn.Module, adapter: str = "default") -> list[dict]:
        """One row per (layer, side) for the LoRA layers of ``model`` that have a gradient."""
        rows = []
        r = self.r
        nan = float("nan")
        for name, mod in model.named_modules():
            key = name.removeprefix("base_model.model.")
            if key not in self.bases or not hasattr(mod, "lora_A"):
                continue
            lora_A = mod.lora_A[adapter].weight.detach().to("cpu", torch.float64)
            lora_B = mod.lora_B[adapter].weight.detach().to("cpu", torch.float64)
            Q_out, R_out = torch.linalg.qr(lora_B * mod.scaling[adapter])
            Q_in, R_in = torch.linalg.qr(lora_A.T)
            X, sv, Yh = torch.linalg.svd(R_out @ R_in.T)
            defined = float(sv[0]) > 0 and float(sv[-1]) > RANK_TOL * float(sv[0])  # ΔW of rank r
            delta = {"output": Q_out @ X, "input": Q_in @ Yh.T} if defined else {}
            factors = {"output": lora_B, "input": lora_A}
            r_star = self.r_star[key]
            for side, G_basis in zip(SIDES, self.bases[key]):
                n = G_basis.shape[0]
                row = {"layer": key, "layer_class": layer_class(key), "side": side, "r_star": r_star,
                       "truncated_random": truncated_random_level(r, n)}
                P = delta.get(side)
                P = P.to(G_basis.device) if P is not None else None
                U_r = G_basis[:, :r]
                row["full"] = float(sin_theta(U_r, P)) if P is not None else nan
                row["rms"] = float(torch.linalg.matrix_norm(P - U_r @ (U_r.T @ P)) / r**0.5) if P is not None else nan
                row["truncated"] = float(torch.linalg.matrix_norm(G_basis[:, r:].T @ P, ord=2)) if P is not None else nan
                for suffix, k in (("1", 1), ("2", 2), ("_rstar", r_star), ("_full", r)):
                    if k > r:
                        continue
                    F = _ordered_basis(factors[side], side, k)
                    F = F.to(G_basis.device) if F is not None else None
                    row[f"factor_top{suffix}" if suffix != "_full" else "factor_full"] = (
                        float(sin_theta(G_basis[:, :k], F)) if F is not None else nan)
                    if suffix != "_full":
                        row[f"delta_top{suffix}"] = float(sin_theta(G_basis[:, :k], P[:, :k])) if P is not None else nan
                rows.append(row)
        return rows
