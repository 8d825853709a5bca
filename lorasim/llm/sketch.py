"""LoRA-One's init beyond memory: the top-r factors of the one-step gradient from sketches taken
in one pass over the init batches (or a few), without ever forming the gradient.

A linear layer's gradient over the init batches is a sum of outer products, G = Σ_t δ_t x_tᵀ
(out × in; δ_t the gradient at the layer's output, x_t its input, t over every token of every
batch). So its two sketches accumulate from what the backward pass already has at hand:

    Y = G Ω = Σ δ_t (x_tᵀ Ω)          Ω ∈ R^{in × q}     (range sketch,    out × q)
    Z = Ψ G = Σ (Ψ δ_t) x_tᵀ          Ψ ∈ R^{l × out}    (co-range sketch, l × in,  l = 2q)

Memory is O((out + in)·q) per layer instead of out × in, and no weight gradient is computed at
all: the weights are frozen, the backward pass carries only activation gradients, and a hook on
each target layer's output adds its batch to (Y, Z). The reconstruction is the standard single-pass
randomized SVD (Tropp, Yurtsever, Udell & Cevher 2017, §4): Q = orth(Y), C = (ΨQ)^+ Z, Ĝ = Q C, and
the SVD of the small C. It is exact when q ≥ rank(G); otherwise the tail of G's spectrum beyond q
leaks into both sketches, and on a real LLM gradient (SmolLM2, r = 8) a single pass needs q ≈ 16r
to bring the worst layer's sinΘ to exact's top-r near 0.05 (benchmarks.md).

More passes buy accuracy at the same memory: ``sketched_top_r`` with passes = 2(t + 1) runs the
randomized range finder through the data (each pass multiplies G or Gᵀ by a q-column basis, from
the same hooks) with t power iterations and an exact final projection; 4 passes at q = 4r put the
worst SmolLM2 layer at sinΘ ≈ 4e-3.

Under torch.distributed, Ω and Ψ are the same on every rank (they depend only on the seed and
the shapes), so the all-reduced sketches are the sketches of the all-reduced gradient.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.distributed as dist

from .. import streams
from .gradient import backward_each, collective, frozen_for_init, target_linear_names


@dataclass
class Sketch:
    """One layer's sketches of its mean gradient G (out × in), with the test matrices that made them."""
    Y: torch.Tensor      # G Ω, out × q
    Z: torch.Tensor      # Ψ G, l × in
    omega: torch.Tensor  # in × q
    psi: torch.Tensor    # l × out


def sketch_matrices(out_dim: int, in_dim: int, device, q: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ω in × q, Ψ 2q × out): Gaussian, from their own streams, equal for equal shapes and seed."""
    omega = torch.randn(in_dim, q, generator=streams.generator(seed, "llm/sketch_range"))
    psi = torch.randn(2 * q, out_dim, generator=streams.generator(seed, "llm/sketch_corange"))
    return omega.to(device), psi.to(device)


def one_step_sketches(model: torch.nn.Module, batches: Iterable[dict], targets: Union[str, Sequence[str]] = "all-linear",
                      q: int = 32, seed: int = 0, loss_fn: Optional[callable] = None,
                      mode: str = "eval") -> dict[str, Sketch]:
    """{module name: Sketch of the mean over ``batches`` of ∇_W loss} for the target linear layers,
    in one pass over the batches (``one_step_gradients``'s arguments; fp32 sketches on the model's device)."""
    _check_q(q)
    modules = target_modules(model, targets)
    tests = _matrices_per_layer(modules, q, seed)
    sums = sketch_pass(model, batches, modules, {name: {"right": omega, "psi": psi} for name, (omega, psi) in tests.items()},
                       loss_fn, mode, seed)
    return {name: Sketch(sums[name]["right"], sums[name]["psi"], *tests[name]) for name in modules}


def sketched_top_r(model: torch.nn.Module, batches: Sequence[dict], r: int, q: int = 32, passes: int = 1,
                   targets: Union[str, Sequence[str]] = "all-linear", seed: int = 0,
                   loss_fn: Optional[callable] = None, mode: str = "eval") -> dict[str, tuple]:
    """{name: (U_r, S_r, V_r)} of −G for the target layers, G never formed, in ``passes`` passes over
    ``batches``: 1 is the single-pass sketch (``one_step_sketches`` + ``sketch_top_r``); an even
    number 2(t + 1) is the randomized range finder run through the data, with t power iterations
    (a pass multiplies every layer's G by an in × q basis, the next its Gᵀ by the out × q result)
    and an exact projection at the end, Ĝ = Q QᵀG: the accuracy of svd="randomized" with niter = t."""
    _check_q(q)
    if not (isinstance(passes, int) and (passes == 1 or (passes >= 2 and passes % 2 == 0))):
        raise ValueError(f"passes={passes!r}: allowed 1 or an even integer ≥ 2")
    modules = target_modules(model, targets)
    for name, mod in modules.items():  # before any pass: the sketch size bounds the rank
        _check_r(r, min(q, *mod.weight.shape), name)
    if passes == 1:
        return sketch_top_r(one_step_sketches(model, batches, targets, q, seed, loss_fn, mode), r)
    bases = {name: omega for name, (omega, _) in _matrices_per_layer(modules, q, seed).items()}
    for step in range(passes // 2):
        Y = sketch_pass(model, batches, modules, {n: {"right": P} for n, P in bases.items()}, loss_fn, mode, seed)
        Q = {n: _orth(Y[n]["right"]) for n in modules}
        W = sketch_pass(model, batches, modules, {n: {"left": Qn} for n, Qn in Q.items()}, loss_fn, mode, seed)
        if step + 1 < passes // 2:
            bases = {n: _orth(W[n]["left"]) for n in modules}
    out = {}
    for name in modules:  # Ĝ = Q Wᵀ, W = GᵀQ (in × q): the SVD of the small Wᵀ
        Uc, S, Vh = torch.linalg.svd(W[name]["left"].double().T, full_matrices=False)
        out[name] = ((-(Q[name].double() @ Uc[:, :r])).float(), S[:r].float(), Vh[:r].T.float().contiguous())
    return out


def target_modules(model: torch.nn.Module, targets) -> dict[str, torch.nn.Module]:
    return {name: model.get_submodule(name) for name in target_linear_names(model, targets)}


def _matrices_per_layer(modules: dict, q: int, seed: int) -> dict[str, tuple]:
    """{name: (Ω, Ψ)}, drawn once per distinct (shape, device) and shared by the layers that have it."""
    drawn = {}
    for mod in modules.values():
        key = (*mod.weight.shape, mod.weight.device)
        if key not in drawn:
            drawn[key] = sketch_matrices(*key, q, seed)
    return {name: drawn[(*mod.weight.shape, mod.weight.device)] for name, mod in modules.items()}


def sketch_pass(model: torch.nn.Module, batches: Iterable[dict], modules: dict, products: dict,
                loss_fn: Optional[callable] = None, mode: str = "eval",
                seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """One pass over ``batches`` with the weights frozen, summing for each layer the products that
    ``products[name]`` asks for, from each batch's layer input X (tokens × in) and output gradient
    Δ (tokens × out), so that the sums are (with G the batches' mean gradient, Δᵀ X summed):

        "right": P (in × q)   →  G P   = Δᵀ (X P)      (out × q)
        "left":  Q (out × q)  →  Gᵀ Q  = Xᵀ (Δ Q)      (in × q)
        "psi":   Ψ (l × out)  →  Ψ G   = (Ψ Δᵀ) X      (l × in)

    all in fp32 on the layer's device, all-reduced under torch.distributed, divided by the batch count."""
    sums = {name: {kind: torch.zeros(_shape(kind, M, modules[name]), device=M.device) for kind, M in kinds.items()}
            for name, kinds in products.items()}

    def on_output(name):
        def forward_hook(mod, args, output):
            held = [args[0]]  # the input lives until its hook has run, not until the whole graph is freed
            if output.grad_fn is None:  # fed by nothing that needs a gradient (not the embeddings' path)
                output = output.requires_grad_(True)

            def add(delta):
                x = held.pop()
                X = x.reshape(-1, x.shape[-1]).float()
                D = delta.reshape(-1, delta.shape[-1]).float()
                for kind, M in products[name].items():
                    if kind == "right":
                        sums[name][kind].addmm_(D.T, X @ M)
                    elif kind == "left":
                        sums[name][kind].addmm_(X.T, D @ M)
                    else:
                        sums[name][kind].addmm_(M @ D.T, X)
            output.register_hook(add)
            return output
        return forward_hook

    def needs_grad(mod, args, output):  # the weights are frozen: the graph starts at the embeddings
        return output.requires_grad_(True)

    with frozen_for_init(model, [], mode):
        hooks = [model.get_input_embeddings().register_forward_hook(needs_grad)]
        try:
            hooks += [modules[name].register_forward_hook(on_output(name)) for name in products]
            count = backward_each(model, batches, loss_fn, seed)
        finally:
            for h in hooks:
                h.remove()
    total = torch.tensor([count], dtype=torch.int64)
    collective([t for kinds in sums.values() for t in kinds.values()] + [total], lambda buf: dist.all_reduce(buf))
    count = int(total.item())
    if count == 0:
        raise ValueError("batches: allowed at least one batch")
    for kinds in sums.values():
        for t in kinds.values():
            t /= count
    return sums


def _shape(kind: str, M: torch.Tensor, mod: torch.nn.Module) -> tuple:
    out_dim, in_dim = mod.weight.shape
    return {"right": (out_dim, M.shape[1]), "left": (in_dim, M.shape[1]), "psi": (M.shape[0], in_dim)}[kind]


def _orth(Y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(Y.double()).Q.to(Y.dtype)


def _check_q(q) -> None:
    if not (isinstance(q, int) and q >= 1):
        raise ValueError(f"q={q!r}: allowed an integer ≥ 1")


def _check_r(r, most: int, name: str) -> None:
    if not (isinstance(r, int) and 1 <= r <= most):
        raise ValueError(f"r={r!r}: allowed an integer in [1, {most}] (the sketch size q bounds the rank; layer {name})")


def sketch_top_r(sketches: dict[str, Sketch], r: int) -> dict[str, tuple]:
    """{name: (U_r, S_r, V_r)} of −G from each layer's single-pass sketches (svd.top_r's format;
    fp32), by the reconstruction in float64."""
    out = {}
    for name, sk in sketches.items():
        _check_r(r, min(sk.Y.shape[1], sk.Y.shape[0], sk.Z.shape[1]), name)
        Y, Z, psi = sk.Y.double(), sk.Z.double(), sk.psi.double()
        Q = torch.linalg.qr(Y).Q
        Qp, Rp = torch.linalg.qr(psi @ Q)  # (ΨQ)^+ Z by QR: ΨQ is 2q × q, of full column rank
        core = torch.linalg.solve_triangular(Rp, Qp.T @ Z, upper=True)
        Uc, S, Vh = torch.linalg.svd(core, full_matrices=False)
        out[name] = ((-(Q @ Uc[:, :r])).float(), S[:r].float(), Vh[:r].T.float().contiguous())
    return out
