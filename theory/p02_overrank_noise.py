r"""
## P2 — over-rank spectral init + PrecGD under label noise (SPEC R3/R4; C10, C12)

Phase diagram: a measurement where the paper's theory is silent.

**Hypothesis.** The reconstructed R3 statement only says that over-rank PrecGD needs a damping λ > 0
that is small next to λ\*_{r\*}. In the noiseless model the over-rank spectral init degenerates (C12):
its r − r\* spare columns sit at √(ε·σ1). Label noise makes G♮ full rank, so the spare columns start
at √σ_{r\*+1}(G♮) with σ_{r\*+1}(G♮) ≈ σ_ε(√d + √k)/√N (F6). We map, over σ_ε × r × λ, three
things: where ScaledGD(λ) from [G♮]_r is stable, how its final risk compares with the noise floor,
and whether the spare directions grow.

**Derivation.**
- *The floor* [D, exact]. Let R0 = Y − XW0, Σ̂ = CCᵀ and Ŵ = Σ̂⁻¹XᵀR0/N. The empirical loss is
  L(W0 + M) = ½‖Cᵀ(M − Ŵ)‖_F² + const. Its exact minimiser over rank ≤ r is reduced-rank regression,
  M_r = C⁻ᵀ[CᵀŴ]_r (Eckart–Young in the Cᵀ-weighted norm). The factorised loss
  ½‖Cᵀ(AB − Ŵ)‖² has no spurious local minima (a Burer–Monteiro factorisation of a strictly convex
  quadratic), so a stable, converged PrecGD ends at M_r. Its population risk,
  risk_RRR(r) = ½‖M_r − ΔW‖_F², is the noise floor at rank r.
- *Size of the floor* [D]. Ŵ − ΔW = Σ̂⁻¹XᵀE/N. The rank-r\* oracle estimates r\*(d + k − r\*)
  parameters, so risk_RRR(r\*) ≈ ½σ_ε² r\*(d + k − r\*)/N, times E tr Σ̂⁻¹/d = N/(N − d − 1) for the
  inflation by Σ̂⁻¹ (Wishart), to first order in σ_ε/λ\*_{r\*} (small noise). Per seed it is a sum of
  ≈ r\*(d + k − r\*) squared Gaussians: relative SD √(2/(r\*(d + k − r\*))). Each extra rank fits one more top
  singular direction of the noise. Those singular values sit near the Marchenko–Pastur edge
  σ_ε(√d + √k)/√N, so risk_RRR(r) − risk_RRR(r\*) ≲ ½(r − r\*)σ_ε²(√d + √k)²/N. This is an upper
  estimate: the lower values fall off the edge. Relative to the oracle, over-rank costs
  ≲ 1 + (r − r\*)(√d + √k)²/(r\*(d + k − r\*)), i.e. 1 + 0.51(r − r\*) at the paper's sizes.
- *Spare directions* [D]. At t = 0, σ_{r\*+1}(A0B0) = σ_{r\*+1}(G♮). At the floor they are
  σ_{r\*+1}(M_r), the fitted noise, slightly larger because Σ̂⁻¹ inflates it. They neither vanish nor
  blow up: over-rank LoRA fits noise.
- *Stability* [D, heuristic]. ScaledGD multiplies the spare block of the gradient by (s² + λ)⁻¹,
  where s is the spare singular value of the factors.
  - Noiseless: s² ≈ ε·σ1 (C12). At λ = 0 the spare block's step is round-off divided by round-off,
    of arbitrary size: unstable.
  - σ_ε > 0: s² ≈ σ_{r\*+1}(G♮) ≫ round-off, so the block is well conditioned even at λ = 0.
  - λ ≫ s²: the spare block becomes plain GD with step η/λ on a curvature of order s². The spare
    directions hardly move within the step budget and stay near their init values, not the floor's:
    the final risk is off the floor by a few per cent, in either direction.

**Setup.** conf/claims/P02.yaml (paper scale). Each seed's instance is drawn in numpy, independently
of lorasim's generator: X (N×d) and E (N×k) standard normal, W0 ~ N(0, 1), and
ΔW = U\* diag(1, .75, .5, .25) V\*ᵀ with Haar U\*, V\* (T2, κ = 4). Labels are
Y = X(W0 + ΔW) + σ_ε E, with the same X and E for every σ_ε, loaded by
`LinearTeacher.from_arrays`. Sizes: d = k = 100, N = 1600, r\* = 4. Grid:
σ_ε ∈ {0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, .03, .1, .3}, r ∈ {4, 5, 8, 12, 16} = r\* … 4r\*, and
λ ∈ {0, 1e-6, 1e-2} (absolute; λ\*_{r\*} = 0.25). The init is spectral with ζ = 1, followed by PrecGD
(simultaneous, η = 0.5) for 400 steps, logged every 5 (risk and loss only: `metrics="risk"`); the ranks
of one (σ_ε, λ) run as one `lorasim.train_batch` (smaller ranks zero-padded). 3 seeds, 450 runs.
ci: d = k = 32, N = 512, r\* = 2, 5 noises, r ∈ {2, 3, 4, 8}, 1 seed.

**Measured.** Per run:
- status with the diverged step, risk_0, risk_final;
- risk_RRR(r) and the oracle risk_RRR(r\*), both computed in numpy; the ratios risk_final/risk_RRR(r)
  and risk_final/risk_RRR(r\*);
- a phase: `diverged`, `above floor` (> 2× the floor + 1e-28·½‖ΔW‖², the σ_ε = 0 round-off),
  `below floor` (< 0.9×) or `at floor`;
- loss_final − loss_min(r);
- the spare singular value σ_{r\*+1} of AB at t = 0, at the end and at M_r, and their ratio
  (spare growth).

**Prediction.** From the derivation:
- (F) where PrecGD is stable it ends at the rank-r floor risk_RRR(r); it is stable wherever the
  spare singular values are far above round-off (σ_ε ≥ 1e-4) and λ ≪ s²;
- (O) the oracle floor risk_RRR(r\*) = ½σ_ε²r\*(d + k − r\*)/(N − d − 1) in the small-noise regime;
- (C) each rank above r\* costs at most one squared top noise singular value, ½σ_ε²(√d + √k)²/(N − d − 1);
- the spare singular values move from σ_{r\*+1}(G♮) to σ_{r\*+1}(M_r);
- λ = 0 is unstable only where the spare singular values are at round-off, i.e. σ_ε ≈ 0.

**Pass rule.** The sweep completes and the recorded quantities are finite (non-diverged runs;
`diverged` is a recorded phase). Two exact sanity checks:
(i) no run ends below the global minimum: loss_final ≥ loss_min(r) − 1e-12·L(W0). lorasim's loss
carries its constant as L(W0) − ½⟨Ŵ, G♮⟩, whose round-off is a few ε·L(W0); 1e-12·L(W0) covers it
with a wide margin.
(ii) lorasim's risk_0 equals ½‖[G♮]_r − ΔW‖_F² from our own SVD of G♮ to a relative 1e-9 (the
round-off of a sum of d·k squares).

The laws:
- (F) `stable on the floor`: every run with σ_ε ≥ noise_report_min (1e-4) and λ ≤ floor_damping_max
  (1e-6) is stable and |risk_T/risk_RRR(r) − 1| ≤ floor_tol = 0.01. At convergence the ratio is exactly 1;
  the tolerance is not derived: it is twice the largest deviation of the prior paper run (0.005, slow
  rotation among near-degenerate top noise directions within the step budget).
- (O) `oracle floor`: in the small-noise regime σ_ε(√d + √k)/√N ≤ λ\*_{r\*}/4 (and σ_ε ≥ 1e-4), the seed mean
  of risk_RRR(r\*)/(½σ_ε²r\*(d + k − r\*)/(N − d − 1)) (each seed's noises share E: one sample per seed,
  their mean) lies within 1 ± (3√(2/(r\*(d + k − r\*)))/√seeds + d/N): 3 SD of the seed mean from the
  χ² count, plus d/N for the O(d/N) error of the inflation factor. (30 other instances, seeds 100–129,
  give 1.018 ± 0.13 (SD) at ci and 0.977 ± 0.05 at paper sizes, σ_ε = 0.03.)
- (C) `over-rank cost`: in the same regime, for every r > r\*, the excess per extra rank
  e_r = (risk_RRR(r) − risk_RRR(r\*))/((r − r\*)·½σ_ε²(√d + √k)²/(N − d − 1)) ≤ 1 + 3·SD, with SD the seed
  spread of e_{r\*+1} over `spread_seeds` = 20 other instances (seeds 1000+, numpy only), computed in the
  run (the top noise singular value fluctuates around the Marchenko–Pastur edge).

**Mutations.** Both killed at ci (`lorasim-verify only=[P2] mutate=true`):
- `oracle_full_rank_dof`: the predicted floor counts the d·k parameters of full-rank least squares
  instead of r\*(d + k − r\*) (8× too large at ci): (O) fails.
- `precgd_B_unpreconditioned`: lorasim's PrecGD preconditions A's direction only, B takes a plain GD
  step (a planted solver bug). The spare directions of B then barely move: (F) fails.

**Analysis.** Paper scale, 450 runs, 386 s on a loaded shared machine (40–55 s on one thread before
0.2).
- *Noise floor* (σ_ε ≥ 1e-4). PrecGD is stable for every λ and r and ends on the floor:
  risk/risk_RRR(r) = 0.995–1.000 per run for λ ∈ {0, 1e-6}. The spare singular values grow by
  1.002–1.063× (median 1.03) from σ_{r\*+1}(G♮) to the fitted noise, as M_r predicts
  (σ_{r\*+1}(M_r)/σ_{r\*+1}(G♮) = 1.002–1.063). σ_{r\*+1}(G♮) is 0.98–1.02 of the MP edge.
- *Cost of over-rank.* It is linear in r − r\*. At σ_ε = 0.3, risk/oracle = 1.51, 2.78, 4.21, 5.43
  for r = 5, 8, 12, 16 (seed medians), against the upper estimate 1.51, 3.04, 5.08, 7.12. The oracle
  itself is 0.0226–0.0252 over the seeds, against ½σ_ε²r\*(d + k − r\*)/N = 0.0221.
- *λ = 0.* Unstable in the near-noiseless corner:
  - 30 diverged runs, all seeds at σ_ε ≤ 1e-8 with r ∈ {12, 16}, plus r = 8 at σ_ε = 0 (2 seeds),
    1e-12 and 1e-10 (1 seed each), and r = 5 at σ_ε ∈ {0, 1e-12} (1 seed each);
  - 5 more runs end above the floor, the worst σ_ε = 1e-12, r = 8, seed 1, at risk 1.2e-11
    (1.3e-11 × ½‖ΔW‖²), without tripping the divergence test (under the old shared streams: 13,
    including one at 0.81 × ½‖ΔW‖², nearly the risk of AB = 0).
  - From σ_ε = 1e-6 on (σ_{r\*+1}(G♮) ≈ 5e-7) every r is stable. So the damping is needed exactly
    where the spare singular values are at round-off.
- *λ = 1e-6.* Never diverges. In the noiseless corner it ends 2.5–4·10⁴ times above the floor in
  17 runs: σ_ε ≤ 1e-12 with r ≥ 12, and σ_ε = 1e-10 with r ≥ 12 (5 of 6 runs). The absolute risks
  there are ≤ 6e-20·½‖ΔW‖². Elsewhere with σ_ε ≤ 1e-6 and r ≥ 5 it mostly ends below the floor
  (40 of 43 runs, ratio 0.40–0.87): λ ≳ s² freezes the noise fit.
- *λ = 1e-2.* Stable everywhere, never above 2× the floor. Because λ ≫ s², the spare block barely
  moves, so the risk is off the floor by −55 % … +38 % for σ_ε ≤ 1e-4. From σ_ε ≥ 1e-2 it is on the
  floor (0.991–1.000).
- *Checks.* No run goes below the global minimum by more than 2e-16·L(W0); risk_0 agrees with
  ½‖[G♮]_r − ΔW‖² to 3e-15.

Rerun with this code (paper, the same 3 instances, ranks batched, `metrics="risk"`; 111 s wall, 72 s of
CPU on the loaded 2-core machine): every law holds. (F) risk/RRR 0.995–1.000 for σ_ε ≥ 1e-4, λ ≤ 1e-6,
all stable (the tolerance 0.01 comes from the prior run on these same instances, so at paper scale (F)
is a reproduction, not an independent test); (O) 0.961 (seeds 0.901–1.039) ∈ 1 ± 0.150; (C) e_r =
0.71–1.00 ≤ 1 + 3·0.055; risk/oracle at σ_ε = 0.3: 1.51, 2.78, 4.21, 5.43 for r = 5, 8, 12, 16 (as
before). λ = 0 diverges in 26 runs (all seeds at σ_ε ≤ 1e-8 with r ∈ {12, 16}, plus r = 8 at σ_ε = 0 and
r = 5 at σ_ε = 1e-10, one seed each): the near-noiseless corner, as before, with single runs moved by
the batch's different round-off.

At ci scale (d = 32, 60 runs, this code): λ = 0 diverges in 4 runs (σ_ε ≤ 1e-8, r ∈ {3, 4, 8});
σ_ε ≥ 1e-4 with λ ≤ 1e-6 is stable and on the floor, risk/RRR 1.000–1.000 (F); (O) 0.977 ∈ 1 ± 0.444;
(C) e_r = 0.64–0.78 ≤ 1 + 3·0.106; risk/oracle at σ_ε = 0.3: 1.72, 2.47, 4.61 for r = 3, 4, 8. One
thread: 5.7 s of CPU (7.9–17.4 s wall on the loaded 2-core machine); mutants 5.7 s
(`oracle_full_rank_dof`) and 5.0 s (`precgd_B_unpreconditioned`) of CPU (11.5 s and 9.9 s wall). (Before
this code, one `lorasim.train` per run with full metrics: 39–47 s wall.)

**Command.** `lorasim-verify only=[P2] scale=paper`
"""
import math

import numpy as np
import pandas as pd

import lorasim
from lorasim import solvers, streams

from .kit import Checks, Mutation, TeacherSettings, heatmap, parse, patched, span, text_table

TITLE = "over-rank PrecGD with label noise (phase diagram σ_ε × r × λ)"
RESULT = "R4"
FIGURE = "p02_overrank_noise.png"


_PRECONDITION = solvers.precondition.update


def _precondition_A_only(self, side, g, state, partner, t):
    """Mutation: ScaledGD(λ) that preconditions A's direction only (B takes the plain gradient step)."""
    return g if side == "B" else _PRECONDITION(self, side, g, state, partner, t)


MUTATIONS = {
    "oracle_full_rank_dof": Mutation("the noise floor counts the d·k parameters of full-rank least squares, not "
                                     "the r*(d + k − r*) of the rank-r* manifold"),
    "precgd_B_unpreconditioned": Mutation("lorasim's PrecGD preconditions A's direction only; B takes a plain GD step",
                                          patched(solvers.precondition, "update", _precondition_A_only)),
}


class Settings(TeacherSettings):
    n: int
    singular_values: list
    ranks: list
    noises: list
    dampings: list
    lr: float
    steps: int
    log_every: int
    noise_report_min: float
    floor_damping_max: float  # the floor law (F) is asserted for λ ≤ this (λ ≪ s², the spare block converges)
    floor_tol: float  # |risk_T/risk_RRR(r) − 1| allowed by (F)
    spread_seeds: int  # extra numpy-only instances (seeds 1000+) for the seed spread of the over-rank excess


def _haar(rng, n, p):
    q, r = np.linalg.qr(rng.standard_normal((n, p)))
    return q * np.sign(np.diag(r))


def _draw(cfg, seed):
    """One instance in numpy (independent of lorasim's own generator): X, E, W0, ΔW."""
    d, k, n = cfg.d, cfg.k, cfg.n

    def rng(what):  # each array from a stream of its own (lorasim.streams)
        return streams.numpy_rng(seed, f"theory/p02/{what}")

    svals = np.asarray(cfg.singular_values, dtype=float)
    truth = rng("truth")
    delta = (_haar(truth, d, len(svals)) * svals) @ _haar(truth, k, len(svals)).T
    W0 = rng("W0").standard_normal((d, k))
    X = rng("X").standard_normal((n, d))
    E = rng("noise").standard_normal((n, k))
    return X, E, W0, delta


def _references(X, R0, delta, ranks, r_star):
    """Reduced-rank regression: the exact global minimiser of the empirical loss over rank ≤ r.

    L(W0 + M) = (1/2N)‖XM − R0‖² = ½‖Cᵀ(M − Ŵ)‖² + const, Σ̂ = CCᵀ, Ŵ = Σ̂⁻¹XᵀR0/N, so the
    minimiser is M_r = C⁻ᵀ[CᵀŴ]_r (Eckart–Young in the Cᵀ-weighted norm).
    """
    n = X.shape[0]
    sig = X.T @ X / n
    G = X.T @ R0 / n
    C = np.linalg.cholesky(sig)
    W_hat = np.linalg.solve(sig, G)
    U, S, Vt = np.linalg.svd(C.T @ W_hat, full_matrices=False)
    out = {}
    for r in sorted(set(ranks) | {r_star}):
        M = np.linalg.solve(C.T, (U[:, :r] * S[:r]) @ Vt[:r])
        resid = X @ M - R0
        sv = np.linalg.svd(M, compute_uv=False)
        out[r] = {"risk_rrr": 0.5 * float(np.sum((M - delta) ** 2)),
                  "loss_min": 0.5 * float(np.sum(resid * resid)) / n,
                  "spare_rrr": float(sv[r_star]) if r > r_star else math.nan}
    sG = np.linalg.svd(G, compute_uv=False)
    return out, G, sG


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    d, k, n, r_star = cfg.d, cfg.k, cfg.n, cfg.r_star
    ranks, noises, dampings = cfg.ranks, cfg.noises, cfg.dampings
    rows = []
    for seed in range(cfg.seeds):
        X, E, W0, delta = _draw(cfg, seed)
        risk_null = 0.5 * float(np.sum(delta**2))
        for noise in noises:
            Y = X @ (W0 + delta) + noise * E
            R0 = Y - X @ W0
            loss_w0 = 0.5 * float(np.sum(R0 * R0)) / n
            refs, G, sG = _references(X, R0, delta, ranks, r_star)
            prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, delta=delta, r_star=r_star, device=cfg.device)
            U, S, Vt = np.linalg.svd(G, full_matrices=False)
            for lam in dampings:
                # one batch per λ: every rank together (lorasim pads the smaller ranks with exact zeros)
                trajs = lorasim.train_batch(prob, [{"init": "spectral", "rank": r} for r in ranks], solver="precgd",
                                            lr=cfg.lr, damping=lam, steps=cfg.steps, log_every=cfg.log_every,
                                            metrics="risk")
                for r, traj in zip(ranks, trajs):
                    df = traj.to_frame()
                    ok = traj.status == "ok"
                    # the spectral init with ζ = 1 is [G♮]_r: its risk, computed here from our own SVD of G
                    risk0_ref = 0.5 * float(np.sum(((U[:, :r] * S[:r]) @ Vt[:r] - delta) ** 2))
                    spare_final = math.nan
                    if ok and r > r_star:
                        spare_final = float(np.linalg.svd((traj.A @ traj.B).cpu().numpy(), compute_uv=False)[r_star])
                    ref, orc = refs[r], refs[r_star]
                    risk_final = float(df["risk"].iloc[-1]) if ok else math.nan
                    loss_final = float(df["loss"].iloc[-1]) if ok else math.nan
                    rows.append({
                        "seed": seed, "noise": noise, "rank": r, "damping": lam, "status": traj.status,
                        "diverged_step": traj.diverged_step if traj.diverged_step is not None else -1,
                        "phase": _phase(ok, risk_final, ref["risk_rrr"], risk_null),
                        "risk_null": risk_null, "risk_0": float(df["risk"].iloc[0]), "risk_0_ref": risk0_ref,
                        "risk_final": risk_final, "risk_rrr": ref["risk_rrr"], "risk_oracle": orc["risk_rrr"],
                        "ratio_rrr": risk_final / ref["risk_rrr"] if ref["risk_rrr"] > 0 else math.nan,
                        "ratio_oracle": risk_final / orc["risk_rrr"] if orc["risk_rrr"] > 0 else math.nan,
                        "excess": (risk_final - ref["risk_rrr"]) / risk_null,
                        "loss_final": loss_final, "loss_min": ref["loss_min"], "loss_w0": loss_w0,
                        "loss_gap": loss_final - ref["loss_min"],
                        "sigma_rstar1_G": float(sG[r_star]),
                        "noise_edge": noise * (math.sqrt(d) + math.sqrt(k)) / math.sqrt(n),
                        "spare_0": float(S[r_star]) if r > r_star else math.nan,
                        "spare_final": spare_final, "spare_rrr": ref["spare_rrr"],
                        "spare_growth": spare_final / float(S[r_star]) if r > r_star and S[r_star] > 0 else math.nan,
                    })
    df = pd.DataFrame(rows)
    ok = df[df["status"] == "ok"]
    # Sanity checks (exact up to round-off):
    # (i) no run goes below the global minimum of the empirical loss over rank ≤ r (reduced-rank
    #     regression). lorasim's loss carries its constant as L(W0) − ½⟨Ŵ, G♮⟩, a difference with a
    #     round-off of a few ε·L(W0); 1e-12·L(W0) bounds that with a wide margin.
    tol = 1e-12 * ok["loss_w0"] + 1e-12 * ok["loss_min"].abs()
    below = ok["loss_gap"] < -tol
    # (ii) risk_0 of the spectral init equals ½‖[G♮]_r − ΔW‖² from our own SVD (relative 1e-9:
    #      round-off of a sum of d·k squares and of two SVDs of the same matrix).
    r0_err = float(((df["risk_0"] - df["risk_0_ref"]).abs() / df["risk_0_ref"]).max())
    checks = Checks()
    checks.add("complete", len(df) == cfg.seeds * len(noises) * len(ranks) * len(dampings), f"{len(df)} runs")
    checks.add("finite", np.isfinite(ok[["risk_final", "loss_final", "risk_rrr", "risk_oracle", "excess"]].to_numpy()).all(),
               "a non-finite quantity in a converged run")
    checks.add("loss ≥ global min", not below.any(), f"{int(below.sum())} runs below the rank-r minimum")
    checks.add("risk_0 = ½‖[G♮]_r − ΔW‖²", r0_err <= 1e-9, f"rel err {r0_err:.1g}")

    # The laws. (F) where PrecGD's spare block is well conditioned (σ_ε ≥ noise_report_min, so s² ≈
    # σ_{r*+1}(G♮) ≫ round-off, and λ ≤ floor_damping_max ≪ s²) every run is stable and ends on the
    # rank-r reduced-rank-regression floor.
    fl = df[(df["noise"] >= cfg.noise_report_min) & (df["damping"] <= cfg.floor_damping_max)]
    n_unstable = int((fl["status"] != "ok").sum())
    dev_f = float((fl["ratio_rrr"] - 1).abs().max())
    checks.add("stable on the floor (F)", n_unstable == 0 and dev_f <= cfg.floor_tol,
               f"{n_unstable} diverged, max |risk_T/risk_RRR(r) − 1| {dev_f:.3g} > {cfg.floor_tol:g}")
    # (O) the oracle floor in the small-noise regime (top noise singular value σ_ε(√d + √k)/√N ≤ λ*_{r*}/4):
    # risk_RRR(r*) = ½σ_ε²·dof/(N − d − 1), dof = r*(d + k − r*) (Σ̂⁻¹ inflates the noise by N/(N − d − 1)).
    # Per seed it is a sum of ≈ dof squared Gaussians: relative SD √(2/dof); the noises of one seed share E,
    # so a seed is one sample (mean over its noises). Band: 3√(2/dof)/√seeds + d/N (the inflation's O(d/N)).
    lam_min = min(cfg.singular_values)
    edge_rel = (math.sqrt(d) + math.sqrt(k)) / math.sqrt(n)
    small = df[(df["noise"] >= cfg.noise_report_min) & (df["noise"] * edge_rel <= lam_min / 4)]
    small = small.drop_duplicates(["seed", "noise", "rank"])
    dof = r_star * (d + k - r_star)
    laws = []
    if len(small):
        per = small[small["rank"] == ranks[0]] if r_star not in ranks else small[small["rank"] == r_star]
        pred = np.array([predicted_floor(s_, d, k, n, r_star, ctx) for s_ in per["noise"]])
        ratio_o = (per["risk_oracle"].to_numpy() / pred)
        seed_o = pd.Series(ratio_o).groupby(per["seed"].to_numpy()).mean()
        band = 3 * math.sqrt(2 / dof) / math.sqrt(cfg.seeds) + d / n
        laws.append(f"(O) risk_RRR(r*)/(½σ²r*(d+k−r*)/(N−d−1)) {seed_o.mean():.3f} (seeds {span(seed_o, '.3f')}) "
                    f"∈ 1 ± {band:.3f}")
        checks.add("oracle floor (O)", abs(seed_o.mean() - 1) <= band, laws[-1])
        # (C) each rank above r* adds at most one squared top noise singular value, near the MP edge:
        # e_r = (risk_RRR(r) − risk_RRR(r*))/((r − r*)·½σ_ε²(√d + √k)²/(N − d − 1)) ≤ 1 + 3·SD, the SD of e_{r*+1}
        # over spread_seeds other instances (numpy only, seeds 1000+; Tracy–Widom-size fluctuations of the edge).
        sd = _excess_spread(cfg, min(small["noise"]))
        over = small[small["rank"] > r_star]
        e_r = ((over["risk_rrr"] - over["risk_oracle"]) * (n - d - 1)
               / ((over["rank"] - r_star) * 0.5 * over["noise"] ** 2 * (math.sqrt(d) + math.sqrt(k)) ** 2))
        if len(e_r):
            laws.append(f"(C) over-rank excess per rank / MP edge² {span(e_r, '.3f')} ≤ 1 + 3·{sd:.3f}")
            checks.add("over-rank cost (C)", float(e_r.max()) <= 1 + 3 * sd, laws[-1])

    summary = df.groupby(["damping", "noise", "rank"]).agg(
        n_div=("status", lambda s: int((s != "ok").sum())), risk=("risk_final", "median"),
        ratio_rrr=("ratio_rrr", "median"), ratio_oracle=("ratio_oracle", "median"),
        excess=("excess", "median"), spare_growth=("spare_growth", "median")).reset_index()
    parts = []
    for lam in dampings:
        g = df[df["damping"] == lam]
        div = g[g["status"] != "ok"]
        gok = g[g["status"] == "ok"]
        noisy = gok[(gok["noise"] >= cfg.noise_report_min) & (gok["rank"] > r_star)]
        if gok.empty or noisy.empty:
            parts.append(f"λ={lam:g}: {len(div)} diverged")
            continue
        worst = gok.loc[gok["excess"].idxmax()]
        parts.append(
            f"λ={lam:g}: {len(div)} diverged"
            + (f" (σ_ε ≤ {div['noise'].max():g}, r ∈ {sorted(div['rank'].unique().tolist())})" if len(div) else "")
            + f", {int((g['phase'] == 'above floor').sum())} above floor (worst excess (risk − RRR)/½‖ΔW‖² "
              f"{worst['excess']:.2g} at σ_ε={worst['noise']:g}, r={int(worst['rank'])}); "
              f"σ_ε ≥ {cfg.noise_report_min:g}: risk/RRR {span(noisy['ratio_rrr'], '.3f')}, spare growth "
              f"{span(noisy['spare_growth'], '.3f')}")
    top = ok[(ok["noise"] == max(noises)) & (ok["damping"] == min(dampings))]
    measured = ("; ".join(laws + parts) + f"; risk/oracle rank-r* floor at σ_ε = {max(noises):g}: "
                + ", ".join(f"r={int(r)} {v:.2f}" for r, v in top.groupby("rank")["ratio_oracle"].median().items())
                + f"; checks: loss below global min ≤ {float((-ok['loss_gap'] / ok['loss_w0']).max()):.1g}·L(W0), "
                  f"risk_0 rel err {r0_err:.1g}")
    notes = ("Laws: " + "; ".join(laws) + "\n\nSeed medians per cell (n_div = diverged seeds):\n\n"
             + text_table(summary, fence=True))
    _figure(ctx, df, cfg)
    return checks.verdict(
        prediction="(F) stable PrecGD from [G♮]_r ends on the rank-r RRR floor; "
                   "(O) oracle floor ½σ²r*(d+k−r*)/(N−d−1); "
                   "(C) each extra rank costs ≤ one MP-edge² (+3 SD); sweep completes, finite, loss ≥ global min, "
                   "risk_0 = ½‖[G♮]_r − ΔW‖²",
        measured=measured, table=df, figures=[FIGURE], notes=notes)


def predicted_floor(noise, d, k, n, r_star, ctx):
    """The oracle (rank-r*) noise floor ½σ_ε²·dof/(N − d − 1), dof = r*(d + k − r*) (mutation: d·k)."""
    dof = d * k if ctx.mutant("oracle_full_rank_dof") else r_star * (d + k - r_star)
    return 0.5 * noise**2 * dof / (n - d - 1)


def _excess_spread(cfg, noise):
    """SD over ``spread_seeds`` other instances (seeds 1000+, numpy only) of e_{r*+1}, the first extra
    rank's excess risk over the oracle in units of ½σ_ε²(√d + √k)²/(N − d − 1)."""
    d, k, n, r_star = cfg.d, cfg.k, cfg.n, cfg.r_star
    e = []
    for seed in range(1000, 1000 + cfg.spread_seeds):
        X, E, _, delta = _draw(cfg, seed)
        refs = _references(X, X @ delta + noise * E, delta, [r_star + 1], r_star)[0]
        e.append((refs[r_star + 1]["risk_rrr"] - refs[r_star]["risk_rrr"]) * (n - d - 1)
                 / (0.5 * noise**2 * (math.sqrt(d) + math.sqrt(k)) ** 2))
    return float(np.std(e, ddof=1))


def _phase(ok, risk, floor, risk_null):
    """diverged; above floor (> 2× the rank-r RRR risk, plus 1e-28·½‖ΔW‖² for the round-off of σ_ε = 0);
    below floor (< 0.9×: the damping has shrunk the fitted noise); else at floor."""
    if not ok:
        return "diverged"
    if risk > 2 * floor + 1e-28 * risk_null:
        return "above floor"
    return "below floor" if risk < 0.9 * floor else "at floor"


def _figure(ctx, df, cfg):
    noises, ranks, lams = cfg.noises, cfg.ranks, cfg.dampings
    size = (5.2 * len(lams) + 1, 8.4)
    with ctx.figure(FIGURE, nrows=2, ncols=len(lams), figsize=size, squeeze=False) as (fig, axes):
        for c, lam in enumerate(lams):
            sub = df[df["damping"] == lam]
            M1 = np.full((len(ranks), len(noises)), np.nan)
            M2 = np.full_like(M1, np.nan)
            txt1, txt2 = {}, {}
            for i, r in enumerate(ranks):
                for j, s in enumerate(noises):
                    g = sub[(sub["rank"] == r) & (sub["noise"] == s)]
                    okg = g[g["status"] == "ok"]
                    nd = int((g["status"] != "ok").sum())
                    if len(okg):
                        M1[i, j] = np.log10(max(float(okg["risk_final"].median()) / float(okg["risk_null"].median()), 1e-32))
                        ratio = float((okg["risk_final"] / okg["risk_rrr"]).median())
                        M2[i, j] = np.log10(ratio)
                        if s > 0:
                            txt1[i, j] = f"{float(okg['ratio_oracle'].median()):.2g}"
                        if abs(M2[i, j]) > 0.02:
                            txt2[i, j] = f"{ratio:.2g}"
                    if nd:
                        txt1[i, j] = txt2[i, j] = "D" if nd == len(g) else f"D{nd}/{len(g)}"
            for row, M, txt, lab, kw in ((0, M1, txt1, "log10 risk_T / ½‖ΔW‖²", {"cmap": "viridis", "vmin": -32, "vmax": 0}),
                                         (1, M2, txt2, "log10 risk_T / risk_RRR(r)", {"cmap": "RdBu_r", "vmin": -2, "vmax": 2})):
                ax = axes[row, c]
                heatmap(fig, ax, np.arange(len(noises)), M, lab, [str(r) for r in ranks], **kw)
                for (i, j), t in txt.items():
                    ax.text(j, i, t, ha="center", va="center", fontsize=7,
                            color="red" if t.startswith("D") else ("w" if row == 0 else "k"))
                ax.set_xticks(range(len(noises)), [f"{s:g}" for s in noises], rotation=45, fontsize=8)
                ax.set(xlabel="label noise σ_ε", ylabel="LoRA rank r")
            axes[0, c].set_title(f"λ = {lam:g}: final risk (text: risk / oracle rank-r* floor)", fontsize=9)
            axes[1, c].set_title(f"λ = {lam:g}: final risk / rank-r RRR floor (text where ≠ 1; D diverged)",
                                 fontsize=9)
        fig.suptitle(f"P2: spectral init [G]_r + PrecGD (η = {cfg.lr:g}, {cfg.steps} steps); "
                     f"d = {cfg.d}, k = {cfg.k}, N = {cfg.n}, r* = {cfg.r_star}, "
                     f"λ*(ΔW) = {cfg.singular_values}; median of {cfg.seeds} seeds")
