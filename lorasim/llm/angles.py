"""Figure 1(b) inside a real transformer: how far each adapter's subspaces are from the top-r
singular subspaces of the one-step gradient (SPEC §8.1).

For a layer with one-step gradient G (out × in) and adapter update ΔW_t = s·lora_B·lora_A, let
U_r, V_r be G's top-r left (output-side) and right (input-side) singular vectors and P_r, Q_r
those of ΔW_t. Logged per layer and side:

    full       sinΘ = ‖(I − U_rU_rᵀ) P_r‖_op           (the whole orthogonal complement; lorasim.metrics.sin_theta)
    rms        ‖(I − U_rU_rᵀ) P_r‖_F / √r              (root mean square of the r principal sines: sinΘ is the
                                                        worst direction, this one is the typical direction)
    truncated  ‖U[:, r:4r]ᵀ P_r‖_op                    (the official code's value: U from svd_lowrank(G, q=4r),
                                                        complement cut at 4r, so a lower bound of ``full``;
                                                        a random r-space reads near the Gaussian edge
                                                        (√(3r) + √r)/√n: mean 0.29 at r = 8, n = 576, edge
                                                        0.32; its "unaligned" level, README)

and likewise with V_r, Q_r on the input side. Sides are named by where they act ("output" is lora_B's,
paper B's; "input" is lora_A's, paper A's) — the official code's "A"/"B" labels are swapped (§8.1).
ΔW_t's subspaces come from QR of the two thin factors and an r×r SVD, never from the out×in product.
"""
from __future__ import annotations

import torch

from ..metrics import sin_theta

SIDES = ("output", "input")


def layer_class(name: str) -> str:
    """q, k, v, o, gate, up, down for Llama-style names; the last name part(s) otherwise."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1] == "dense" else parts[-1].removesuffix("_proj")


class GradientSubspaces:
    """Top singular subspaces of each layer's one-step gradient, computed once (float64, exact SVD)."""

    def __init__(self, gradients: dict[str, torch.Tensor], r: int, device=None):
        self.r = r
        self.bases = {}
        for name, G in gradients.items():
            U, _, Vh = torch.linalg.svd(G.to(device=device, dtype=torch.float64), full_matrices=False)
            self.bases[name] = (U[:, : 4 * r], Vh[: 4 * r].T)

    def angles(self, model: torch.nn.Module, adapter: str = "default") -> list[dict]:
        """One row per (layer, side) for the LoRA layers of ``model`` that have a gradient."""
        rows = []
        r = self.r
        for name, mod in model.named_modules():
            key = name.removeprefix("base_model.model.")
            if key not in self.bases or not hasattr(mod, "lora_A"):
                continue
            lora_A = mod.lora_A[adapter].weight.detach().to(torch.float64)
            lora_B = mod.lora_B[adapter].weight.detach().to(torch.float64)
            Q_out, R_out = torch.linalg.qr(lora_B * mod.scaling[adapter])
            Q_in, R_in = torch.linalg.qr(lora_A.T)
            X, sv, Yh = torch.linalg.svd(R_out @ R_in.T)
            if float(sv[-1]) <= 1e-12 * max(float(sv[0]), 1e-300):
                continue  # ΔW has rank < r (e.g. lora_B = 0 at t = 0): its top-r subspaces are not defined
            adapter_bases = {"output": Q_out @ X, "input": Q_in @ Yh.T}
            for side, G_basis in zip(SIDES, self.bases[key]):
                P = adapter_bases[side].to(G_basis.device)
                U_r = G_basis[:, :r]
                rows.append({"layer": key, "layer_class": layer_class(key), "side": side,
                             "full": float(sin_theta(U_r, P)),
                             "rms": float(torch.linalg.matrix_norm(P - U_r @ (U_r.T @ P)) / r**0.5),
                             "truncated": float(torch.linalg.matrix_norm(G_basis[:, r:].T @ P, ord=2))})
        return rows
