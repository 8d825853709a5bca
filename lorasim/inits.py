"""Named initialisations of the adapter pair, each a function of (problem, rank).

All return an ``Init``: paper-layout factors A (d×r) and B (r×k) with any LoRA
scale s already folded in (A B is the actual change to W0), plus the offset the
init subtracts from the frozen weight, if any (W0 ← W0 − L R).

Notation: G♮ = −∇_W L(W0) = U S Vᵀ (SVD, U on the input side), [M]_r the best
rank-r approximation, s the peft scale (peft_convention.lora_scale).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .config import InitConfig, fail
from .linalg import Tensor, mT
from .peft_convention import lora_scale
from . import streams
from .problems.base import Problem


@dataclass
class Init:
    A: Tensor
    B: Tensor
    offset: Optional[tuple[Tensor, Tensor]] = None  # (L, R): the frozen weight becomes W0 − L R
    scale: Optional[float] = None  # the peft scale s folded into A and B, when it applies


def _draw(kind: str, shape, generator: torch.Generator, problem: Problem) -> Tensor:
    """Random numbers from a CPU generator (make_init gives each init the stream
    ``init/<name>`` of its seed), moved to the problem's device: the same init seed gives the
    same A0 on every device and in every dtype."""
    fn = torch.randn if kind == "normal" else torch.rand
    # Drawn in float64 and cast, like the problems: one init seed is one A0 in every dtype.
    return fn(*shape, generator=generator, dtype=torch.float64).to(dtype=problem.dtype, device=problem.device)


def _svd(M: Tensor):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return U, S, mT(Vh)


def small_random(problem: Problem, rank: int, generator: torch.Generator, alpha: float = 1e-3,
                 both: bool = False) -> Init:
    """Theory's vanilla LoRA: A0 ~ N(0, α²) i.i.d., B0 = 0 (or B0 ~ N(0, α²) with ``both``)."""
    A = alpha * _draw("normal", (problem.d, rank), generator, problem)
    if both:
        B = alpha * _draw("normal", (rank, problem.k), generator, problem)
    else:
        B = torch.zeros(rank, problem.k, dtype=problem.dtype, device=problem.device)
    return Init(A, B)


def kaiming(problem: Problem, rank: int, generator: torch.Generator, lora_alpha: float = 16.0,
            rslora: bool = True, scale: Optional[float] = None) -> Init:
    """peft's default: lora_A ~ kaiming_uniform(a=√5) = U(−1/√d, 1/√d), lora_B = 0.

    In paper layout A0 = √s · lora_Aᵀ, B0 = 0.
    """
    s = lora_scale(rank, lora_alpha, rslora, scale)
    bound = 1.0 / math.sqrt(problem.d)  # gain √(2/(1+5)) · √(3/fan_in) with fan_in = d
    u = _draw("uniform", (problem.d, rank), generator, problem)
    A = math.sqrt(s) * (2 * u - 1) * bound
    return Init(A, torch.zeros(rank, problem.k, dtype=problem.dtype, device=problem.device), scale=s)


def spectral(problem: Problem, rank: int, generator: torch.Generator, zeta: float = 1.0, tol: float = 0.0,
             pad: float = 0.0) -> Init:
    """Theory's spectral (LoRA-One) init: A0 = √ζ U_r S_r^{1/2}, B0 = √ζ S_r^{1/2} V_rᵀ, so A0B0 = ζ[G♮]_r.

    ζ = 1 for the linear model, ≈ 2 for ReLU (E G♮ ≈ ΔW/2). Singular values ≤ tol·σ1 are
    zeroed before the square root (an exactly rank-r* G♮ otherwise leaves √(ε·σ1) ≈ 1e-8
    in the spare columns). ``pad`` > 0 fills the columns of A whose singular value is at
    round-off level (≤ max(tol, 1e-10)·σ1, zeroed too) with N(0, pad²) entries, leaving B's
    rows zero, so A0B0 is unchanged but the spare directions can move (over-rank).
    """
    U, S, V = problem.svd_G()
    S = S[:rank].clone()
    cut = max(tol, 1e-10) if pad > 0 else tol
    if cut > 0:
        S[S <= cut * S[0]] = 0
    root = torch.sqrt(zeta * S)
    A = U[:, :rank] * root
    B = root[:, None] * mT(V[:, :rank])
    if pad > 0:
        dead = S == 0
        noise = pad * _draw("normal", (problem.d, rank), generator, problem)
        A = torch.where(dead[None, :], noise, A)
    return Init(A, B)


def lora_one(problem: Problem, rank: int, generator: torch.Generator, gamma: float = 128.0,
             lora_alpha: float = 16.0, rslora: bool = True, scale: Optional[float] = None) -> Init:
    """LoRA-One as the official code scales it (SPEC §6.2), with W0 unchanged.

    torch layout: −G_torch = U S Vᵀ, lora_B = U_r √S_r/√(σ1 γ), lora_A = √S_r V_rᵀ/√(σ1 γ).
    Paper layout (−G_torch = G♮ᵀ, so the input side is G♮'s left vectors):
    A0 = √s U_r S_r^{1/2}/√(σ1 γ), B0 = √s S_r^{1/2} V_rᵀ/√(σ1 γ), hence

        A0 B0 = (s/γ) [G♮]_r / σ1(G♮),   ‖A0 B0‖_op = s/γ  (0.0442 for α_L = 16, r = 8, γ = 128).
    """
    s = lora_scale(rank, lora_alpha, rslora, scale)
    U, S, V = problem.svd_G()
    root = torch.sqrt(S[:rank] / (S[0] * gamma)) * math.sqrt(s)
    return Init(U[:, :rank] * root, root[:, None] * mT(V[:, :rank]), scale=s)


def lora_ga(problem: Problem, rank: int, generator: torch.Generator, gamma: float = 16.0,
            lora_alpha: float = 16.0, rslora: bool = True, scale: Optional[float] = None,
            variant: str = "reference", direction: str = "ArB2r") -> Init:
    """LoRA-GA ("stable" scale), with the init subtracted from W0.

    torch layout: G_torch = ∇_{W_torch} L = U S Vᵀ (no negation), c = out^{1/4}/√γ, and the
    output side takes columns J = r..2r of U (ArB2r) or J = 0..r (``direction="top_r"``):
      reference (Outsider565/LoRA-GA): lora_A = c V_rᵀ, lora_B = c U_{:, J}.
      peft ≥ 0.19:                     lora_A = V_rᵀ,   lora_B = c U_{:, J} diag(S_J).
    Paper layout: ∇_W L = −G♮ = P S Qᵀ with P = V, Q = U, A0 = √s lora_Aᵀ, B0 = √s lora_Bᵀ,
    and the frozen weight becomes W0 − A0 B0. With s = 1 and γ = 4 the reference variant is
    the toy notebook's T2 "LoRA-GA" (A = c L_r, B = c R_{:, r:2r}ᵀ from the SVD of −G♮), and
    with ``direction="top_r"`` its offset "LoRA-One" of January 2025 (B = c R_{:, :r}ᵀ).
    """
    lo = rank if direction == "ArB2r" else 0
    if lo + rank > min(problem.d, problem.k):
        fail("run", "rank", rank, f"rank ≤ min(d, k)/2 = {min(problem.d, problem.k) // 2} for lora_ga (it uses 2r directions)")
    s = lora_scale(rank, lora_alpha, rslora, scale)
    P, S, Q = _svd(-problem.G)
    c = problem.k ** 0.25 / math.sqrt(gamma)
    J = slice(lo, lo + rank)
    if variant == "reference":
        A, B = c * P[:, :rank], c * mT(Q[:, J])
    elif variant == "peft":
        A, B = P[:, :rank], c * S[J, None] * mT(Q[:, J])
    else:
        fail("init", "variant", variant, "one of reference, peft")
    A, B = math.sqrt(s) * A, math.sqrt(s) * B
    return Init(A, B, offset=(A, B), scale=s)


def pissa(problem: Problem, rank: int, generator: torch.Generator) -> Init:
    """PiSSA: the top-r SVD of the frozen weight moves into the adapters, the residual stays.

    W0 = P S Qᵀ, A0 = P_r S_r^{1/2}, B0 = S_r^{1/2} Q_rᵀ (peft's lora_A = √(S_r/s) Vh_r is the
    same product), and the frozen weight becomes W0 − A0 B0 = W0 − [W0]_r.
    """
    P, S, Q = _svd(problem.W0)
    root = torch.sqrt(S[:rank])
    A, B = P[:, :rank] * root, root[:, None] * mT(Q[:, :rank])
    return Init(A, B, offset=(A, B))


def arrays(problem: Problem, rank: int, generator: torch.Generator, A0=None, B0=None) -> Init:
    """Explicit factors given in the config (small toys): A0 (d×r) and B0 (r×k) as nested lists."""
    from .problems.base import check_factors

    A, B = check_factors(problem, A0, B0)
    if A.shape[1] != rank:
        fail("run", "rank", rank, f"the number of columns of init.A0 ({A.shape[1]})")
    return Init(A, B)


INITS: dict[str, Callable[..., Init]] = {
    "small_random": small_random,
    "kaiming": kaiming,
    "spectral": spectral,
    "lora_one": lora_one,
    "lora_ga": lora_ga,
    "pissa": pissa,
    "arrays": arrays,
}


def make_init(problem: Problem, rank: int, cfg: InitConfig, seed: int = 0) -> Init:
    """Run the init named in ``cfg`` with the parameters its function takes."""
    if not (isinstance(rank, int) and 1 <= rank <= min(problem.d, problem.k)):
        fail("run", "rank", rank, f"integer in [1, min(d, k) = {min(problem.d, problem.k)}]")
    fn = INITS.get(cfg.name)
    if fn is None:
        fail("init", "name", cfg.name, "one of " + ", ".join(INITS))
    params = inspect.signature(fn).parameters
    kwargs = {name: getattr(cfg, name) for name in params if name not in ("problem", "rank", "generator")}
    # The init's own stream: never the problem's, and not another init's at the same seed.
    return fn(problem, rank, generator=streams.generator(seed, f"init/{cfg.name}"), **kwargs)
