r"""
## C1 — the one-step gradient is G♮ = Σ̂ΔW and has rank r\*  (SPEC §4.2 F1; prerequisite of R1, R4)

**Hypothesis.** In the noiseless linear model, the one-step full fine-tuning direction
G♮ = −∇_W L(W0) equals Σ̂ΔW and has rank exactly r\*.

**Derivation.** L(W) = (1/2N)‖XW − Y‖_F² with Y = X(W0 + ΔW), so
∇_W L(W0) = (1/N)Xᵀ(XW0 − Y) = −(1/N)XᵀXΔW = −Σ̂ΔW. Hence G♮ = Σ̂ΔW = (Σ̂U\*)S\*V\*ᵀ.
With N ≥ d, Σ̂ is invertible almost surely, so Σ̂U\* has full column rank r\* and
rank(G♮) = rank(ΔW) = r\*; all further singular values vanish. Nothing here is approximate:
the only deviation is floating-point round-off. Forming Y − XW0 cancels the large XW0 term, so
the round-off scales with ‖W♮‖ rather than ‖ΔW‖: for float64 inner products of length N with
random rounding, the relative error is of order τ = √N·ε·‖Σ̂‖_op‖W♮‖_F/‖Σ̂ΔW‖_F.

**Setup.** conf/claims/C01.yaml: X ~ N(0, I), W0 ~ N(0, 1), ΔW = PQᵀ of rank r\* (κ = 1; P, Q Haar
orthonormal from the QR of Gaussian blocks), Y = X(W0+ΔW), all drawn with torch's own generator on
the claim's device (seeded per seed), independently of lorasim; G♮ is taken by torch autograd of the
loss and compared with lorasim's `LinearTeacher.from_arrays(X, Y, W0).G`. Large: d = 4096, k = 1024
(the identity is per column of ΔW, so k only sets how many columns are checked), N = 4d.

**Measured.** e_G = ‖G♮ − Σ̂ΔW‖_F/‖Σ̂ΔW‖_F (autograd and lorasim), and σ_{r\*+1}(G♮)/σ_1(G♮).

**Prediction.** Both are 0 up to round-off: ≤ τ.

**Pass rule.** e_G (both versions), |G_lorasim − G_autograd|/‖G‖ and the singular-value ratio are
each ≤ 10·τ (the factor 10 covers the constant of the √N random-rounding estimate), for every seed.

**Mutations.** `population_G`: lorasim's G is the population formula ΔW = Σ̂⁻¹G♮ (drops Σ̂; e_G ≈
‖(Σ̂ − I)ΔW‖/‖Σ̂ΔW‖ ≈ √(d/N)); `float32_G`: G♮ accumulated in float32 (relative error ≈ 1e-7 ≫ 10τ ≈ 1e-12);
`rank_leak`: G♮ plus a rank-one term of relative size 1e-9 (a rounding bug far below any sampling effect,
above round-off: σ_{r\*+1}/σ_1 ≈ 1e-9).
"""
import math

import pandas as pd
import torch

import lorasim
from lorasim import streams

from .kit import Checks, Mutation, TeacherSettings, parse, span, statistics_with
from .numerics import EPS, spd_norm

TITLE = "G♮ = Σ̂ΔW, rank r*"
RESULT = "F1"


def _rank_one_leak(sigma_hat, G):
    u = torch.ones(G.shape[0], 1, dtype=G.dtype, device=G.device) / math.sqrt(G.shape[0])
    v = torch.ones(1, G.shape[1], dtype=G.dtype, device=G.device) / math.sqrt(G.shape[1])
    return G + 1e-9 * torch.linalg.matrix_norm(G) * u @ v


MUTATIONS = {
    "population_G": Mutation("G computed as ΔW = Σ̂⁻¹G♮ (the population formula, Σ̂ dropped)",
                             statistics_with(lambda S, G: torch.linalg.solve(S, G))),
    "float32_G": Mutation("G♮ accumulated in float32", statistics_with(lambda S, G: G.float().double())),
    "rank_leak": Mutation("G♮ plus a rank-one term of relative size 1e-9", statistics_with(_rank_one_leak)),
}


class Settings(TeacherSettings):
    n: int


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    dev, f64 = cfg.device, torch.float64
    rows = []
    for seed in range(cfg.seeds):
        def draw(what, *shape):  # each array from a stream of its own (lorasim.streams)
            gen = streams.generator(seed, f"theory/c01/{what}", dev)
            return torch.randn(*shape, generator=gen, dtype=f64, device=dev)

        X, W0 = draw("X", cfg.n, cfg.d), draw("W0", cfg.d, cfg.k)
        P = torch.linalg.qr(draw("P", cfg.d, cfg.r_star))[0]
        Q = torch.linalg.qr(draw("Q", cfg.k, cfg.r_star))[0]
        delta = P @ Q.T
        Y = X @ (W0 + delta)
        W = W0.clone().requires_grad_(True)
        (0.5 * ((X @ W - Y) ** 2).sum() / cfg.n).backward()
        G_auto = -W.grad
        prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, r_star=cfg.r_star, device=dev)
        del X, Y, W
        SD = prob.sigma_hat @ delta
        norm = float(torch.linalg.matrix_norm(SD))
        sv = torch.linalg.svdvals(prob.G)
        tau = math.sqrt(cfg.n) * EPS * spd_norm(prob.sigma_hat) * float(torch.linalg.matrix_norm(W0 + delta)) / norm
        rows.append({
            "seed": seed, "tau": tau,
            "e_G_autograd": float(torch.linalg.matrix_norm(G_auto - SD)) / norm,
            "e_G_lorasim": float(torch.linalg.matrix_norm(prob.G - SD)) / norm,
            "lorasim_vs_autograd": float(torch.linalg.matrix_norm(prob.G - G_auto)) / norm,
            "sv_ratio": float(sv[cfg.r_star] / sv[0]),
        })
    df = pd.DataFrame(rows)
    checks = Checks()
    for col in ("e_G_autograd", "e_G_lorasim", "lorasim_vs_autograd", "sv_ratio"):
        checks.add(col, (df[col] <= 10 * df["tau"]).all(), f"max {col}/τ {(df[col] / df['tau']).max():.3g} > 10")
    return checks.verdict(
        prediction="e_G, σ_{r*+1}/σ_1 ≤ 10τ (round-off)",
        measured=(f"max e_G {max(df['e_G_autograd'].max(), df['e_G_lorasim'].max()):.2g}, σ ratio "
                  f"{df['sv_ratio'].max():.2g}, τ {span(df['tau'], '.2g')}"),
        table=df)
