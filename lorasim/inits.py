"""Named initialisations of the adapter pair: per name, a config dataclass and a function of
(problem, rank, generator, config).

All return an ``Init``: paper-layout factors A (d×r) and B (r×k) with any LoRA
scale s already folded in (A B is the actual change to W0), plus the offset the
init subtracts from the frozen weight, if any (W0 ← W0 − L R).

Notation: G♮ = −∇_W L(W0) = U S Vᵀ (SVD, U on the input side), [M]_r the best
rank-r approximation, s the peft scale (peft_convention.lora_scale).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from omegaconf import MISSING

from .config import InitConfig, checked, fail, register
from .linalg import Tensor, mT
from .peft_convention import lora_scale
from . import streams
from .problems.base import Problem, check_factors


@dataclass
class Init:
    A: Tensor
    B: Tensor
    offset: Optional[tuple[Tensor, Tensor]] = None  # (L, R): the frozen weight becomes W0 − L R
    lora_scale: Optional[float] = None  # the peft scale s folded into A and B, when it applies


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


@register("init", "small_random")
@dataclass
class SmallRandomConfig(InitConfig):
    name: str = "small_random"
    alpha: float = checked(1e-3, "num", 0)  # std of the entries (the theory's α)
    both: bool = checked(False, "bool")  # B0 random too


def small_random(problem: Problem, rank: int, generator: torch.Generator, cfg: SmallRandomConfig) -> Init:
    """Theory's vanilla LoRA: A0 ~ N(0, α²) i.i.d., B0 = 0 (or B0 ~ N(0, α²) with ``both``)."""
    A = cfg.alpha * _draw("normal", (problem.d, rank), generator, problem)
    if cfg.both:
        B = cfg.alpha * _draw("normal", (rank, problem.k), generator, problem)
    else:
        B = torch.zeros(rank, problem.k, dtype=problem.dtype, device=problem.device)
    return Init(A, B)


@dataclass
class PeftScaled(InitConfig):
    """The inits that fold peft's LoRA scale s into the factors."""

    lora_alpha: float = checked(16.0, "num", 0, lo_open=True)  # peft lora_alpha (α_L, not the theory's α)
    rslora: bool = checked(True, "bool")  # s = α_L/√r (true) or α_L/r
    lora_scale: Optional[float] = checked(None, "num", 0, lo_open=True)  # s itself; overrides lora_alpha and rslora
    scale: Optional[float] = checked(None, "renamed", "lora_scale")  # deprecated (0.2 name of lora_scale)

    def s(self, rank: int) -> float:
        return lora_scale(rank, self.lora_alpha, self.rslora, self.lora_scale)


@register("init", "kaiming")
@dataclass
class KaimingConfig(PeftScaled):
    name: str = "kaiming"


def kaiming(problem: Problem, rank: int, generator: torch.Generator, cfg: KaimingConfig) -> Init:
    """peft's default: lora_A ~ kaiming_uniform(a=√5) = U(−1/√d, 1/√d), lora_B = 0.

    In paper layout A0 = √s · lora_Aᵀ, B0 = 0.
    """
    s = cfg.s(rank)
    bound = 1.0 / math.sqrt(problem.d)  # gain √(2/(1+5)) · √(3/fan_in) with fan_in = d
    u = _draw("uniform", (problem.d, rank), generator, problem)
    A = math.sqrt(s) * (2 * u - 1) * bound
    return Init(A, torch.zeros(rank, problem.k, dtype=problem.dtype, device=problem.device), lora_scale=s)


@register("init", "spectral")
@dataclass
class SpectralConfig(InitConfig):
    name: str = "spectral"
    zeta: float = checked(1.0, "num", 0, lo_open=True)  # A0B0 = ζ[G♮]_r: 1 for the linear model, ≈ 2 for ReLU
    tol: float = checked(0.0, "num", 0, 1)  # singular values ≤ tol·σ1 are set to 0 before the square root
    pad: float = checked(0.0, "num", 0)  # std of random padding in the zero directions (over-rank)


def spectral(problem: Problem, rank: int, generator: torch.Generator, cfg: SpectralConfig) -> Init:
    """Theory's spectral (LoRA-One) init: A0 = √ζ U_r S_r^{1/2}, B0 = √ζ S_r^{1/2} V_rᵀ, so A0B0 = ζ[G♮]_r.

    ζ = 1 for the linear model, ≈ 2 for ReLU (E G♮ ≈ ΔW/2). Singular values ≤ tol·σ1 are
    zeroed before the square root (an exactly rank-r* G♮ otherwise leaves √(ε·σ1) ≈ 1e-8
    in the spare columns). ``pad`` > 0 fills the columns of A whose singular value is at
    round-off level (≤ max(tol, 1e-10)·σ1, zeroed too) with N(0, pad²) entries, leaving B's
    rows zero, so A0B0 is unchanged but the spare directions can move (over-rank).
    """
    U, S, V = problem.svd_G()
    S = S[:rank].clone()
    cut = max(cfg.tol, 1e-10) if cfg.pad > 0 else cfg.tol
    if cut > 0:
        S[S <= cut * S[0]] = 0
    root = torch.sqrt(cfg.zeta * S)
    A = U[:, :rank] * root
    B = root[:, None] * mT(V[:, :rank])
    if cfg.pad > 0:
        dead = S == 0
        noise = cfg.pad * _draw("normal", (problem.d, rank), generator, problem)
        A = torch.where(dead[None, :], noise, A)
    return Init(A, B)


@register("init", "lora_one")
@dataclass
class LoraOneConfig(PeftScaled):
    name: str = "lora_one"
    gamma: float = checked(128.0, "num", 0, lo_open=True)  # stable_gamma


def lora_one(problem: Problem, rank: int, generator: torch.Generator, cfg: LoraOneConfig) -> Init:
    """LoRA-One as the official code scales it (SPEC §6.2), with W0 unchanged.

    torch layout: −G_torch = U S Vᵀ, lora_B = U_r √S_r/√(σ1 γ), lora_A = √S_r V_rᵀ/√(σ1 γ).
    Paper layout (−G_torch = G♮ᵀ, so the input side is G♮'s left vectors):
    A0 = √s U_r S_r^{1/2}/√(σ1 γ), B0 = √s S_r^{1/2} V_rᵀ/√(σ1 γ), hence

        A0 B0 = (s/γ) [G♮]_r / σ1(G♮),   ‖A0 B0‖_op = s/γ  (0.0442 for α_L = 16, r = 8, γ = 128).
    """
    U, S, V = problem.svd_G()
    root = torch.sqrt(S[:rank] / (S[0] * cfg.gamma)) * math.sqrt(cfg.s(rank))
    return Init(U[:, :rank] * root, root[:, None] * mT(V[:, :rank]), lora_scale=cfg.s(rank))


@dataclass
class OffsetConfig(PeftScaled):
    """LoRA-GA's construction, whose init is subtracted from W0."""

    shifts_w0: ClassVar[bool] = True
    variant: str = checked("reference", "choice", ("reference", "peft"))  # reference: Outsider565/LoRA-GA; peft ≥ 0.19
    gamma: float = checked(16.0, "num", 0, lo_open=True)  # stable_gamma: c = k^{1/4}/√γ


@register("init", "lora_ga")
@dataclass
class LoraGAConfig(OffsetConfig):
    name: str = "lora_ga"
    direction: str = checked("ArB2r", "choice", ("ArB2r", "top_r"))  # "top_r" (deprecated) is offset_lora_one

    def __post_init__(self):
        super().__post_init__()
        if self.direction == "top_r":
            warnings.warn("init lora_ga with direction=top_r is the notebook's offset LoRA-One: use init "
                          "offset_lora_one (direction is deprecated)", FutureWarning, stacklevel=3)


@register("init", "offset_lora_one")
@dataclass
class OffsetLoraOneConfig(OffsetConfig):
    name: str = "offset_lora_one"
    direction: ClassVar[str] = "top_r"


def lora_ga(problem: Problem, rank: int, generator: torch.Generator, cfg: OffsetConfig) -> Init:
    """LoRA-GA ("stable" scale), with the init subtracted from W0; ``offset_lora_one`` on the top r.

    torch layout: G_torch = ∇_{W_torch} L = U S Vᵀ (no negation), c = out^{1/4}/√γ, and the
    output side takes columns J = r..2r of U (lora_ga, ArB2r) or J = 0..r (offset_lora_one):
      reference (Outsider565/LoRA-GA): lora_A = c V_rᵀ, lora_B = c U_{:, J}.
      peft ≥ 0.19:                     lora_A = V_rᵀ,   lora_B = c U_{:, J} diag(S_J).
    Paper layout: ∇_W L = −G♮ = P S Qᵀ with P = V, Q = U, A0 = √s lora_Aᵀ, B0 = √s lora_Bᵀ,
    and the frozen weight becomes W0 − A0 B0. With s = 1 and γ = 4 the reference variant is
    the toy notebook's T2 "LoRA-GA" (A = c L_r, B = c R_{:, r:2r}ᵀ from the SVD of −G♮), and
    offset_lora_one its offset "LoRA-One" of January 2025 (B = c R_{:, :r}ᵀ).
    """
    lo = rank if cfg.direction == "ArB2r" else 0
    if lo + rank > min(problem.d, problem.k):
        fail("run", "rank", rank, f"rank ≤ min(d, k)/2 = {min(problem.d, problem.k) // 2} for lora_ga (it uses 2r directions)")
    s = cfg.s(rank)
    P, S, Q = _svd(-problem.G)
    c = problem.k ** 0.25 / math.sqrt(cfg.gamma)
    J = slice(lo, lo + rank)
    if cfg.variant == "reference":
        A, B = c * P[:, :rank], c * mT(Q[:, J])
    else:
        A, B = P[:, :rank], c * S[J, None] * mT(Q[:, J])
    A, B = math.sqrt(s) * A, math.sqrt(s) * B
    return Init(A, B, offset=(A, B), lora_scale=s)


@register("init", "pissa")
@dataclass
class PissaConfig(InitConfig):
    name: str = "pissa"
    shifts_w0: ClassVar[bool] = True


def pissa(problem: Problem, rank: int, generator: torch.Generator, cfg: PissaConfig) -> Init:
    """PiSSA: the top-r SVD of the frozen weight moves into the adapters, the residual stays.

    W0 = P S Qᵀ, A0 = P_r S_r^{1/2}, B0 = S_r^{1/2} Q_rᵀ (peft's lora_A = √(S_r/s) Vh_r is the
    same product), and the frozen weight becomes W0 − A0 B0 = W0 − [W0]_r.
    """
    P, S, Q = _svd(problem.W0)
    root = torch.sqrt(S[:rank])
    A, B = P[:, :rank] * root, root[:, None] * mT(Q[:, :rank])
    return Init(A, B, offset=(A, B))


@register("init", "arrays")
@dataclass
class ArraysInitConfig(InitConfig):
    name: str = "arrays"
    A0: Any = checked(MISSING, "rows")  # d×r, nested lists
    B0: Any = checked(MISSING, "rows")  # r×k


def arrays(problem: Problem, rank: int, generator: torch.Generator, cfg: ArraysInitConfig) -> Init:
    """Explicit factors given in the config (small toys): A0 (d×r) and B0 (r×k) as nested lists."""
    A, B = check_factors(problem, cfg.A0, cfg.B0)
    if A.shape[1] != rank:
        fail("run", "rank", rank, f"the number of columns of init.A0 ({A.shape[1]})")
    return Init(A, B)


INITS: dict[str, Callable[..., Init]] = {"small_random": small_random, "kaiming": kaiming, "spectral": spectral,
                                          "lora_one": lora_one, "lora_ga": lora_ga, "offset_lora_one": lora_ga,
                                          "pissa": pissa, "arrays": arrays}


def make_init(problem: Problem, rank: int, cfg: InitConfig, seed: int = 0) -> Init:
    """Run the init that ``cfg`` names (an InitConfig: e.g. InitConfig(name="spectral", zeta=2.0))."""
    if not (isinstance(rank, int) and 1 <= rank <= min(problem.d, problem.k)):
        fail("run", "rank", rank, f"integer in [1, min(d, k) = {min(problem.d, problem.k)}]")
    # The init's own stream: never the problem's, and not another init's at the same seed.
    return INITS[cfg.name](problem, rank, streams.generator(seed, f"init/{cfg.name}"), cfg)
