r"""
## C8 — balancedness: O(η) drift of AᵀA − BBᵀ, spare singular values of A stay O(α√d)  (SPEC §5 R1 "Balancedness"; §9 C8)

**Hypothesis.** Under GD from A0 ~ N(0, α²), B0 = 0, the imbalance
drift_t = ‖A_tᵀA_t − B_tB_tᵀ − A_0ᵀA_0‖_F (the frame's `balance_drift`) is O(η) at fixed ηt, → 0 as
η → 0; in the over-rank case (r > r\*) the r − r\* spare singular values of A stay O(α√d).

**Derivation.** *Flow.* With Γ := Σ̂AB − G♮ (so ∇_A = ΓBᵀ, ∇_B = AᵀΓ),
d(AᵀA)/dt = −(BΓᵀA + AᵀΓBᵀ) = d(BBᵀ)/dt, so AᵀA − BBᵀ is conserved by gradient flow.
*GD, exactly.* With g_A = ΓBᵀ, g_B = AᵀΓ and one step size,
A'ᵀA' − B'B'ᵀ = AᵀA − BBᵀ − η(g_AᵀA + Aᵀg_A − g_BBᵀ − Bg_Bᵀ) + η²(g_Aᵀg_A − g_Bg_Bᵀ), and the
O(η) bracket is BΓᵀA + AᵀΓBᵀ − AᵀΓBᵀ − BΓᵀA = 0. Hence the exact identity
**D_t := A_tᵀA_t − B_tB_tᵀ − A_0ᵀA_0 = η² Σ_{s<t} (g_{A,s}ᵀg_{A,s} − g_{B,s}g_{B,s}ᵀ)**
(it needs simultaneous updates and lr_ratio = 1; Gauss–Seidel or LoRA+ would break it at O(η)).
*Order.* At fixed horizon T = ηt, D_t = η·[η Σ_{s<t} Q(z_s)], and ηΣ_{s<t}Q(z_s) is a Riemann sum of
∫_0^T Q(z(τ))dτ along a GD path that converges to the flow as η → 0, so
drift = η‖∫_0^T Q dτ‖_F·(1 + c·ησ_1 + …): the per-step defect is η², there are T/η steps, and the
next order is relative O(ησ_1) (the Riemann-sum and GD-vs-flow errors at rate scale σ_1(G♮)). The
log-log slope of drift vs η over [η_min, η_max] is therefore 1 + O(η_maxσ_1/ln(η_max/η_min)).
Note the drift is O(η·λ\*²T) in absolute terms, not O(α²): at η = 1/64 it exceeds ‖A0ᵀA0‖ itself;
what stays protected is the spare block, below.
*Spare singular values.* Linear phase (C6): A_t = Σ_i c_i(t)u_ig_i + P_⊥A0 with g_i = u_iᵀA0 (rows),
c_i(t) = ½[(1+ησ_i)^t + (1−ησ_i)^t] ≥ 1 increasing. So A_tᵀA_t = K + Σ_i c_i²g_iᵀg_i with
K = A0ᵀP_⊥A0, a rank-r\* PSD term growing on span{g_i}. Weyl monotonicity gives
σ_{r\*+j}(A_t) ≥ σ_{r\*+j}(A_0) (c_i ≥ 1); Courant–Fischer on W ⊂ Π := ker{g_i} (dim r − r\*, where the
growing term vanishes) gives σ_{r\*+j}(A_t) ≤ s_j := σ_j(P_⊥A0Π), with equality as c_i → ∞. So
exactly in the linear phase **σ_{r\*+j}(A_0) ≤ σ_{r\*+j}(A_t) ≤ s_j**, and s_j is the limit.
*The constant.* P_⊥A0 is independent of UᵀA0 (Gaussian, orthogonal projections) and Π is a function
of UᵀA0 only, so P_⊥A0Π is, in orthonormal bases, a (d − r\*)×(r − r\*) matrix of i.i.d. N(0, α²);
Gordon's inequalities give E s_1 ≤ α(√(d−r\*) + √(r−r\*)) and E s_{r−r\*} ≥ α(√(d−r\*) − √(r−r\*)):
the spare values are α√d(1 ± √((r−r\*)/d)), i.e. O(α√d), while the signal ones grow to ≈ √λ\*_i.
*Nonlinear phase.* The spare columns Aw (w ∈ Π) receive gradient ΓBᵀw, and Bᵀw stays 0 except
through (Aw)ᵀΓ = (Aw)ᵀΣ̂A_sB_s (P_⊥G♮ = 0): a coupling between the spare block (scale ‖A0‖_op) and
the signal block (scale √σ_{r\*}). The GD defect projected on the spare block is
η²‖ΓᵀAw‖² = O(η²α²d‖Γ‖²), second order in the small block. We therefore predict s_j to hold after
the linear phase up to a relative correction of order δ := ‖A0‖_op/√σ_{r\*}(G♮) or smaller.

**Setup.** conf/claims/C08.yaml: LinearTeacher (d, k, r\*, N, κ, seed), over-rank r > r\*,
small_random α, GD. Drift: η ∈ `etas` at fixed horizon ηt = T (all runs reach risk ≲ 1e-8 by T).
Identity: the η_max run, `train(..., keep_factors=True, log_every=1, metrics="risk")`, gradients
recomputed from Σ̂ and G♮, its drift ‖D_T‖_F from its last factors. The other η run as one batch
(`lorasim.train_batch`, one step size per run) for the longest T/η, logged (full metrics, factors kept)
every L steps, L dividing every T/η and (T/η_sv)/64: each run's drift is the frame's `balance_drift`
at its own t = T/η, the frame column is checked against our ‖D_t‖_F at every logged step, and the spare
values are the η = `eta_sv` run's `sv_A_{r\*+1..r}` columns up to T/η_sv; s_j from A0 and the SVD of
G♮ only.

**Measured.** drift(T) per η and seed and its log-log slope; max_t ‖D_t − η²Σ(g_Aᵀg_A − g_Bg_Bᵀ)‖_F
and |balance_drift − ‖D_t‖_F|; σ_{r\*+j}(A_t)/s_j over t, σ_{r\*+j}(A_T)/s_j − 1; s_j/α against the
Gordon edges.

**Prediction.** Identity to round-off; slope 1; drift/η tends to a constant (Richardson);
σ_{r\*+j}(A_0) ≤ σ_{r\*+j}(A_t) ≤ s_j to within δ; E s_1 ≤ α(√(d−r\*)+√(r−r\*)),
E s_{r−r\*} ≥ α(√(d−r\*)−√(r−r\*)).

**Pass rule.** (a) identity: ‖D_t − η²Σ_{s<t}(…)‖_F ≤ 100·t·ε·max_s(‖A_s‖_F² + ‖B_s‖_F²) for all t
(accumulated round-off of t updates, ε the machine epsilon of the teachers' dtype, `cfg.eps`: the factors,
Σ̂ and G♮ and every product of the check are in that dtype) and the frame column equals ‖D_t‖_F to the
same tolerance; since ‖D_t‖_F ≤ 2·max_s(‖A_s‖_F² + ‖B_s‖_F²), a tolerance with 100·t·ε ≥ 2 at the last
checked t (T/η_min) is vacuous and rule (a) then FAILs as not checked (from ε alone: never in float64
or float32 at our scales; at tf32's ε = 2^-10 from t = 21 on);
(b) every seed's slope within 1 ± η_maxσ_1(G♮) (the derived next-order term, for
|c| ≤ ln(η_max/η_min));
(c) for every logged t and j: σ_{r\*+j}(A_0)(1−δ) ≤ σ_{r\*+j}(A_t) ≤ s_j(1+δ), δ = ‖A0‖_op/√σ_{r\*}(G♮)
(the derived order of the spare–signal coupling; round-off is far below it); (d) over seeds,
mean(s_1/edge₊) ≤ 1 + 3α/(√seeds·edge₊) and mean(s_{r−r\*}/edge₋) ≥ 1 − 3α/(√seeds·edge₋) (Gordon; the
tolerance is Gaussian concentration, fixed before the draw: each singular value of P_⊥A0Π is
α-Lipschitz in the standard Gaussian entries, so its variance is ≤ α² and a seed mean has sd ≤ α/√seeds;
it used to be 3 SE of the measured ratios themselves).

**Mutations.** `drift_order_eta`: the GD defect taken first order, D_t = η·Σ(g_Aᵀg_A − g_Bg_Bᵀ) (the
identity check is off by (1/η − 1)·‖D_t‖ ≫ round-off; rule (a)); `gauss_seidel_gd`: lorasim's GD takes
B's gradient at A_{t+1} (a planted solver bug: the per-step defect changes at O(η²), so the drift stays
O(η) and the slope survives, but the exact identity (a) is off by ≈ 2e-2 against a round-off tolerance
≈ 6e-13 at ci).
"""
import math

import numpy as np
import pandas as pd
import torch

import lorasim
from lorasim.fitting import linear_fit, loglog_fit, mean_se

from .kit import Checks, Mutation, TeacherSettings, gauss_seidel_step, parse, span
from .numerics import init_factors

TITLE = "balancedness, spare singular values"
RESULT = "R1"
FIGURE = "c08_balancedness.png"


class Settings(TeacherSettings):
    r: int
    n: int
    kappa: float
    alpha: float
    horizon: float
    etas: list
    eta_sv: float


def _spare_prediction(prob, A0, rs):
    """s_j = σ_j(P_⊥A0Π), Π = ker of U_{r*}(G♮)ᵀA0 inside R^r."""
    Ur = torch.linalg.svd(prob.G, full_matrices=False)[0][:, :rs]
    C = Ur.T @ A0
    Pi = torch.linalg.svd(C, full_matrices=True)[2][rs:].T
    return torch.linalg.svdvals((A0 - Ur @ C) @ Pi).cpu().numpy()


def _identity_check(prob, traj, eta, order, eps):
    """max_t ‖D_t − order·Σ_{s<t}(g_Aᵀg_A − g_Bg_Bᵀ)‖_F / tol_t (order = η², the derived defect) and the absolute error;
    eps: the machine epsilon of the factors' dtype (the teachers', ``cfg.eps``), the unit of the round-off tolerance."""
    Sh, G = prob.sigma_hat, prob.G
    _, A0, B0 = traj.factors[0]
    acc = torch.zeros(A0.shape[1], A0.shape[1], dtype=A0.dtype, device=A0.device)
    big, worst_id, worst_abs = 0.0, 0.0, 0.0
    for t, A, B in traj.factors:
        big = max(big, float(torch.linalg.matrix_norm(A)) ** 2 + float(torch.linalg.matrix_norm(B)) ** 2)
        tol = 100 * max(t, 1) * eps * big
        D = A.T @ A - B @ B.T - (A0.T @ A0 - B0 @ B0.T)
        err = float(torch.linalg.matrix_norm(D - acc))
        worst_id, worst_abs = max(worst_id, err / tol), max(worst_abs, err)
        Gam = Sh @ A @ B - G
        gA, gB = Gam @ B.T, A.T @ Gam
        acc = acc + order * (gA.T @ gA - gB @ gB.T)
    return worst_id, worst_abs


def _frame_check(traj, eps):
    """max_t |balance_drift − ‖D_t‖_F| / tol_t over the logged steps: lorasim's column against our D_t (eps as above)."""
    frame = traj.to_frame().set_index("step")
    _, A0, B0 = traj.factors[0]
    big, worst = 0.0, 0.0
    for t, A, B in traj.factors:
        big = max(big, float(torch.linalg.matrix_norm(A)) ** 2 + float(torch.linalg.matrix_norm(B)) ** 2)
        D = A.T @ A - B @ B.T - (A0.T @ A0 - B0 @ B0.T)
        worst = max(worst, abs(float(frame.loc[t, "balance_drift"]) - float(torch.linalg.matrix_norm(D)))
                    / (100 * max(t, 1) * eps * big))
    return worst


MUTATIONS = {
    "drift_order_eta": Mutation("the GD defect of AᵀA − BBᵀ taken first order, η·Σ(g_Aᵀg_A − g_Bg_Bᵀ), not η²"),
    "gauss_seidel_gd": gauss_seidel_step("lorasim's GD uses A_{t+1} in B's update (planted solver bug)"),
}


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    d, r, rs, alpha, etas, eta_sv = cfg.d, cfg.r, cfg.r_star, cfg.alpha, cfg.etas, cfg.eta_sv
    eta_max = max(etas)
    rows, fits, sv_curves = [], [], []
    for seed in range(cfg.seeds):
        prob = cfg.teacher(seed, n=cfg.n, kappa=cfg.kappa)
        s_G = torch.linalg.svdvals(prob.G)
        s1, s_rs = float(s_G[0]), float(s_G[rs - 1])
        A0, B0 = init_factors(prob, "small_random", r, seed=1000 + seed, alpha=alpha)
        # η_max: every step kept (the identity), risk-only rows; the other η as one batch, logged every L steps
        # (L divides every T/η), so each run's drift is read at its own t = T/η and η_sv's spare values on the way
        traj = lorasim.train(prob, A0, B0, solver="gd", lr=eta_max, steps=round(cfg.horizon / eta_max), log_every=1,
                             keep_factors=True, metrics="risk")
        order = eta_max if ctx.mutant("drift_order_eta") else eta_max**2
        id_ratio, id_abs = _identity_check(prob, traj, eta_max, order, cfg.eps)
        A_T, B_T = traj.factors[-1][1:]
        drift_max = float(torch.linalg.matrix_norm(A_T.T @ A_T - B_T @ B_T.T - (A0.T @ A0 - B0 @ B0.T)))
        rest = [e for e in etas if e != eta_max]
        n_steps = [round(cfg.horizon / e) for e in rest]
        every = math.gcd(max(1, round(cfg.horizon / eta_sv) // 64), *n_steps)
        trajs = lorasim.train_batch(prob, [(A0, B0)] * len(rest), solver="gd", lr=rest, steps=max(n_steps),
                                    log_every=every, keep_factors=True)
        drift_at, risks = {eta_max: drift_max}, [float(traj.to_frame().risk.iloc[-1])]
        col_ratio = 0.0
        for eta, steps, tr in zip(rest, n_steps, trajs):
            df = tr.to_frame().set_index("step")
            drift_at[eta] = float(df.balance_drift.loc[steps])
            risks.append(float(df.risk.loc[steps]))
            col_ratio = max(col_ratio, _frame_check(tr, cfg.eps))
            if eta == eta_sv:
                sv_df = df[df.index <= steps].reset_index()
        drifts = [drift_at[e] for e in etas]
        sA0 = torch.linalg.svdvals(A0).cpu().numpy()
        a0op = float(sA0[0])
        s_pred = _spare_prediction(prob, A0, rs)
        delta = a0op / math.sqrt(s_rs)
        sv = sv_df[[f"sv_A_{i}" for i in range(rs + 1, r + 1)]].to_numpy()
        lo_ok = bool((sv >= sA0[rs:] * (1 - delta)).all())
        hi_ok = bool((sv <= s_pred * (1 + delta)).all())
        f = loglog_fit(etas, drifts, "η", "drift(T)")
        rich = linear_fit(etas, np.asarray(drifts) / np.asarray(etas), "η", "drift/η")
        if seed == 0:
            fits += [f, rich]
        edge_p = alpha * (math.sqrt(d - rs) + math.sqrt(r - rs))
        edge_m = alpha * (math.sqrt(d - rs) - math.sqrt(r - rs))
        rows.append({"seed": seed, "sigma1": s1, "slope": f.slope, "slope_se": f.slope_se,
                     "slope_tol": eta_max * s1, "drift_over_eta_limit": rich.intercept,
                     **{f"drift_eta_1/{round(1 / e)}": v for e, v in zip(etas, drifts)},
                     "max_risk_T": max(risks), "identity_err_over_tol": id_ratio, "identity_err_abs": id_abs,
                     "frame_col_err_over_tol": col_ratio, "A0tA0_op": a0op**2,
                     "delta": delta, "spare_lo_ok": lo_ok, "spare_hi_ok": hi_ok,
                     "spare_end_dev": float(np.abs(sv[-1] / s_pred - 1).max()),
                     "spare_max_over_pred": float((sv / s_pred).max()),
                     "s1_over_edge_plus": s_pred[0] / edge_p, "slast_over_edge_minus": s_pred[-1] / edge_m,
                     "spare_end_over_alpha_sqrt_d": float(sv[-1, 0] / (alpha * math.sqrt(d)))})
        sv_curves.append((seed, sv_df, s_pred, sA0))
    df = pd.DataFrame(rows)
    m_slope, se_slope = mean_se(df.slope)
    mp, sep = mean_se(df.s1_over_edge_plus)
    mm, sem = mean_se(df.slast_over_edge_minus)
    checks = Checks()
    # vacuity, from ε and the step count alone: ‖D_t‖_F ≤ ‖A_t‖²_F + ‖B_t‖²_F + ‖A_0‖²_F ≤ 2·max_s(‖A_s‖²_F + ‖B_s‖²_F),
    # so once 100·t·ε ≥ 2 the tolerance is as large as D_t itself and the identity is no longer checked
    t_last = round(cfg.horizon / min(etas))  # the largest t either check reads (the smallest η's run)
    if 100 * t_last * cfg.eps >= 2:
        checks.add("identity", False,
                   f"bound vacuous at this dtype (ε = {cfg.eps:.2g}): tolerance 100·t·ε = {100 * t_last * cfg.eps:.3g}"
                   f"·max(‖A‖²+‖B‖²) at t = {t_last} ≥ 2·max(‖A‖²+‖B‖²) ≥ ‖D_t‖_F; the identity is not checked")
    else:
        checks.add("identity", (df.identity_err_over_tol <= 1).all() and (df.frame_col_err_over_tol <= 1).all(),
                   f"max err/tol {df.identity_err_over_tol.max():.2g} (identity), "
                   f"{df.frame_col_err_over_tol.max():.2g} (frame)")
    checks.add("slope", (np.abs(df.slope - 1) <= df.slope_tol).all(),
               f"slopes {span(df.slope, '.3f')}, tolerance ±{df.slope_tol.min():.3f}")
    checks.add("spare_sandwich", df.spare_lo_ok.all() and df.spare_hi_ok.all(),
               f"lower bound held in {int(df.spare_lo_ok.sum())}, upper in {int(df.spare_hi_ok.sum())} of {len(df)} seeds")
    # Gaussian concentration: every singular value of P_⊥A0Π is α-Lipschitz in the standard Gaussian entries, so its
    # variance is ≤ α² (Poincaré) and a mean over the seeds has sd ≤ α/√seeds: the tolerance, fixed before the draw
    edge_p = alpha * (math.sqrt(d - rs) + math.sqrt(r - rs))
    edge_m = alpha * (math.sqrt(d - rs) - math.sqrt(r - rs))
    tol_p, tol_m = 3 * alpha / math.sqrt(cfg.seeds) / edge_p, 3 * alpha / math.sqrt(cfg.seeds) / edge_m
    checks.add("gordon", mp <= 1 + tol_p and mm >= 1 - tol_m,
               f"s1/edge+ {mp:.3f} > 1 + {tol_p:.3f} or s_last/edge− {mm:.3f} < 1 − {tol_m:.3f}")
    _figure(df, etas, sv_curves, rs, r, ctx)
    return checks.verdict(
        prediction=("D_t = η²Σ(g_Aᵀg_A − g_Bg_Bᵀ) exactly; drift ∝ η at fixed ηt (slope 1 ± η_maxσ1); "
                    "spare σ(A_t) ∈ [σ_{r*+j}(A0), s_j]·(1±δ), s_j = σ_j(P_⊥A0Π) = O(α√d)"),
        measured=(f"slope {m_slope:.3f} ± {se_slope:.3f} (tol ±{df.slope_tol.max():.3f}); identity err "
                  f"≤ {df.identity_err_abs.max():.2g} ({df.identity_err_over_tol.max():.2g}·tol); "
                  f"spare end dev ≤ {df.spare_end_dev.max():.2g} (δ ≥ {df.delta.min():.2g}); "
                  f"s1/edge+ {mp:.3f} ± {sep:.3f}, s_last/edge− {mm:.3f} ± {sem:.3f}"),
        fits=fits, table=df, figures=[FIGURE],
        notes=(f"horizon ηt = {cfg.horizon}, α = {alpha}; edge± = α(√(d−r*) ± √(r−r*)). "
               "drift_over_eta_limit is the η → 0 intercept of drift/η (Richardson); "
               "A0tA0_op = ‖A0ᵀA0‖_op for comparison with the drift."))


def _figure(df, etas, sv_curves, rs, r, ctx):
    with ctx.figure(FIGURE, ncols=2, figsize=(11, 4.2)) as (fig, (ax1, ax2)):
        for _, row in df.iterrows():
            ys = [row[f"drift_eta_1/{round(1 / e)}"] for e in etas]
            ax1.loglog(etas, ys, "o-", ms=3, lw=0.8, alpha=0.8)
        e = np.array(etas)
        ref = df[f"drift_eta_1/{round(1 / etas[0])}"].mean() * e / etas[0]
        ax1.loglog(e, ref, "k--", label="∝ η")
        ax1.set(xlabel="η (fixed ηt)", ylabel="‖AᵀA − BBᵀ − A0ᵀA0‖_F at ηt = T", title="C8: balance drift is O(η)")
        ax1.legend(fontsize=8)
        seed, sv_df, s_pred, _ = sv_curves[0]
        for i in range(1, r + 1):
            ax2.semilogy(sv_df.step, sv_df[f"sv_A_{i}"], label=rf"$\sigma_{{{i}}}(A_t)$" + (" (spare)" if i > rs else ""))
        for j, s in enumerate(s_pred):
            ax2.axhline(s, color="k", ls="--", lw=0.8, label="s_j = σ_j(P_⊥A0Π)" if j == 0 else None)
        ax2.set(xlabel="step t", title=f"singular values of A (seed {seed})")
        ax2.legend(fontsize=7)
