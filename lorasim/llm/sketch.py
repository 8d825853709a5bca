"""LoRA-One's init beyond memory: the top-r factors of the one-step gradient from a single-pass
sketch, without ever forming the gradient.

A linear layer's gradient over the init batches is a sum of outer products, G = Σ_t δ_t x_tᵀ
(out × in; δ_t the gradient at the layer's output, x_t its input, t over every token of every
batch). So its two sketches accumulate from what the backward pass already has at hand:

    Y = G Ω = Σ δ_t (x_tᵀ Ω)          Ω ∈ R^{in × q}     (range sketch,    out × q)
    Z = Ψ G = Σ (Ψ δ_t) x_tᵀ          Ψ ∈ R^{l × out}    (co-range sketch, l × in,  l = 2q)

Memory is O((out + in)·q) per layer instead of out × in, and no weight gradient is computed at
all: the weights are frozen, the backward pass carries only activation gradients, and a hook on
each target layer's output adds its batch to (Y, Z). The reconstruction is the standard single-pass
randomized SVD (Tropp, Yurtsever, Udell & Cevher 2017, §4): Q = orth(Y), C = (ΨQ)^+ Z, Ĝ = Q C, and
the SVD of the small C. It is exact when q ≥ rank(G); otherwise its error is that of a range finder
without power iterations, which the bench measures against the exact SVD.

Under torch.distributed, Ω and Ψ are the same on every rank (they depend only on the seed and
the shapes), so the all-reduced sketches are the sketches of the all-reduced gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.distributed as dist

from .. import streams
from .gradient import collective, frozen_for_init, target_linear_names


@dataclass
class Sketch:
    """One layer's sketches of its mean gradient G (out × in), with the test matrices that made them."""
    Y: torch.Tensor      # G Ω, out × q
    Z: torch.Tensor      # Ψ G, l × in
    omega: torch.Tensor  # in × q
    psi: torch.Tensor    # l × out


def test_matrices(out_dim: int, in_dim: int, q: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ω in × q, Ψ 2q × out): Gaussian, from their own streams, equal for equal shapes and seed."""
    omega = torch.randn(in_dim, q, generator=streams.generator(seed, "llm/sketch_range"))
    psi = torch.randn(2 * q, out_dim, generator=streams.generator(seed, "llm/sketch_corange"))
    return omega.to(device), psi.to(device)


def one_step_sketches(model: torch.nn.Module, batches: Iterable[dict], targets: Union[str, Sequence[str]] = "all-linear",
                      q: int = 32, seed: int = 0, loss_fn: Optional[callable] = None) -> dict[str, Sketch]:
    """{module name: Sketch of the mean over ``batches`` of ∇_W loss} for the target linear layers,
    in one pass over the batches (``one_step_gradients``'s arguments; fp32 sketches on the model's device)."""
    if not (isinstance(q, int) and q >= 1):
        raise ValueError(f"q={q!r}: allowed an integer ≥ 1")
    modules = {name: model.get_submodule(name) for name in target_linear_names(model, targets)}
    embeddings = model.get_input_embeddings()
    sketches, mats = {}, {}
    for name, mod in modules.items():
        out_dim, in_dim = mod.weight.shape
        key = (out_dim, in_dim, mod.weight.device)
        if key not in mats:
            mats[key] = test_matrices(out_dim, in_dim, q, seed, mod.weight.device)
        omega, psi = mats[key]
        sketches[name] = Sketch(torch.zeros(out_dim, q, device=omega.device), torch.zeros(2 * q, in_dim, device=omega.device),
                                omega, psi)

    def on_output(name):
        sk = sketches[name]

        def forward_hook(mod, args, output):
            x = args[0]

            def add(delta):  # δ for every token of the batch: Y += Δᵀ(XΩ), Z += (ΨΔᵀ)X
                X = x.reshape(-1, x.shape[-1]).float()
                D = delta.reshape(-1, delta.shape[-1]).float()
                sk.Y.addmm_(D.T, X @ sk.omega)
                sk.Z.addmm_(sk.psi @ D.T, X)
            if output.requires_grad:
                output.register_hook(add)
        return forward_hook

    def needs_grad(mod, args, output):  # the weights are frozen: the graph starts at the embeddings
        return output.requires_grad_(True)

    hooks = [embeddings.register_forward_hook(needs_grad)]
    count = 0
    with frozen_for_init(model, []):
        try:
            hooks += [mod.register_forward_hook(on_output(name)) for name, mod in modules.items()]
            for count, batch in enumerate(batches, 1):
                out = model(**batch)
                (loss_fn(out, batch) if loss_fn is not None else out.loss).backward()
        finally:
            for h in hooks:
                h.remove()
    total = torch.tensor([count], dtype=torch.int64)
    collective([t for sk in sketches.values() for t in (sk.Y, sk.Z)] + [total], lambda buf: dist.all_reduce(buf))
    count = int(total.item())
    if count == 0:
        raise ValueError("batches: allowed at least one batch")
    for sk in sketches.values():
        sk.Y /= count
        sk.Z /= count
    return sketches


def sketch_top_r(sketches: dict[str, Sketch], r: int) -> dict[str, tuple]:
    """{name: (U_r, S_r, V_r)} of −G from each layer's sketches (svd.top_r's format; fp32), by the
    single-pass reconstruction in float64."""
    out = {}
    for name, sk in sketches.items():
        q = sk.Y.shape[1]
        if not (isinstance(r, int) and 1 <= r <= min(q, sk.Y.shape[0], sk.Z.shape[1])):
            raise ValueError(f"r={r!r}: allowed an integer in [1, {min(q, sk.Y.shape[0], sk.Z.shape[1])}] "
                             f"(the sketch size q={q} bounds the rank)")
        Y, Z, psi = sk.Y.double(), sk.Z.double(), sk.psi.double()
        Q = torch.linalg.qr(Y).Q
        Qp, Rp = torch.linalg.qr(psi @ Q)  # (ΨQ)^+ Z by QR: ΨQ is 2q × q, of full column rank
        core = torch.linalg.solve_triangular(Rp, Qp.T @ Z, upper=True)
        Uc, S, Vh = torch.linalg.svd(core, full_matrices=False)
        out[name] = ((-(Q @ Uc[:, :r])).float(), S[:r].float(), Vh[:r].T.float().contiguous())
    return out
