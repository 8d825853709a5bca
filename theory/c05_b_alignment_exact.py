r"""
## C5 — R1: with B0 = 0 and noiseless labels, B is aligned exactly (SPEC §5 R1 [D, exact], §9 C5)

**Hypothesis.** From A0 ~ N(0, α²), B0 = 0, noiseless labels: align_B(t) =
‖V_{r\*,⊥}(G♮)ᵀV_{r\*}(B_tᵀ)‖_op = 0 for every t ≥ 1 (to round-off), under GD and under PrecGD. With
label noise it is > 0 and grows with σ_ε. (At t = 0, B0 = 0 has no top-r\* subspace: align_B is NaN.)

**Derivation.** *Exactness.* row(ΔW) = span V\* and, noiseless, G♮ = Σ̂ΔW has row(G♮) = span V\*
(F2), so V_{r\*}(G♮) spans V\*. ∇_B = AᵀΣ̂(AB − ΔW): if row(B_t) ⊆ span V\*, every row of AB − ΔW lies
in span V\*, and so do the rows of ∇_B and of B_{t+1} = B_t − η∇_B. The induction starts at B0 = 0
(B_1 = ηA0ᵀG♮). PrecGD left-multiplies ∇_B by (AᵀA + λI)⁻¹, which mixes rows and so keeps the row
space. Hence row(B_t) ⊆ span V\* for all t: when rank B_t = r\*, V_{r\*}(B_tᵀ) = V\* and align_B = 0
exactly in exact arithmetic. Note that B has rank ≤ r\* although it has r > r\* rows.

*Round-off.* Numerically, each update adds components outside span V\* of relative size ~ε (the machine
epsilon of the teachers' dtype, `cfg.eps`: float64's 2.2e−16 without `dtype=`; B_t and G♮ are computed in
that dtype, and our float64 recomputation only reads them); they do not grow (the complement part of B
obeys B_⊥ ← (I − ηAᵀΣ̂A)B_⊥, a contraction for stable η). The
measured subspace then errs by ≈ ε√k·(σ_1/σ_{r\*} of B_t) (Davis–Kahan on the r\*-th gap of B_t, whose
σ_{r\*+1} is itself round-off) plus the error of V_{r\*}(G♮), ≈ ε√k·σ_1(G♮)/σ_{r\*}(G♮). With κ = 1
these conditioning factors are O(1–10), so the predicted level is τ = ε√k·(max_t cond(B_t) + cond(G♮))
≈ 1e−14, four orders below the SPEC tolerance 1e−10.

*With noise.* G♮ = Σ̂ΔW + (1/N)XᵀE is full rank (F6), with tail singular values ≈ σ_ε(√d+√k)/√N.
At t = 1, B_1 = ηA0ᵀG♮ = η(P V_{1}ᵀ + Q V_{2}ᵀ) with G♮ = U S Vᵀ split into the top r\* (1) and the rest
(2), P = A0ᵀU_1S_1, Q = A0ᵀU_2S_2. To first order in Q the top-r\* row space of B_1 is
span(V_1 + V_2QᵀP(PᵀP)⁻¹), so tan align_B(1) ≈ ‖QᵀP(PᵀP)⁻¹‖ =: t₁, **linear in σ_ε** (S_2 ∝ σ_ε).
The neglected terms are relatively O(ρ²) with ρ = ‖Q‖/σ_min(P). Later the signal rows grow
geometrically and align_B falls, but it settles at a nonzero value, again O(σ_ε).

**Setup.** conf/claims/C05.yaml: the C3 setup (d = k = 32, r = 4, r\* = 2, N = 512, κ = 1),
α = `alpha`, seeds 0..`seeds`−1 (problem seed = init seed; ci: 3 seeds, 250 steps, which cover GD's growth
phase, over by t ≈ 110 at η = 1/16), `steps` steps of GD (η = `lr`) and of
PrecGD (η = `precgd_lr`, λ = `precgd_damping`) noiseless; GD with label noise σ_ε ∈ `noises`
(the same X, U\*, V\*, W0: LinearTeacher draws the noise after X). Large: d = 4096, k = 1024, N = 16d,
η = 1/16 as at ci (exactness does not depend on η; the growth phase then ends by t ≈ 110), 300 steps,
σ_ε ∈ {0.003, 0.03}: t₁ grows like σ_ε(√d + √k)√k/√N, so these keep the noisy runs in the same
first-order regime (ρ ≪ 1) as σ_ε ∈ {0.01, 0.1} at ci.

**Measured.** align_B(t) from lorasim for every t, and recomputed without lorasim's linear algebra:
V_{r\*}(G♮) from scipy.linalg.svd of G♮ (a float64 numpy array), each B_t's (from `keep_factors`) top-r\*
right singular vectors from numpy's SVD, and the sine of the largest of scipy.linalg.subspace_angles
between the two; its maximum over t ≥ 1; align_B(1) against the first-order value sin(arctan t₁) (t₁
from scipy's SVD of G♮ too); align_B(T).

**Prediction.** Noiseless: align_B(0) = NaN, align_B(t ≥ 1) at the round-off level τ (~1e−14) for GD
and PrecGD. Noisy: align_B(1) = sin(arctan t₁) ∝ σ_ε, align_B(t) > 0 and increasing in σ_ε.

**Pass rule.** (i) Noiseless: align_B(0) is NaN and max_{t≥1} align_B ≤ 1e−10 (SPEC's tolerance,
≥ 1e3·τ: see Round-off), for lorasim's value and our recomputation, every seed and solver. (ii) Noisy:
|align_B(1)/sin(arctan t₁) − 1| ≤ ρ² (+1e−9) for every run (the second-order remainder); min_{t≥1}
align_B > 1e−10 (above the exact case's tolerance); and align_B(1) and align_B(T) are strictly
increasing in σ_ε for every seed. (i)'s 1e−10 is SPEC's tolerance, fixed in advance; the measured
maximum is 1.0e−14 (GD) and 3.5e−14 (PrecGD) at ci, 9.2e−15 and 6.8e−14 at paper scale (τ 3e−15–2e−14),
i.e. up to ≈ 10·τ for PrecGD, so (i) could be tightened to a τ-based bound once PrecGD's round-off
constant is derived (its (AᵀA + λI)⁻¹ with λ ≫ σ_min(A)² early on). Until then 1e−10 (and (ii)'s 1e−9) are
float64 numbers, not derived in ε, and are kept: under `dtype=float32` τ is 1.7e−6–3.6e−6 and the measured
maximum 7e−7 (GD), 2e−5 (PrecGD), so (i) fails there by its tolerance, and its failure text gives τ.

**Mutations.** `B0_nonzero`: the small random init also draws B0 ~ N(0, α²), whose rows leave span V\*
(only contracted, never removed) — (i) catches it (align_B(0) is no longer NaN and align_B(t ≥ 1) ≫ 1e−10);
`noise_leak`: the noiseless labels carry noise σ_ε = 1e−8 (the size of float32-rounded labels) — (i)
catches it, because align_B(1) is first order in σ_ε (≈ 1e−8 ≫ 1e−10).
"""
import math

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.linalg

import lorasim
import lorasim.inits

from .kit import Checks, Mutation, TeacherSettings, inits_replaced, parse, span

TITLE = "B aligned exactly when B0 = 0 (noiseless)"
RESULT = "R1"
FIGURE = "c05_align_B.png"
TOL = 1e-10
LEAK = 1e-8  # the noise_leak mutation's label noise: float32-rounded labels carry relative errors ~6e-8


def _small_random_with_B0(problem, rank, generator, cfg):
    return lorasim.inits.small_random(problem, rank, generator, replace(cfg, both=True))


MUTATIONS = {
    "B0_nonzero": Mutation("the small random init also draws B0 ~ N(0, α²) (B0 ≠ 0: rows outside span V*)",
                           inits_replaced(small_random=_small_random_with_B0)),
    "noise_leak": Mutation(f"the 'noiseless' labels carry noise σ_ε = {LEAK:g} (e.g. labels rounded to float32)"),
}


class Settings(TeacherSettings):
    rank: int
    n: int
    alpha: float
    lr: float
    precgd_lr: float
    precgd_damping: float
    steps: int
    noises: list


def _recompute(G: np.ndarray, factors, r: int) -> tuple[np.ndarray, np.ndarray]:
    """align_B independently of lorasim's linear algebra: V_{r*}(G♮) from scipy's SVD of G♮ (float64
    numpy), each B_t's top-r* right singular vectors from numpy's SVD, and the sine of the largest
    principal angle between them (scipy.linalg.subspace_angles); also σ_1/σ_{r*} of each B_t (t ≥ 1)."""
    VG = scipy.linalg.svd(G, full_matrices=False)[2][:r].T
    Bs = np.stack([B.double().cpu().numpy() for _, _, B in factors[1:]])
    _, s, Vh = np.linalg.svd(Bs, full_matrices=False)
    vals = np.array([math.sin(scipy.linalg.subspace_angles(VG, Vh[i, :r].T).max()) for i in range(len(Bs))])
    return vals, s[:, 0] / s[:, r - 1]


def _first_order(G: np.ndarray, A0: np.ndarray, r: int) -> tuple[float, float]:
    U, S, _ = scipy.linalg.svd(G, full_matrices=False)
    P = (A0.T @ U[:, :r]) * S[:r]
    Q = (A0.T @ U[:, r:]) * S[r:]
    t1 = float(np.linalg.norm(Q.T @ P @ np.linalg.inv(P.T @ P), ord=2))
    rho = float(np.linalg.norm(Q, ord=2)) / float(np.linalg.svd(P, compute_uv=False)[-1])
    return t1 / math.sqrt(1 + t1 * t1), rho


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    r_star = cfg.r_star
    runs = [("gd", 0.0, {"lr": cfg.lr}), ("precgd", 0.0, {"lr": cfg.precgd_lr, "damping": cfg.precgd_damping})]
    runs += [("gd", float(s), {"lr": cfg.lr}) for s in cfg.noises]
    rows, curves = [], {}
    for seed in range(cfg.seeds):
        problems = {}
        for solver, noise, kw in runs:
            if noise not in problems:  # GD and PrecGD share the noiseless problem (and its SVD)
                leak = LEAK if noise == 0 and ctx.mutant("noise_leak") else noise
                p = cfg.teacher(seed, n=cfg.n, kappa=1.0, noise=leak)
                problems[noise] = (p, p.G.double().cpu().numpy())
            prob, G = problems[noise]
            tr = lorasim.train(prob, init="small_random", rank=cfg.rank, init_kwargs={"alpha": cfg.alpha},
                               init_seed=seed, solver=solver, steps=cfg.steps, log_every=1, keep_factors=True, **kw)
            df = tr.to_frame()
            ab = df["align_B"].to_numpy()
            mine, conds = _recompute(G, tr.factors, r_star)
            sG = scipy.linalg.svdvals(G)
            # the round-off level (Derivation): B_t's updates and G♮ carry errors of the teacher's ε (cfg.eps)
            tau = cfg.eps * math.sqrt(cfg.k) * (conds.max() + float(sG[0] / sG[r_star - 1]))
            pred1, rho = _first_order(G, tr.factors[0][1].double().cpu().numpy(), r_star) if noise > 0 else (0.0, 0.0)
            if seed == 0:
                curves[(solver, noise)] = ab
            rows.append({"seed": seed, "solver": solver, "noise": noise, "status": tr.status,
                         "align_B_0_is_nan": bool(np.isnan(ab[0])), "align_B_1": ab[1],
                         "max_align_B": float(np.nanmax(ab[1:])), "min_align_B": float(np.nanmin(ab[1:])),
                         "align_B_T": ab[-1], "max_recomputed": float(mine.max()),
                         "max_abs_diff_recomputed": float(np.nanmax(np.abs(mine - ab[1:]))),
                         "n_nan_t_ge_1": int(np.isnan(ab[1:]).sum()), "tau": tau,
                         "first_order_1": pred1, "rho": rho,
                         "rel_err_first_order": abs(ab[1] / pred1 - 1) if noise > 0 else math.nan,
                         "risk_T": float(df["risk"].iloc[-1])})
    df = pd.DataFrame(rows)

    checks = Checks()
    checks.add("converged", not (df.status != "ok").any(), "a run diverged")
    clean, noisy = df[df.noise == 0], df[df.noise > 0]
    checks.add("align_B(0) NaN", clean.align_B_0_is_nan.all(), "align_B(0) is not NaN with B0 = 0")
    above_tol = clean[clean.tau >= TOL]  # SPEC's 1e-10 is a float64 number: at a reduced dtype τ may exceed it
    checks.add("noiseless exact", not (clean.n_nan_t_ge_1 > 0).any()
               and (clean[["max_align_B", "max_recomputed"]].max(axis=1) <= TOL).all(),
               f"noiseless align_B above {TOL:g} (max {clean[['max_align_B', 'max_recomputed']].max().max():.2g})"
               + (f"; SPEC's {TOL:g} is below this dtype's round-off level τ = ε√k·(cond B_t + cond G♮) "
                  f"({span(above_tol.tau, '.2g')}, ε = {cfg.eps:.2g}) in {len(above_tol)} of {len(clean)} runs: "
                  f"exactness to round-off cannot be checked against it at this dtype" if len(above_tol) else ""))
    bad = noisy[noisy.rel_err_first_order > noisy.rho**2 + 1e-9]
    checks.add("noisy first order", not len(bad), f"align_B(1) off its first-order value by more than ρ² in {len(bad)} runs")
    checks.add("noisy above tolerance", (noisy.min_align_B > TOL).all(), "noisy align_B not above the exact-case tolerance")
    for col in ("align_B_1", "align_B_T"):
        flat = [seed for seed, g in noisy.groupby("seed") if not np.all(np.diff(g.sort_values("noise")[col].to_numpy()) > 0)]
        checks.add(f"{col} increasing in σ_ε", not flat, f"not in seeds {flat}")

    noise_txt = ", ".join(
        f"σ_ε={s:g}: align_B(1) {g.align_B_1.mean():.3g} (first order {g.first_order_1.mean():.3g}, max rel err "
        f"{g.rel_err_first_order.max():.1g} vs ρ² {span(g.rho**2, '.1g')}), align_B(T) {g.align_B_T.mean():.3g}"
        for s, g in noisy.groupby("noise"))
    measured = (f"noiseless max_t≥1 align_B: GD {clean[clean.solver == 'gd'].max_align_B.max():.2g}, "
                f"PrecGD {clean[clean.solver == 'precgd'].max_align_B.max():.2g} (recomputed "
                f"{clean.max_recomputed.max():.2g}; τ {span(clean.tau, '.1g')}); align_B(0) NaN: "
                f"{bool(clean.align_B_0_is_nan.all())}; {noise_txt}")
    _figure(ctx, curves)
    return checks.verdict(
        prediction=("noiseless: align_B(0)=NaN, align_B(t≥1) ≤ 1e-10 (round-off τ≈1e-14), GD and PrecGD; "
                    "noisy: align_B(1) = first-order value ∝ σ_ε, > 0, increasing in σ_ε"),
        measured=measured, table=df, figures=[FIGURE])


def _figure(ctx, curves):
    with ctx.figure(FIGURE, figsize=(7, 4.2)) as (fig, ax):
        for i, ((solver, noise), ab) in enumerate(sorted(curves.items(), key=lambda kv: (kv[0][1], kv[0][0]))):
            ax.semilogy(np.arange(len(ab)), np.maximum(ab, 1e-17), color=f"C{i}", label=f"{solver}, σ_ε={noise:g}")
        ax.axhline(TOL, color="k", ls="--", lw=0.8, label="tolerance 1e-10")
        ax.set_xlabel("step t (t = 0 is NaN: B0 = 0)"), ax.set_ylabel("align_B(t)")
        ax.set_title("seed 0: B's top-r* row space vs V_r*(G♮)"), ax.legend(fontsize=8)
