r"""
## C12 — the over-rank spectral init: the √(ε·σ1) spare block, kept by GD  (SPEC §5 R4, "[D, exact] The over-rank spectral init degenerates")

**Hypothesis.** With noiseless labels and r > r\*, columns r\*+1..r of the spectral init A0 and rows
r\*+1..r of B0 sit at the square root of round-off, √σ_{r\*+j}(G♮) with σ_{r\*+j} = O(ε·σ_1), and GD keeps
them there: the spare block is amplified at most by Π_t(1 + η‖Γ_t‖_op), the rank-r and rank-r\*
trajectories coincide to round-off, and the spare block follows the tangent (first-order) recursion
below. What happens under PrecGD is claim C21 (it refutes SPEC's "the same under PrecGD").

**Derivation.** *Level at t = 0.* G♮ = Σ̂ΔW has exact rank r\* (F1). The computed G♮ (a sum of N
rank-one terms, random-rounding error ≈ √N·ε·‖Σ̂‖_op‖ΔW‖_F) and its computed SVD (`Problem.svd_G`: the
thin SVD of G/‖G‖_F in float64, rescaled; backward stable, ‖E‖_2 ≤ p(d, k)·ε·‖G‖_2 with p(d, k) =
max(d, k), LAPACK Users' Guide §4.9, the size factor taken linear as in Householder bidiagonalisation)
are exact for a matrix within δ of G♮, so by Weyl σ_{r\*+j} ≤ δ_G := √N·u_G‖Σ̂‖_op‖ΔW‖_F + max(d, k)·ε_64·σ_1
(units below).
The init puts √σ_{r\*+j} on column r\*+j of A0 and row r\*+j of B0 (the singular values the init
really uses, `prob.svd_G()`): a spare norm √(c_j u_G σ_1) ≈ 1.5e-8·√(c_j σ_1) in float64 — the square
root of round-off. The spare columns lie along left singular vectors u_j ⊥ col(G♮), the spare rows along
v_j ⊥ row(G♮) = span V\*.

*Tangent dynamics under GD.* Split A = [A_m, A_s], B = [B_m; B_s] (main r\*, spare s = r − r\*) and
Γ = Σ̂(AB − ΔW) = Σ̂A_mB_m − G♮ + Σ̂A_sB_s. With ∇_A = ΓBᵀ, ∇_B = AᵀΓ, to first order in the spare
block A_s ← A_s − ηΓB_sᵀ, B_s ← B_s − ηA_sᵀΓ with Γ from the rank-r\* run (`_tangent`, computed from
that run's factors only). The spare pair is a linear system with ‖M_t‖ ≤ 1 + η‖Γ_t‖_op, so its
norm grows at most by b = Π_t(1 + η‖Γ_t‖_op) (Γ_t → 0 geometrically, b = O(1)); and row(Γ) ⊆ span V\*
⊥ the spare rows, so ΓB_sᵀ starts at zero. The main block feels the spare block only through
A_sB_s (second order), so the r- and r\*-runs differ by ≈ ‖A_sB_s‖ ≤ b²M_0², M_0 = ‖A_s(0)‖_F =
‖B_s(0)‖_F (balanced init), far below the √(εσ_1) level.

*Error of the tangent model (a priori).* Per step the recursion drops (i) the quadratic term
ηΣ̂A_sB_sB_sᵀ, relative size η‖Σ̂‖_op M_t² with M_t ≤ b·M_0, and (ii) round-off: the two runs' Γ are
d-term inner products, each off by ≤ δ_Γ = max(d, k)·ε·(‖|Σ̂||ΔW|‖_F + ‖Σ̂‖_op σ_1) (γ_d = d·u ≤ d·ε
with |·| entrywise), which moves the spare block by η·δ_Γ relative, plus 2ε for the update and the norm.
Over T steps, amplified at most by b: e_tan ≤ E_T := b·T·(η(δ_Γ + ‖Σ̂‖_op b²M_0²) + 2ε). The same budget
bounds the gaps: ‖A_tB_t − A\*_tB\*_t‖_F ≤ b²M_0² + E_T·σ_1 and the main factors' gap
≤ b²M_0² + E_T·√σ_1 (factors of size √σ_1).

*Units (issue 17, `dtype=`).* Each round-off term carries the unit of the computation it bounds. ε (in δ_Γ,
E_T) is the teachers' dtype's, `cfg.eps`: the training steps and the tangent recursion run in it (float64's
2.2e-16 by default, float32's 1.19e-7, tf32's 2^-10 on CUDA). u_G (the √N term of δ_G, c_j, the init rule)
is the teacher's storage dtype's: G♮ is accumulated and the init's √σ_j·u_j formed (elementwise) in it, and
construction never runs in tf32, so u_G = 1.19e-7 under float32 and tf32. ε_64 = 2.2e-16 (the SVD term of
δ_G): `svd_G` is float64 whatever `dtype=` says. Without `dtype=` all three are float64's ε and every bound
is the float64 one.

**Setup.** conf/claims/C12.yaml: `LinearTeacher(d, k, r*, n, κ, linear spacing, scale)`, noiseless,
`seeds` problem seeds. Spectral init (ζ = 1, tol = 0) at rank r and at rank r\*, trained with
`lorasim.train(..., keep_factors=True, metrics="risk")` under GD (η_GD, `gd_steps`).

**Measured.** c_j = σ_{r\*+j}/(u_Gσ_1) (from `prob.svd_G()`); ‖A0[:, r\*+j]‖, ‖B0[r\*+j, :]‖; spare norms
‖A_s(t)‖_F, ‖B_s(t)‖_F, the amplification of the stacked pair ‖(A_s; B_sᵀ)‖_F; the tangent recursion's
max relative error over the run; the gaps max_t ‖A_tB_t − A\*_tB\*_t‖_F and max_t of the main factors'
differences (\* = rank-r\* run).

**Prediction.** ‖A0[:, r\*+j]‖ = ‖B0[r\*+j, :]‖ = √σ_{r\*+j}; σ_{r\*+1} ≤ δ_G; amplification ≤ b; tangent
error ≤ E_T; gaps ≤ b²M_0² + E_T·(σ_1 or √σ_1).

**Pass rule.** For every seed: |‖A0[:, r\*+j]‖/√σ_{r\*+j} − 1| and the same for B0 ≤ max(d, k)·u_G (a computed
singular vector has norm 1 ± p(d, k)ε_64; casting it and √σ_j to the storage dtype, their product and the
norm of d entries add ≤ (d/2 + 3)·u_G, so p·ε_64 + (d/2 + 3)·u_G ≤ p·u_G in reduced precision, and
p·ε in float64 as before); σ_{r\*+1} ≤ 10·δ_G (random-rounding √N estimate: factor 10
for its constant, as in C1); stacked amplification ≤ b; tangent error ≤ E_T; both gaps ≤ their
budgets. All tolerances are computed from the problem, the init and the rank-r\* run, none from
the quantity it bounds, with the units above (ε = `cfg.eps`, u_G, ε_64). *Vacuity:* E_T is a relative error
and the gaps have the scale σ_1 (√σ_1 for the factors); where E_T ≥ 1, or a gap budget ≥ σ_1 (√σ_1), the rule
cannot fail at that dtype and FAILs as vacuous (the check is not made) instead of passing.

**Mutations.** `gd_gauss_seidel`: lorasim's GD step takes B's gradient at (A_{t+1}, B_t) (a planted
Gauss–Seidel bug, in the r- and r\*-runs alike): the simultaneous tangent recursion then misses a term
of order η²ΓΓᵀ per step, measured tangent error 1.1e-3 at ci against E_T ≈ 1e-12 (rule "tangent model");
`level_eps`: the wrong theory that the spare block sits at round-off itself (predicted spare norm
σ_{r\*+j} instead of √σ_{r\*+j}; rule "init at √σ_j").

**Finding.** `lorasim-verify only=[C12]` (ci: d = k = 32, r = 4, r\* = 2, N = 512, κ = 4, 5 seeds, 150 GD
steps): c_j = 0.99–1.96, |‖col‖/√σ_j − 1| ≤ 8.9e-16, spare 2.26–2.75e-8, σ_j ≤ 0.003·10δ_G; GD
amplification ≤ 1.0035 (b ≥ 1.40); tangent error ≤ 1.6e-14 (E_T ≥ 1.4e-12); gap_AB ≤ 6.6e-16 (bound
≥ 1.3e-12), main factors' gap ≤ 6.8e-16. `scale=paper` (T2: d = k = 100, r = 8, r\* = 4, N = 1600, 500 steps): c_j = 1.78–4,
|‖col‖/√σ_j − 1| ≤ 1.4e-15, spare 4.91–5.62e-8, σ_j ≤ 0.0023·10δ_G; GD amplification ≤ 1.0016 (b ≥ 1.45);
tangent error ≤ 1.0e-13 (E_T ≥ 2.2e-11); gap_AB ≤ 1.7e-15 (bound ≥ 2.2e-11), main factors' gap ≤ 1.8e-15.
Before the split (issue 14) this claim was a KNOWN_FAILURE (the PrecGD part, now C21, where it is a
passing claim that refutes SPEC); its init rule compared the init with `torch.linalg.svd(prob.G)` instead
of the normalised `svd_G` the init uses, which at round-off level returns other σ_{r\*+j} (0.04–3 % apart,
so the 1e-10 rule was False at ci and 1.7e-1 off at large), and the GD amplification and the tangent
error were computed but never asserted. The level bound 10δ_G is loose (σ_j ≤ 0.003·10δ_G): it can fail
only for a spare block far above round-off (a truncation bug, a float32 SVD).
`lorasim-verify only=[C12] dtype=float32` (ci): pass; c_j = 0.357–0.589 (in u_G = 1.19e-7), σ_j ≤ 0.0018·10δ_G,
|‖col‖/√σ_j − 1| ≤ 1.2e-7 (tolerance 3.8e-6), spare 3.12–3.70e-4; tangent error ≤ 2.7e-6 (E_T ≥ 7.2e-4), gap_AB
≤ 2.6e-7 (bound ≥ 6.9e-4). At tf32's ε = 2^-10 (the same float32 run with that unit) E_T = 5.8–6.9: the
tangent and gap rules are vacuous and FAIL as such.
"""
import math

import numpy as np
import pandas as pd
import torch

import lorasim

from .kit import Checks, Mutation, TeacherSettings, gauss_seidel_step, parse, span
from .numerics import EPS, fro, spd_norm

TITLE = "over-rank spectral init: spare block kept by GD"
RESULT = "R4"
FIGURE = "c12_overrank_spare.png"


MUTATIONS = {
    "gd_gauss_seidel": gauss_seidel_step("lorasim's GD step uses A_{t+1} in B's update"),
    "level_eps": Mutation("the spare block predicted at round-off σ_{r*+j} instead of √σ_{r*+j}"),
}


class Settings(TeacherSettings):
    rank: int
    n: int
    kappa: float
    scale: float
    gd_lr: float
    gd_steps: int


def _tangent(prob, factors_star, As, Bs, eta):
    """First-order GD spare dynamics around the rank-r* trajectory (see Derivation); norms per step."""
    S, G = prob.sigma_hat, prob.G
    nA, nB, gamma_op = [fro(As)], [fro(Bs)], []
    for _, Am, Bm in factors_star[:-1]:
        Gam = S @ Am @ Bm - G
        gamma_op.append(float(torch.linalg.matrix_norm(Gam, ord=2)))
        As, Bs = As - eta * Gam @ Bs.T, Bs - eta * As.T @ Gam
        nA.append(fro(As))
        nB.append(fro(Bs))
    return np.array(nA), np.array(nB), np.array(gamma_op)


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    d, k, rs, r, n, T, eta = cfg.d, cfg.k, cfg.r_star, cfg.rank, cfg.n, cfg.gd_steps, cfg.gd_lr
    p = max(d, k)
    rows, init_rows, curves, scales = [], [], {}, []
    for seed in range(cfg.seeds):
        prob = cfg.teacher(seed, n=n, kappa=cfg.kappa, spacing="linear", delta_norm=cfg.scale)
        sv = prob.svd_G()[1]  # the singular values the spectral init uses
        s1 = float(sv[0])
        S, D = prob.sigma_hat, prob.delta
        s_op = spd_norm(S)
        # Units (Derivation): u_G of G♮'s accumulation and of the init's elementwise work (the teacher's storage
        # dtype: construction never runs in tf32), EPS of svd_G (float64 whatever the dtype), cfg.eps of the
        # training products and of the tangent recursion. All three are float64's without dtype=.
        u_G = cfg.storage_eps
        delta_G = math.sqrt(n) * u_G * s_op * fro(D) + p * EPS * s1
        delta_Gam = p * cfg.eps * (fro(S.abs() @ D.abs()) + s_op * s1)
        kw = {"steps": T, "keep_factors": True, "solver": "gd", "lr": eta, "metrics": "risk"}
        tr = lorasim.train(prob, init="spectral", rank=r, **kw)
        ts = lorasim.train(prob, init="spectral", rank=rs, **kw)
        A0, B0 = tr.factors[0][1], tr.factors[0][2]
        for j in range(r - rs):
            sj = float(sv[rs + j])
            level = sj if ctx.mutant("level_eps") else math.sqrt(sj)
            init_rows.append({"seed": seed, "j": rs + j + 1, "c_j": sj / (u_G * s1), "sigma_j": sj,
                              "bound_sigma": 10 * delta_G, "col_norm_A0": fro(A0[:, rs + j]),
                              "row_norm_B0": fro(B0[rs + j]), "predicted": level,
                              "rel_err": max(abs(fro(A0[:, rs + j]) / level - 1), abs(fro(B0[rs + j]) / level - 1)),
                              "tol_rel": p * u_G})
        nA = np.array([fro(A[:, rs:]) for _, A, _ in tr.factors])
        nB = np.array([fro(B[rs:]) for _, _, B in tr.factors])
        pairs = list(zip(tr.factors, ts.factors))  # rank r and rank r*, step by step
        gap_AB = max(fro(A @ B - A2 @ B2) for (_, A, B), (_, A2, B2) in pairs)
        gap_F = max(max(fro(A[:, :rs] - A2), fro(B[:rs] - B2)) for (_, A, B), (_, A2, B2) in pairs)
        tA, tB, gop = _tangent(prob, ts.factors, A0[:, rs:], B0[rs:], eta)
        L = min(len(nA), len(tA))
        tang_err = float(max(np.max(np.abs(nA[:L] / tA[:L] - 1)), np.max(np.abs(nB[:L] / tB[:L] - 1))))
        b = float(np.prod(1 + eta * gop))
        M0 = math.hypot(nA[0], nB[0]) / math.sqrt(2)
        E_T = b * T * (eta * (delta_Gam + s_op * (b * M0) ** 2) + 2 * cfg.eps)
        scales.append(s1)  # the natural scale of the gaps (σ1; √σ1 for the factors), for the vacuity test
        rows.append({
            "seed": seed, "spare_A0": nA[0], "spare_B0": nB[0], "level_sqrt_eps_s1": math.sqrt(u_G * s1),
            "amp_A": nA.max() / nA[0], "amp_B": nB.max() / nB[0],
            "amp_stacked": float(np.max(np.hypot(nA, nB)) / math.hypot(nA[0], nB[0])), "gd_bound": b,
            "tangent_rel_err": tang_err, "tangent_bound": E_T,
            "gap_AB": gap_AB, "gap_AB_bound": (b * M0) ** 2 + E_T * s1,
            "gap_factors": gap_F, "gap_factors_bound": (b * M0) ** 2 + E_T * math.sqrt(s1),
            "risk_final_r": tr.rows[-1]["risk"], "risk_final_rstar": ts.rows[-1]["risk"],
        })
        if seed == 0:
            curves = (nA, nB, tA, tB)
    df, dinit = pd.DataFrame(rows), pd.DataFrame(init_rows)
    checks = Checks()
    checks.add("init at √σ_j", (dinit.rel_err <= dinit.tol_rel).all(),
               f"max |‖col‖/√σ_j − 1| {dinit.rel_err.max():.1e} > max(d,k)·u_G {dinit.tol_rel.min():.1e}")
    checks.add("σ_{r*+1} ≤ 10·δ_G", (dinit.sigma_j <= dinit.bound_sigma).all(),
               f"max σ_j/bound {(dinit.sigma_j / dinit.bound_sigma).max():.2g}")
    checks.add("GD amplification ≤ Π(1+η‖Γ_t‖)", (df.amp_stacked <= df.gd_bound).all(),
               f"max amp/bound {(df.amp_stacked / df.gd_bound).max():.3g}")
    # Vacuity (reduced precision): E_T is a relative error, so E_T ≥ 1 bounds nothing; a gap budget ≥ σ1 (the
    # product's scale; √σ1 for the factors) neither. Then the rule FAILs as not made (bounds only, never the gaps).
    s1s = np.array(scales)
    vac_tan = bool((df.tangent_bound >= 1).any())
    vac_gap = bool(((df.gap_AB_bound >= s1s) | (df.gap_factors_bound >= np.sqrt(s1s))).any())
    checks.add("tangent model", not vac_tan and (df.tangent_rel_err <= df.tangent_bound).all(),
               f"vacuous at this dtype (ε = {cfg.eps:.2g}): E_T up to {df.tangent_bound.max():.2g} ≥ 1, the check is not made"
               if vac_tan else
               f"max err {df.tangent_rel_err.max():.1e}, max err/E_T {(df.tangent_rel_err / df.tangent_bound).max():.2g}")
    checks.add("gaps at round-off", not vac_gap and ((df.gap_AB <= df.gap_AB_bound)
                                                     & (df.gap_factors <= df.gap_factors_bound)).all(),
               f"vacuous at this dtype (ε = {cfg.eps:.2g}): budget/scale up to {(df.gap_AB_bound / s1s).max():.2g} "
               f"(gap_AB/σ1), {(df.gap_factors_bound / np.sqrt(s1s)).max():.2g} (factors/√σ1) ≥ 1, the check is not made"
               if vac_gap else
               f"max gap_AB/bound {(df.gap_AB / df.gap_AB_bound).max():.2g}, "
               f"max gap_factors/bound {(df.gap_factors / df.gap_factors_bound).max():.2g}")

    nA, nB, tA, tB = curves
    with ctx.figure(FIGURE, ncols=1, figsize=(6.4, 4.2)) as (fig, ax):
        ax.plot(nA, label=r"$\|A_t[:, r^*{+}1{:}r]\|_F$")
        ax.plot(nB, label=r"$\|B_t[r^*{+}1{:}r, :]\|_F$")
        ax.plot(np.arange(len(tB))[::10], tB[::10], "o", mfc="none", color="C1", ms=4, label="tangent model (B)")
        ax.axhline(10 * nB[0], color="k", lw=0.6, ls=":", label="10× init level")
        ax.set(yscale="log", xlabel="GD step t", ylabel="spare norm", title="C12: GD keeps the √(εσ1) spare block (seed 0)")
        ax.legend(fontsize=8)

    measured = (f"init c_j {span(dinit.c_j, '.3g')} (σ_j/10δ_G ≤ {(dinit.sigma_j / dinit.bound_sigma).max():.2g}), "
                f"|‖col‖/√σ_j − 1| ≤ {dinit.rel_err.max():.1e}, spare {span(df.spare_A0, '.2e')}; "
                f"GD amp ≤ {df.amp_stacked.max():.4f} (bound b ≥ {df.gd_bound.min():.2f}); "
                f"tangent err ≤ {df.tangent_rel_err.max():.1e} (E_T ≥ {df.tangent_bound.min():.1e}); "
                f"gap_AB ≤ {df.gap_AB.max():.1e} (bound ≥ {df.gap_AB_bound.min():.1e}), "
                f"gap factors ≤ {df.gap_factors.max():.1e}")
    return checks.verdict(
        prediction="spare block = √σ_j (σ_j ≤ 10δ_G) at t=0; under GD amplified ≤ Π(1+η‖Γ_t‖), tangent model to E_T, "
                   "r vs r* gaps ≤ b²M0² + E_T·σ1",
        measured=measured, table=pd.concat([dinit.assign(kind="init"), df.assign(kind="run")], ignore_index=True),
        figures=[FIGURE])
