r"""
## C13 — R5: after the spectral init, ln(risk) falls on a straight line to a round-off floor (SPEC §5 R5, §9 C13)

**Hypothesis.** From the spectral init (exact rank, noiseless linear model), GD (η = ½/σ_1(G♮)) and
PrecGD (ScaledGD, η = ½, λ = 0) converge linearly: ln R_t is a straight line in t down to a round-off
floor. PrecGD's slope does not depend on κ; GD's slope is ∝ 1/κ; the float32 floor lies far above the
float64 floor. We assert the window slopes against a prediction made from the problem and the init
alone (the map linearised at the balanced solution, iterated from the init's own F_0), with a
tolerance derived a priori from the balancedness drift, the nonlinear start and round-off; the
straightness of ln R_t against the curvature that the same prediction carries; and both floors as
∝ ε_mach² (ratio (ε_32/ε_64)² ≈ 2.9·10¹⁷ within a decade).

**Derivation.** *Invariant subspace* (as in C9/C10): noiseless G♮ = Σ̂ΔW has row space span V\*, the
rows of B_t stay there, so E_t = A_tB_t − ΔW = F_tV\*ᵀ with F_t ∈ R^{d×r\*} and R_t = ½‖F_t‖_F².

*Linearisation at a solution (A, B).* Near a solution the product moves by
E' = E − η(Σ̂E·𝔅 + 𝔄·Σ̂E) + O(‖E‖²), with 𝔅 = BᵀB, 𝔄 = AAᵀ for GD, and 𝔅 = Bᵀ(BBᵀ + λ)⁻¹B,
𝔄 = A(AᵀA + λ)⁻¹Aᵀ for PrecGD, so F_{t+1} = F_t − η(Σ̂F_tM_1 + M_2Σ̂F_t), M_1 = V\*ᵀ𝔅V\*, M_2 = 𝔄.
In H = Σ̂^{1/2}F coordinates the map is I − η𝒦 with 𝒦H = Σ̂HM_1 + Σ̂^{1/2}M_2Σ̂^{1/2}H self-adjoint ⪰ 0,
so R_t is a sum of exponentials (1 − ημ)^{2t} over the spectrum of 𝒦: **ln R_t is asymptotically linear
with slope 2 ln ρ**, ρ = max|1 − ημ|. The spectrum is a near-continuum (Σ̂'s Marchenko–Pastur bulk off
U\*), so in a finite window the faster modes add a slight convexity and the window slope differs from
2 ln ρ by a few %; the prediction is therefore the window fit of the linear recursion itself.

*The prediction (from the problem and the init alone).* GD: the balanced solution A = U\*S\*^{1/2},
B = S\*^{1/2}V\*ᵀ (M_1 = S\*, M_2 = U\*S\*U\*ᵀ); PrecGD (λ = 0, exact rank): at *every* solution
𝔄 = P_{U\*}, 𝔅 = P_{V\*}, so M_1 = I, M_2 = U\*U\*ᵀ: the κ-free map, exact. Each is iterated from the
spectral init's own F_0 = (Σ̂ − I)U\*S\* (theory/numerics.py `initial_F`, no lorasim), and s_bal is its
least-squares slope of ln R over the same risk levels as the measurement's window.

*Tolerance of s/s_bal (per run), three a-priori parts.*
(a) Balancedness drift (GD only). GD's D_t = A_tᵀA_t − B_tB_tᵀ obeys D_{t+1} = D_t + η²(g_Aᵀg_A − g_Bg_Bᵀ)
exactly (C8: the O(η) terms cancel), and D_0 = 0 (the spectral init is balanced). The solutions with
AᵀA − BBᵀ = D are A = U\*S\*^{1/2}Q, B = Q⁻¹S\*^{1/2}V\*ᵀ with, to first order, Q = I + X, XS\* + S\*X = D
(X symmetric; the orthogonal part of Q changes neither 𝔄 nor 𝔅). Then M_1 = S\*^{1/2}(I − Z)S\*^{1/2},
M_2 = U\*S\*^{1/2}(I + Z)S\*^{1/2}U\*ᵀ with Z = S\*^{1/2}XS\*^{1/2}, |Z_ij| = |D̃_ij|√(s_is_j)/(s_i + s_j) ≤
½|D̃_ij|, D̃ = S\*^{−1/2}DS\*^{−1/2}: a *relative* perturbation, so by the Loewner order every μ of 𝒦 moves
by a factor within 1 ± z, z := ‖Z‖_op ≤ ½‖D̃‖_F ≤ ½η²Σ_t(‖g_AS\*^{−1/2}‖² + ‖S\*^{−1/2}g_B‖²). Near the
balanced solution g_AS\*^{−1/2} = Σ̂F and S\*^{−1/2}g_B = U\*ᵀΣ̂FV\*ᵀ, so the budget is computed along the
predicted trajectory: **z = ½η²Σ_t(‖Σ̂F_t‖² + ‖U\*ᵀΣ̂F_t‖²)**. A rate 1 − x moves to 1 − x(1 ± z), i.e.
ln ρ by the relative amount c(x)·z, c(x) = x/((1 − x)(−ln(1 − x))) (→ 1 for slow modes), x = 1 − ρ_bal.
(b) The nonlinear start. The measurement leaves the nonlinear phase with mode weights that differ
from the linear iteration's by the relative size of the neglected terms, ≤ q := ‖Σ̂ − I‖_op (the init's
column-wise relative error ‖(Σ̂ − I)u_jλ\*_j‖/λ\*_j). The window slope depends on the weights only
through the faster modes' share, which the prediction measures as |s_bal − 2 ln ρ_bal|; so this
part is q·|s_bal − 2 ln ρ_bal|/|s_bal|.
(c) Round-off. At the floor the iterate's error is ‖E_floor‖ = √(2R_floor): the rounded problem's own
floor, measured on the same problem by its PrecGD run (another run, and not a slope). The window ends at
R_lo = `window_floor`·½ε²‖ΔW‖², so ln R is perturbed by ≤ δ = 2‖E_floor‖/‖E‖ ≤ 2√(R_floor/R_lo) inside
it, and a least-squares slope over a window of ℓ = ln(R_hi/R_lo) nats by ≤ 3δ/ℓ relative (uniform
grid: Σ|t − t̄|/Σ(t − t̄)² = 3/W).
**τ_run = c(x)·z + q·|s_bal − 2 ln ρ_bal|/|s_bal| + 3δ/ℓ.**

*Straightness.* The measured ln R_t deviates from a line by the faster modes' share (what the
prediction's own fit residual r_bal shows), scaled by at most 1 + q through the changed weights (b),
plus the round-off perturbation δ; a least-squares line's residual is at most 3.5× a bounded
perturbation (intercept ≤ δ, slope ≤ 3δ/W over ±W/2). Rule: max|res| ≤ (1 + q)·r_bal + 3.5δ.

*PrecGD is κ-free; GD ∝ 1/κ.* The PrecGD map has no S\* in it; its window slope depends on κ only
through F_0's column scales (the mode weights). GD's slow column contracts by 1 − ηλ\*_{r\*}μ_−, μ_− ≈
(1 − √(d/N))², so −2 ln ρ ≈ 2ηλ\*_{r\*}μ_− ∝ 1/κ; with κ from 1 the finite-κ log-log slope of |s_bal|
is within 0.1 of −1 (−1.03 at ci). As the PrecGD map is the same at every solution, ρ_P computed at
each run's own end state is the same for every κ up to the distance of that end state from a solution
(Wedin: ‖sinΘ(col A_end, U\*)‖ ≤ ‖E_end‖/λ\*_{r\*}).

*Floors.* Once E is at round-off, each step adds rounding errors of relative size ε_mach to the
stored statistics and to the products; the iterate sits at ‖E‖ ≈ c·ε_mach‖ΔW‖_F, i.e.
R_floor ≈ ½c²ε_mach²‖ΔW‖_F² with c² an O(1)–O(10) constant set by the same sums (length d, N) in
both precisions. Hence R_floor,32/R_floor,64 ≈ (ε_32/ε_64)² = 2^58 ≈ 2.9·10¹⁷, up to the ratio of the
two c², which is within a decade.

**Setup.** conf/claims/C13.yaml: `LinearTeacher(d, k, r_star, n, kappa, seed, dtype)` for dtype ∈
{float64, float32} (problem, factors and solver in that dtype), spectral init at r = r\*, lorasim
solvers `gd` (η = ½/σ_1(G♮)) and `precgd` (η = ½, λ = 0), each `lorasim.train(..., metrics="risk",
keep_factors=True)` logged every 1/(`points_per_nat`·decay) steps (decay = −2 ln ρ_bal): GD stops at
lorasim's risk below R_lo (the window's end), PrecGD on `plateau(4/decay + 20)` (its floor). R_t is
recomputed in float64 from the kept factors against ΔW = ΔL·ΔR of the stored factors (a float32 run's
own risk would be rounded at the level of its floor). Fit window: the logged t with R_hi =
`window_start`·R_0 > R_t > R_lo = `window_floor`·½ε²‖ΔW‖² (R_hi past the nonlinear transient). Floor =
median of R_t over PrecGD's last plateau steps. ci: d = k = 32, r\* = 2, N = 512, κ ∈ {1, 5, 25},
3 seeds (every tolerance is derived per run; seeds only repeat); paper: the T2 setup (d = k = 100,
r\* = 4, N = 1600, κ ∈ {1, 4, 10, 100}), λ = 0; large: d = 4096, k = 512, N = 16d, κ ∈ {1, 3, 10, 30}.

**Measured.** Per run: the window slope s (least squares of ln R_t on the logged t), its max |residual|,
s_bal and r_bal (the prediction's window slope and residual), z, τ_run; the end-state map's
2 ln ρ_end (diagnostic only, not asserted); PrecGD floors and c² = floor/(½ε²‖ΔW‖²).

**Prediction.** s = s_bal within τ_run; ln R_t straight up to the prediction's own curvature;
PrecGD slope κ-free, GD |slope| ∝ κ^{−1}; log10(R_floor,32/R_floor,64) ≈ 17.46 ± 1.

**Pass rule.** (i) |s/s_bal − 1| ≤ τ_run in every run (derivation (a)–(c)). (ii) max|res| ≤
(1 + q)·r_bal + 3.5δ in every run. (iii) PrecGD: ρ_P at each run's own end state equal across κ within
10·‖E_end‖/λ\*_{r\*} relative (Wedin, ×10 for the constants), and the measured per-seed log-log slope of
|s| against κ within 2·max τ_run/ln(κ_max/κ_min) of the predicted one (what (i) allows). (Until the eleventh
session of issue 17 it also asked the prediction's own κ-slope to lie within 0.05 of 0, a literal on a quantity
the derivation leaves to F_0's mode weights: `draws=79` and `draws=83` predicted up to 0.050 and 0.062, and the runs
followed, up to 0.052 and 0.059; the κ-free statement is the rate's, asserted at the end states.) (iv) GD: the same, with the predicted log-log slope within 0.1 of −1.
(v) For every seed, with R_floor per precision the median of PrecGD's floors over κ,
|log10(R_floor,32/R_floor,64) − log10((ε_32/ε_64)²)| ≤ 1.

**Finding (ci, 3 seeds).** s/s_bal − 1 ∈ [−1.4e−2, +1.9e−3], at most 0.30·τ_run; the largest
deviations are GD at κ = 1 (−1.1e−2 to −1.2e−2, the drift: z ≈ 0.024–0.031, the end-state map's rate
is 1.4e−2 off the balanced one there), against ≤ 2e−3 at κ ≥ 5 and ≤ 1.5e−3 for PrecGD. The window fit
is visibly curved (max |residual| 0.15–0.72 in float64), and the prediction carries the same curvature
(measured ≤ 0.63× the bound of (ii)). The float64 floor constant c² is 6–15 (float32: 2.6–4.9), so the
old statement "c² = O(1)–O(10)" is about right but not a bound; (c) therefore uses the measured PrecGD
floor, not an assumed c². GD |slope| ∝ κ^(−1.043…−1.016) per seed (prediction −1.046…−1.020); PrecGD
κ^(−0.002…0.007). Paper (5 seeds, CPU, 81 s): s/s_bal − 1 ∈ [−1.4e−2, +2.3e−3] (≤ 0.16·τ_run),
max|res| ≤ 0.68× its bound, GD κ^(−1.023…−0.988) (pred −1.025…−0.989), PrecGD κ^(0.002…0.005), floors
(medians) f64 1.9e−30, f32 8.3e−14, log10 ratio 16.61–16.77, c² 4.9–53 (float64 up to 53: no O(10)
bound holds). This replaces the old rule (i), whose s_lin was linearised at the run's own end state
and started from the run's own window-start state (s/s_lin = 1 to 1e−4 by construction); that end-state
rate is kept as a diagnostic (`slope_asym_end`), not asserted.

**Mutations.** `rate_sqrt_kappa`: the balanced GD map built with S\*^{1/2} in place of S\* (the slow
rate ∝ 1/√κ): s_bal is off by ≈ √κ at κ > 1, caught by (i). `gauss_seidel_gd`: lorasim's step takes
B's gradient at A_{t+1} (patched `Stepper.step`): the map gains O(η²λ\*²) terms that change the κ = 1
rates by ≫ τ_run, caught by (i). `risk_float32`: R_t recomputed in float32: the float64 floor becomes
the float32 one, caught by (v) (and (ii)).
"""
import math

import numpy as np
import pandas as pd
import torch

import lorasim
from lorasim.fitting import linear_fit, loglog_fit

from .kit import Checks, Mutation, TeacherSettings, gauss_seidel_step, parse, span
from .numerics import contraction, init_factors, initial_F, linear_map, linearisation, sym_extremes, truth

TITLE = "linear convergence after spectral init"
RESULT = "R5"
FIGURE = "c13_linear_convergence.png"


MUTATIONS = {
    "rate_sqrt_kappa": Mutation("the balanced GD map built with S*^{1/2} in place of S* (slow rate ∝ 1/√κ)"),
    "gauss_seidel_gd": gauss_seidel_step("lorasim's step takes B's gradient at A_{t+1}"),
    "risk_float32": Mutation("R_t recomputed from the kept factors in float32 instead of float64"),
}


class Settings(TeacherSettings):
    n: int
    kappas: list
    c_eta: float
    lr_prec: float
    dtypes: list
    window_start: float
    window_floor: dict  # per dtype: R_lo = window_floor·½ε²‖ΔW‖²
    points_per_nat: dict  # per dtype: logged rows per nat of decay


def _balanced(prob, solver, wrong):
    """(M1, Y) of the map at the balanced solution (GD) / the κ-free map (PrecGD)."""
    if solver == "gd" and wrong:  # wrong theory: S*^{1/2} where S* belongs
        S = prob.S_star.double()
        return torch.diag(S.sqrt()), prob.U_star.double() * S ** 0.25
    return linearisation(prob, solver)


def _predict(prob, solver, eta, M1, Y, F0, n_steps, r_end):
    """R_t of the linear map iterated from F_0 (no lorasim) and the drift budget
    z = ½η²Σ_t(‖Σ̂F_t‖² + ‖U*ᵀΣ̂F_t‖²) along it (GD; 0 for PrecGD, whose map is exact at every solution)."""
    Sh, U = prob.sigma_hat.double(), prob.U_star.double()
    step = linear_map(prob, eta, M1, Y @ Y.T)
    F, risks = F0.clone(), []
    g2 = torch.zeros((), dtype=torch.float64, device=F0.device)
    while len(risks) < n_steps:
        chunk = []
        for _ in range(256):  # a host sync per chunk
            chunk.append(0.5 * (F * F).sum())
            SF = Sh @ F
            g2 = g2 + (SF * SF).sum() + ((U.T @ SF) ** 2).sum()
            F = step(F)
        risks += torch.stack(chunk).cpu().tolist()
        if risks[-1] < r_end:  # past the window's end: the rest adds < 1e-3 relative to z
            break
    return np.array(risks), (0.5 * eta**2 * float(g2) if solver == "gd" else 0.0)


def _window(risks, hi, lo):
    return np.nonzero((risks < hi) & (risks > lo))[0]


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    kappas = sorted(float(k) for k in cfg.kappas)
    rs = cfg.r_star
    rows, curves = [], {}
    for dtype in cfg.dtypes:
        emach = float(torch.finfo(getattr(torch, dtype)).eps)
        for seed in range(cfg.seeds):
            for kappa in kappas:
                prob = cfg.teacher(seed, n=cfg.n, kappa=kappa, dtype=dtype)
                D = truth(prob)
                norm2 = float((D ** 2).sum())
                unit = 0.5 * emach**2 * norm2
                s1 = float(prob.svd_G()[1][0])  # the spectral init uses the same (cached) SVD
                Sh = prob.sigma_hat.double()
                lo, hi = sym_extremes(Sh)
                q = max(hi - 1, 1 - lo)  # ‖Σ̂ − I‖_op
                F0 = initial_F(prob)
                R0 = 0.5 * float((F0 ** 2).sum())
                R_hi, R_lo = cfg.window_start * R0, cfg.window_floor[dtype] * unit
                for solver, eta, kw in (("gd", cfg.c_eta / s1, {}), ("precgd", cfg.lr_prec, {"damping": 0.0})):
                    M1b, Yb = _balanced(prob, solver, ctx.mutant("rate_sqrt_kappa"))
                    rho0 = contraction(prob, eta, M1b, Yb)
                    decay = -2 * math.log(rho0)
                    Rb, z = _predict(prob, solver, eta, M1b, Yb, F0, int(2 * math.log(R0 / R_lo) / decay) + 256, 1e-3 * R_lo)
                    every = max(1, int(1 / (cfg.points_per_nat[dtype] * decay)))
                    plateau = int(4 / decay) + 20
                    # GD runs to the window's end; PrecGD (fast) on to its round-off floor.
                    stop = lorasim.risk_below(R_lo) if solver == "gd" else lorasim.plateau(plateau)
                    A, B = init_factors(prob, "spectral", rs)
                    tr = lorasim.train(prob, A, B, solver=solver, lr=eta, steps=int(2 * math.log(R0 / unit) / decay) + 100,
                                       log_every=every, metrics="risk", keep_factors=True, stop=stop, **kw)
                    t_all = np.array([t for t, _, _ in tr.factors])
                    if ctx.mutant("risk_float32"):
                        Df = D.float()
                        risks = torch.stack([0.5 * ((a.float() @ b.float() - Df) ** 2).sum() for _, a, b in tr.factors])
                    else:
                        risks = torch.stack([0.5 * ((a.double() @ b.double() - D) ** 2).sum() for _, a, b in tr.factors])
                    risks = risks.double().cpu().numpy()
                    i, ib = _window(risks, R_hi, R_lo), _window(Rb, R_hi, R_lo)
                    fit = linear_fit(t_all[i], np.log(risks[i]), "t", f"ln R ({solver}, κ={kappa:g}, {dtype}, seed {seed})")
                    fb = linear_fit(ib, np.log(Rb[ib]))
                    x = 1 - rho0
                    tau_ab = (x / ((1 - x) * -math.log(1 - x))) * z + q * abs(fb.slope - 2 * math.log(rho0)) / abs(fb.slope)
                    # the end-state map (diagnostic only: linearised at the run's own last factors)
                    a_end, b_end = tr.factors[-1][1].double(), tr.factors[-1][2].double()
                    rho_end = contraction(prob, eta, *linearisation(prob, solver, a_end, b_end))
                    tail = t_all >= t_all[-1] - plateau
                    floor = float(np.median(risks[tail])) if solver == "precgd" else math.nan
                    rows.append({"dtype": dtype, "seed": seed, "kappa": kappa, "solver": solver, "eta": eta,
                                 "log_every": every, "steps": int(t_all[-1]), "risk_0": R0,
                                 "window": f"{t_all[i[0]]}-{t_all[i[-1]]}", "n_fit": len(i),
                                 "window_bal": f"{ib[0]}-{ib[-1]}", "slope": fit.slope, "slope_bal": fb.slope,
                                 "ratio": fit.slope / fb.slope, "tau_ab": tau_ab, "z_drift": z, "q": q,
                                 "nats": math.log(R_hi / R_lo), "R_lo": R_lo,
                                 "slope_asym_bal": 2 * math.log(rho0), "slope_asym_end": 2 * math.log(rho_end),
                                 "resid": float(np.max(np.abs(fit.residuals))),
                                 "resid_bal": float(np.max(np.abs(fb.residuals))),
                                 "lam_rstar": float(prob.S_star[-1]), "err_end": math.sqrt(2 * risks[-1]),
                                 "floor": floor, "c2": floor / unit, "_fit": fit})
                    if seed == 0:
                        curves[(dtype, kappa, solver)] = (t_all, risks)
    df = pd.DataFrame(rows)
    fits_all = df.pop("_fit")
    # (c) round-off: ln R inside the window is perturbed by ≤ δ = 2√(floor/R_lo), the floor being that of the same
    # rounded problem (its PrecGD run's plateau: another run, and not a slope)
    key = ["dtype", "seed", "kappa"]
    floors = df[df["solver"] == "precgd"].set_index(key)["floor"]
    df["delta"] = 2 * np.sqrt(floors.reindex(pd.MultiIndex.from_frame(df[key])).to_numpy() / df["R_lo"])
    df["tau"] = df["tau_ab"] + 3 * df["delta"] / df["nats"]
    df["resid_bound"] = (1 + df["q"]) * df["resid_bal"] + 3.5 * df["delta"]

    checks, parts, notes = Checks(), [], []
    dev = (df["ratio"] - 1).abs()
    bad = df[dev > df["tau"]]
    checks.add("(i) |s/s_bal − 1| ≤ τ_run", bad.empty,
               f"{len(bad)} runs off, worst {(dev / df['tau']).max():.3g}·τ_run "
               "(" + ", ".join(f"{r.solver} κ={r.kappa:g} {r.dtype}: {r.ratio - 1:+.2e} vs τ {r.tau:.1e}"
                               for r in bad.head(3).itertuples()) + ")")
    parts.append(f"s/s_bal − 1 ∈ [{(df['ratio'] - 1).min():+.1e}, {(df['ratio'] - 1).max():+.1e}] "
                 f"(max {(dev / df['tau']).max():.2f}·τ_run, τ_run {span(df['tau'], '.1e')})")
    over = df["resid"] / df["resid_bound"]
    checks.add("(ii) ln R straight: max|res| ≤ (1+q)r_bal + 3.5δ", (over <= 1).all(),
               f"{int((over > 1).sum())} runs above, worst {over.max():.3g}× the bound")
    parts.append(f"max|res| ≤ {over.max():.2f}× its bound")

    pre = df[df["solver"] == "precgd"]
    gp = pre.groupby(["dtype", "seed"])
    rho_spread = gp["slope_asym_end"].agg(lambda x: x.abs().max() / x.abs().min() - 1)
    rho_tol = gp.apply(lambda x: 10 * (x["err_end"] / x["lam_rstar"]).max())
    checks.add("(iii) ρ_P at the end states equal across κ", (rho_spread <= rho_tol).all(),
               f"κ-spread {rho_spread.max():.2g} above its tolerance in {int((rho_spread > rho_tol).sum())} (dtype, seed)")
    per, fits = [], []
    span_k = math.log(kappas[-1] / kappas[0])
    for (solver, dtype, seed), gs in df.groupby(["solver", "dtype", "seed"]):
        gs = gs.sort_values("kappa")
        f = loglog_fit(gs["kappa"], -gs["slope"], "κ", f"|{solver} slope| ({dtype}, seed {seed})")
        fl = loglog_fit(gs["kappa"], -gs["slope_bal"])
        per.append({"solver": solver, "dtype": dtype, "seed": seed, "s": f.slope, "s_bal": fl.slope,
                    "allowed": 2 * gs["tau"].max() / span_k})
        if seed == 0:
            fits.append(f)
    per = pd.DataFrame(per)
    # GD: the prediction's own κ-slope near −1 (finite κ); PrecGD: none, its rate is κ-free (the end-state rule above)
    # and its window slope moves with κ only through F_0's mode weights, which the prediction carries.
    target = {"precgd": ("(iii)", 0.0, math.inf), "gd": ("(iv)", -1.0, 0.1)}
    for solver, gp in per.groupby("solver"):
        label, center, tol = target[solver]
        ok = ((gp["s"] - gp["s_bal"]).abs() <= gp["allowed"]) & ((gp["s_bal"] - center).abs() <= tol)
        checks.add(f"{label} {solver} |slope| ∝ κ^{center:g}", ok.all(),
                   f"log-log slope {span(gp['s'], '.3f')} vs predicted {span(gp['s_bal'], '.3f')} "
                   f"(allowed ±{gp['allowed'].max():.3f}" + (f"; prediction target {center:g} ± {tol:g})"
                                                             if math.isfinite(tol) else ")"))
        parts.append(f"{solver} |slope| ∝ κ^({span(gp['s'], '.3f')}) [pred {span(gp['s_bal'], '.3f')}]")
    parts.insert(1, f"PrecGD slope {pre['slope'].mean():.3f}, ρ_P at the end states κ-spread ≤ {rho_spread.max():.0e}")
    if set(cfg.dtypes) >= {"float32", "float64"}:
        med = pre.groupby(["dtype", "seed"])["floor"].median()
        lr = np.log10(med["float32"] / med["float64"])
        target_db = 2 * math.log10(float(torch.finfo(torch.float32).eps) / float(torch.finfo(torch.float64).eps))
        checks.add("(v) floor ratio", ((lr - target_db).abs() <= 1).all(),
                   f"log10 ratio {span(lr, '.2f')} vs {target_db:.2f} ± 1")
        parts.append(f"floors f64 {med['float64'].median():.1e}, f32 {med['float32'].median():.1e}, log10 ratio "
                     f"{span(lr, '.2f')} per seed (pred {target_db:.2f}±1); c² {span(pre['c2'], '.2g')}")
    gd = df[df["solver"] == "gd"]
    notes.append("End-state map (diagnostic, not asserted): 2 ln ρ_end/2 ln ρ_bal − 1 ∈ "
                 + span(df["slope_asym_end"] / df["slope_asym_bal"] - 1, "+.1e")
                 + f"; GD drift budget z {span(gd['z_drift'], '.1e')}")
    notes.append("Per-seed log-log slopes of |slope| against κ (s measured, s_bal predicted):\n\n" + per.to_string(index=False))
    fits = [fits_all[i] for i in df.index[(df["seed"] == 0) & (df["dtype"] == "float64")]] + fits
    _figure(curves, ctx)
    return checks.verdict(
        prediction="ln R linear with slope = the balanced map's from F_0 (± τ_run: drift, nonlinear start, round-off); "
                   "PrecGD rate κ-free (its window slope moves with κ only as F_0's weights predict); GD |slope| ∝ 1/κ; floor32/floor64 ≈ (ε32/ε64)² within a decade",
        measured="; ".join(parts), fits=fits, table=df, figures=[FIGURE], notes="\n\n".join(notes))


def _figure(curves, ctx):
    import matplotlib.pyplot as plt

    with ctx.figure(FIGURE, dpi=120, ncols=2, figsize=(11, 4.2)) as (fig, axes):
        styles = {"float64": "-", "float32": "--"}
        kappas = sorted({k for _, k, _ in curves})
        colors = {k: plt.cm.viridis(i / max(1, len(kappas) - 1) * 0.85) for i, k in enumerate(kappas)}
        for (dtype, kappa, solver), (t, r) in sorted(curves.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            ax = axes[0] if solver == "precgd" else axes[1]
            x = t if solver == "precgd" else t / kappa
            ax.plot(x, np.log10(r), styles[dtype], color=colors[kappa], lw=1.2, label=f"κ={kappa:g}, {dtype}")
        axes[0].set(xlabel="t", title="PrecGD (η = ½, λ = 0): one slope for every κ")
        axes[1].set(xlabel="t / κ", title="GD (η = ½/σ₁): slopes collapse in t/κ (∝ 1/κ)")
        for ax in axes:
            ax.set_ylabel("log10 risk")
            ax.legend(fontsize=7, ncol=2)
        fig.suptitle("C13: linear convergence after the spectral init (GD to the window's end, PrecGD to its floor; seed 0)")
