r"""
## P1 — the α threshold for alignment under small random init (SPEC R1; C3, C7)

Phase diagram: a measurement where the paper's theory is silent.

**Hypothesis.** The reconstructed R1 statement only asks for α "small enough (polynomially small in
d, κ, 1/λ\*)". We map where vanilla LoRA (A0 ~ N(0, α²), B0 = 0, plain GD) stops aligning A with
U_{r\*}(G♮), over α × d at fixed N/d, and locate the threshold α_c(d) above which the best alignment
reached, min_t align_A, exceeds ½. Below α_c the final alignment should sit on the sampling plateau
sinΘ(U_{r\*}(G♮), U\*) (C4); above it it should not.

**Derivation.** Two heuristics for α_c and two exact facts.
(i) *Linear phase* (SPEC R1 [D]). While ‖A_tB_t‖ ≪ ‖ΔW‖, A_t = (signal part in span U_{r\*}(G♮),
growing like (1 + ησ_i)^t) + P⊥A0, and P⊥A0 is frozen because rank G♮ = r\*. So
tan a(t) ≈ ‖P⊥A0‖_op/σ_{r\*}(signal part), with ‖P⊥A0‖_op ≈ α(√d + √r) (top singular value of a
d×r Gaussian block). The signal part stops growing when A_tB_t reaches ΔW, at σ_i(A) ≈ √λ\*_i for
balanced factors. The best alignment is therefore ≈ α(√d + √r)/√λ\*_{r\*}, which is O(1) at
α_h := √λ\*_{r\*}/(√d + √r). This fixes the d-dependence (slope −1 of ln α_c in ln(√d + √r)) but
not the O(1) constant.
(ii) *Level crossing at convergence* (ours, heuristic). align_A is the largest principal angle of A's
top-r\* left subspace. It jumps to ≈ 1 as soon as one spare direction of A outranks the weakest
signal direction: a level crossing, which predicts a sharp transition. Under gradient flow
AᵀA − BBᵀ = A0ᵀA0 =: C is conserved (under GD up to O(η)). At convergence AB = ΔW. In a signal
direction, a_ib_i = λ\*_i and a_i² − b_i² ≈ c ≈ α²d (the typical diagonal of C), so
a_{r\*}² = (α²d + √(α⁴d² + 4λ\*_{r\*}²))/2. The spare directions have B = 0 and keep C's
eigenvalues, whose top is α²m with m := (√d + √r)². Setting a_{r\*}² = α²m gives exactly
α_×⁴ = λ\*_{r\*}²/(m(m − d)). So α_× = α_h (m/(m − d))^{1/4} ≥ α_h, and for d ≫ r,
α_× ≈ √λ\* (2√r)^{−1/4} d^{−3/8}, a shallower d-dependence than α_h.
(iii) *Exact.* With B0 = 0 and noiseless labels, row(B_t) ⊆ row(ΔW) = row(G♮) for every t and
every α (SPEC R1 [D]). So align_B = 0 up to round-off in every run.
(iv) *GD stability.* At t = 0 the B-update is B ← B − ηA0ᵀΣ̂A0B + ηA0ᵀG♮. It is unstable when
η‖A0‖²_op(1 + √(d/N))² ≳ 2, i.e. α ≳ √(2/η)/((√d + √r)(1 + √(d/N))). That is the top corner of
the grid.

**Setup.** conf/claims/P01.yaml (paper scale): `LinearTeacher` with k = d, κ = 1 (λ\*_i = 1),
Gaussian W0, N = 16d (T1 scaled), r\* = 4, r = 8, and d ∈ {32, 64, 128, 256}. α runs over a log grid
1e-6 … 1 with 4 points per decade. A0 = αZ with one Z per (d, seed): common random numbers, so each
row is monotone in α. Plain GD (simultaneous) with η = 1/(16 σ1(G♮)) for 600 steps, metrics every
2 steps. 5 seeds (problem seed s, init seed 1000 + s). Per (d, seed), α_c comes from the bracketing
grid cell refined by 6 bisections in log α (0.004 decades). ci: d ∈ {16, 32}, r\* = 2, r = 4,
2 points per decade, 2 seeds.

**Measured.** Per grid point: min_t align_A and its step, final align_A, the plateau
sinΘ(U_{r\*}(G♮), U\*), final/plateau, final risk, status (`diverged` with its step), and align_B at
the last step. Per (d, seed): α_c (min_t align_A crossing ½) and α_c,final (final align_A crossing ½),
both by bisection, with α_h and α_×. Fits: ln α_c against ln(√d + √r) (per seed, then mean ± SE);
in the aligned phase (α ≤ 1e-2), ln min_t align_A against ln α and argmin_t against log10 α.

**Prediction.** None beyond the heuristics above: α_c ∝ α_h (slope −1) with an O(1) constant, or
α_c ≈ α_× (whose slope over this grid is −0.78). Further expectations: min_t align_A falls
monotonically as α falls, and its time grows linearly in ln(1/α) (SPEC C3); final align_A equals
the plateau below α_c; divergence only in the corner (iv).

**Pass rule.** The sweep completes and the recorded quantities are finite:
- every grid point has a status (a diverged point is a recorded phase, not a failure);
- every quantity of a non-diverged run is finite, and α_c is finite for every (d, seed).

Exact sanity check (iii): max align_B over non-diverged runs ≤ 1e-8. Round-off gives about 1e-14,
while any real misalignment of B would be O(1), so 1e-8 separates the two.

**Analysis.** Paper scale, 5 seeds, 620 runs, 1327 s on a loaded shared machine (138–159 s on one
thread before 0.2).
- **α_c per d.** α_c = 0.146 ± 0.003, 0.112 ± 0.004, 0.094 ± 0.003 and 0.074 ± 0.002 for
  d = 32, 64, 128, 256.
- **Against the heuristics.** α_c/α_h = 1.24, 1.22, 1.32, 1.39: not a constant, the ratio grows with
  d, and the per-seed slope of ln α_c in ln(√d + √r) is −0.84 ± 0.02 (under the old shared streams:
  1.30, 1.27, 1.24, 1.33 and −0.99 ± 0.04). So SPEC R1's linear-phase heuristic
  α(√d + √r) ≈ √λ\*_{r\*} gives the order of magnitude (threshold 1.2–1.4 α_h) but a slope that is too
  steep. The level-crossing α_× is closer both in absolute value (ratio 1.07, 1.00, 1.02, 1.01) and in
  slope (−0.78 against the measured −0.84; α_h's is −1).
- **The transition is sharp.** Seed-mean min_t align_A is 0.21–0.27 at α = 10^{−1.25} and
  0.98–1.00 at α = 10^{−0.5} for every d. The final alignment jumps with it: α_c,final = α_c to within
  the bisection for 20 of 20 (d, seed).
- **Aligned phase.** min_t align_A ∝ α^{0.59 ± 0.01}, from 5e-4–9e-4 at α = 1e-6 to 0.10–0.16 at
  α = 1e-2. It is reached 24.7 ± 0.3 steps later per decade of 1/α: linear in ln(1/α) as C3 says,
  but at 0.65 of the t\* formula's 38 steps per decade. Both fit a balance between a decaying
  ‖P⊥A0‖/s(t) and a tilt growing like s(t)², which gives α^{2/3} and 25 steps per decade; that
  balance is a heuristic, not a derivation. The final align_A equals the plateau (0.24–0.30) for
  α ≤ 10^{−1.5}. Just below α_c it sits above it (d = 64, α = 0.1: 0.40 against 0.27).
- **Above α_c.** Convergence slows too: the median risk after 600 steps is 3e-11…2e-6 one grid
  step above α_c and 3e-6…1.4 at α = 10^{−0.5}. GD diverged in 20 runs: at α = 1 for d ≥ 64 (all
  seeds), and at α ≥ 10^{−0.25} for d = 256. That fits (iv)
  within its factor-of-about-1.3 accuracy.
- **Exact check.** max align_B = 3e-14.

At ci scale (d ∈ {16, 32}, r\* = 2, r = 4, 2 seeds; before 0.2's streams, not rerun since):
α_c = 0.257, 0.193, α_c/α_h = 1.54, 1.48, 12–17 s on one thread.

**Command.** `lorasim-verify only=[P1] scale=paper`
"""
import math

import numpy as np
import pandas as pd
import torch

import lorasim
from lorasim.fitting import linear_fit, loglog_fit, mean_se

from .kit import Checks, ClaimSettings, heatmap, parse, text_table
from .numerics import bisect, first_crossing, sampling_tilt

TITLE = "α threshold for alignment (phase diagram α × d)"
RESULT = "R1"
FIGURE = "p01_alpha_threshold.png"


class Settings(ClaimSettings):
    ds: list
    r_star: int
    rank: int
    n_over_d: int
    lr_times_sigma1: float
    steps: int
    log_every: int
    log10_alpha_min: float
    log10_alpha_max: float
    points_per_decade: int
    threshold: float
    bisect_steps: int
    seeds: int


def alpha_heuristic(d: int, r: int, lam: float) -> float:
    """SPEC R1's linear-phase heuristic: alignment is lost once ‖P⊥A0‖ ≈ α(√d + √r) reaches √λ*_{r*}."""
    return math.sqrt(lam) / (math.sqrt(d) + math.sqrt(r))


def alpha_crossing(d: int, r: int, lam: float) -> float:
    """Level crossing at convergence: the weakest signal singular value of A, s² = (α²d + √(α⁴d² + 4λ²))/2,
    equals the top of the spare spectrum α²(√d + √r)²; solved exactly: α⁴ = λ²/(m(m − d)), m = (√d + √r)²."""
    m = (math.sqrt(d) + math.sqrt(r)) ** 2
    return (lam**2 / (m * (m - d))) ** 0.25


def _run_point(prob, rank, alpha, init_seed, lr, steps, log_every):
    traj = lorasim.train(prob, init="small_random", rank=rank, init_kwargs={"alpha": float(alpha)},
                         init_seed=init_seed, solver="gd", lr=lr, steps=steps, log_every=log_every)
    df = traj.to_frame()
    s = traj.summary()
    ok = traj.status == "ok"
    return {
        "status": traj.status,
        "diverged_step": traj.diverged_step if traj.diverged_step is not None else -1,
        "risk_0": float(df["risk"].iloc[0]),
        "risk_final": s["risk_final"] if ok else math.nan,
        "align_A_min": s["align_A_min"],
        "align_A_argmin": s["align_A_argmin"],
        "align_A_final": s["align_A_final"] if ok else math.nan,
        "align_B_final": float(df["align_B"].iloc[-1]) if ok else math.nan,
    }


def _final_or_one(rec):
    return rec["align_A_final"] if rec["status"] == "ok" else 1.0


def _bisect(log_alpha, values, thr, iters, probe):
    """The grid crossing of ``values`` above ``thr``, refined by bisection in log10 α with ``probe``
    (the alignment quantities are monotone in α on the grid: the same Z draws, A0 = αZ)."""
    la, bracket = first_crossing(log_alpha, values, thr)
    return la if bracket is None else bisect(lambda m: probe(m) > thr, *bracket, iters)


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    ds, r_star, rank = cfg.ds, cfg.r_star, cfg.rank
    steps, log_every, thr = cfg.steps, cfg.log_every, cfg.threshold
    lo, hi = cfg.log10_alpha_min, cfg.log10_alpha_max
    log_alpha = np.round(np.linspace(lo, hi, round((hi - lo) * cfg.points_per_decade) + 1), 6)
    rows, thresholds = [], []
    for d in ds:
        n = cfg.n_over_d * d
        for seed in range(cfg.seeds):
            prob = lorasim.LinearTeacher(d=d, k=d, r_star=r_star, n=n, kappa=1.0, seed=seed, device=cfg.device)
            S = torch.linalg.svd(prob.G, full_matrices=False)[1]
            sigma1, sigma_rs = float(S[0]), float(S[r_star - 1])
            tilt = sampling_tilt(prob)
            lam = float(prob.S_star[-1])
            lr = cfg.lr_times_sigma1 / sigma1

            def probe(la, prob=prob, init_seed=1000 + seed, lr=lr):
                return _run_point(prob, rank, 10.0**la, init_seed, lr, steps, log_every)

            grid = []
            for la in log_alpha:
                rec = probe(la)
                rec.update(d=d, n=n, seed=seed, log10_alpha=float(la), alpha=float(10.0**la), plateau=tilt,
                           final_over_plateau=rec["align_A_final"] / tilt, sigma1_G=sigma1, sigma_rstar_G=sigma_rs)
                grid.append(rec)
            rows += grid
            mins, finals = [g["align_A_min"] for g in grid], [_final_or_one(g) for g in grid]
            la_c = _bisect(log_alpha, mins, thr, cfg.bisect_steps, lambda la: probe(la)["align_A_min"])
            la_f = _bisect(log_alpha, finals, thr, cfg.bisect_steps, lambda la: _final_or_one(probe(la)))
            thresholds.append({"d": d, "seed": seed, "alpha_c_min": 10.0**la_c, "alpha_c_final": 10.0**la_f,
                               "alpha_heuristic": alpha_heuristic(d, rank, lam),
                               "alpha_crossing": alpha_crossing(d, rank, lam), "plateau": tilt})
    df = pd.DataFrame(rows)[["d", "n", "seed", "log10_alpha", "alpha", "status", "diverged_step", "risk_0",
                             "risk_final", "align_A_min", "align_A_argmin", "align_A_final", "plateau",
                             "final_over_plateau", "align_B_final", "sigma1_G", "sigma_rstar_G"]]
    th = pd.DataFrame(thresholds)
    th["ratio_heuristic"] = th["alpha_c_min"] / th["alpha_heuristic"]
    th["ratio_crossing"] = th["alpha_c_min"] / th["alpha_crossing"]

    # Fits: ln α_c against ln(√d + √r), per seed (the heuristic says slope −1), and the aligned-phase
    # power law of min align_A in α (seed-mean, points below the threshold and α ≤ 1e-2).
    fits, slopes = [], []
    x_h = np.sqrt(th["d"]) + math.sqrt(rank)
    th["sqrt_d_plus_sqrt_r"] = x_h
    if len(ds) >= 2:
        for seed, g in th.groupby("seed"):
            f = loglog_fit(np.sqrt(g["d"]) + math.sqrt(rank), g["alpha_c_min"], "√d+√r", "α_c")
            slopes.append(f.slope)
        fits.append(loglog_fit(x_h, th["alpha_c_min"], "√d+√r", "α_c (all seeds)"))
    slope_m, slope_se = mean_se(slopes) if slopes else (math.nan, math.nan)
    ok_rows = df[df["status"] == "ok"]
    small = ok_rows[(ok_rows["alpha"] <= 1e-2) & (ok_rows["align_A_min"] < thr)]
    pw = tfit = None
    if small["alpha"].nunique() >= 3:
        gm = small.groupby("alpha")["align_A_min"].mean()
        pw = loglog_fit(gm.index.to_numpy(), gm.to_numpy(), "α", "min_t align_A")
        fits.append(pw)
        ga = small.groupby("log10_alpha")["align_A_argmin"].mean()
        tfit = linear_fit(ga.index.to_numpy(), ga.to_numpy(), "log10 α", "argmin_t align_A")
        fits.append(tfit)
    x_fit = loglog_fit(th["sqrt_d_plus_sqrt_r"], th["alpha_crossing"], "√d+√r", "α_×") if len(ds) >= 2 else None

    # Sanity: every grid point ran; quantities finite where the run did not diverge; B's row space is
    # exactly row(G♮) (B0 = 0, noiseless): align_B ≤ 1e-8 at the last step of every converged run.
    finite_cols = ["risk_final", "align_A_min", "align_A_final", "align_B_final", "plateau"]
    checks = Checks()
    checks.add("complete", len(df) == len(ds) * cfg.seeds * len(log_alpha), f"{len(df)} grid points ran")
    checks.add("finite", np.isfinite(ok_rows[finite_cols].to_numpy()).all() and np.isfinite(df["align_A_min"]).all(),
               "a non-finite quantity in a converged run")
    checks.add("thresholds found", np.isfinite(th["alpha_c_min"]).all(), "no α_c in some (d, seed)")
    max_b = float(ok_rows["align_B_final"].max())
    checks.add("align_B exact", max_b <= 1e-8, f"max align_B {max_b:.1g} > 1e-8")

    per_d = th.groupby("d").agg(alpha_c=("alpha_c_min", "mean"), alpha_c_se=("alpha_c_min", "sem"),
                                alpha_c_final=("alpha_c_final", "mean"), alpha_h=("alpha_heuristic", "mean"),
                                alpha_x=("alpha_crossing", "mean"), plateau=("plateau", "mean"))
    per_d["ratio_h"] = per_d["alpha_c"] / per_d["alpha_h"]
    per_d["ratio_x"] = per_d["alpha_c"] / per_d["alpha_x"]
    per_d = per_d.reset_index()
    n_div = int((df["status"] != "ok").sum())
    measured = (f"α_c(min align_A > {thr:.2g}): "
                + ", ".join(f"d={int(r.d)} {r.alpha_c:.3g}" for r in per_d.itertuples())
                + "; α_c/α_h " + ", ".join(f"{r.ratio_h:.2f}" for r in per_d.itertuples())
                + "; α_c/α_× " + ", ".join(f"{r.ratio_x:.2f}" for r in per_d.itertuples())
                + (f"; slope ln α_c vs ln(√d+√r) {slope_m:.2f} ± {slope_se:.2f} (α_h: −1, α_×: {x_fit.slope:.2f})"
                   if slopes else "")
                + (f"; aligned phase: min align ∝ α^{pw.slope:.2f}, argmin {-tfit.slope:.1f} steps per decade of 1/α "
                   f"(t* formula: {math.log(10) / math.log1p(cfg.lr_times_sigma1):.1f})" if pw is not None else "")
                + f"; {n_div} diverged; max align_B {max_b:.1g}")
    notes = ("Thresholds per d (seed mean; α_c by bisection on min_t align_A, α_c_final likewise on the "
             "final align_A; α_h = √λ*_{r*}/(√d+√r), α_× the level-crossing formula):\n\n"
             + text_table(per_d, fence=True) + "\n\nPer seed:\n\n" + text_table(th, fence=True))
    _figure(ctx, df, per_d, log_alpha, thr, cfg)
    return checks.verdict(
        prediction="none beyond heuristics: α_c ≈ α_h = √λ*/(√d+√r) (R1 linear phase) or α_× (level crossing); "
                   "sweep completes, finite, align_B ≤ 1e-8",
        measured=measured, fits=fits, table=df, figures=[FIGURE], notes=notes)


def _figure(ctx, df, per_d, log_alpha, thr, cfg):
    ds = cfg.ds
    mean = df.groupby(["d", "log10_alpha"]).agg(
        amin=("align_A_min", "mean"), ratio=("final_over_plateau", "mean"),
        div=("status", lambda s: float((s != "ok").mean()))).reset_index()
    cells = mean.pivot(index="d", columns="log10_alpha").reindex(index=ds)  # one row per d, one column per α
    A, R, D = (cells[q].reindex(columns=log_alpha).to_numpy() for q in ("amin", "ratio", "div"))
    nd, na = A.shape
    with ctx.figure(FIGURE, ncols=3, figsize=(17, 4.6)) as (fig, axes):
        for ax, M, label, kw in ((axes[0], A, "min_t align_A (seed mean)", {"vmin": 0, "vmax": 1, "cmap": "viridis"}),
                                 (axes[1], R, r"final align$_A$ / plateau $\sin\Theta(U_{r^*}(G^\natural), U^*)$",
                                  {"vmin": 1, "vmax": 4, "cmap": "magma"})):
            heatmap(fig, ax, log_alpha, M, label, [f"d={d}" for d in ds], **kw)
            for i in range(nd):
                for j in range(na):
                    if D[i, j] > 0:
                        ax.text(log_alpha[j], i, "D" if D[i, j] == 1 else f"{D[i, j]:.1f}", ha="center", va="center",
                                color="red", fontsize=8, fontweight="bold")
            for i, r in enumerate(per_d.itertuples()):
                if np.isfinite(r.alpha_c) and r.alpha_c > 0:
                    ax.plot(math.log10(r.alpha_c), i, "wo", ms=7, mec="k", label="α_c (bisection)" if i == 0 else None)
                ax.plot(math.log10(r.alpha_h), i, "c|", ms=16, mew=2.5, label="α_h = √λ/(√d+√r)" if i == 0 else None)
                ax.plot(math.log10(r.alpha_x), i, "rx", ms=9, mew=2, label="α_× level crossing" if i == 0 else None)
            ax.set_xlabel("log10 α  (A0 ~ N(0, α²))")
            ax.legend(fontsize=7, loc="lower left")
        axes[0].set_title("(a) best alignment reached (D = GD diverged)")
        axes[1].set_title("(b) final alignment relative to the sampling plateau")
        ax = axes[2]
        for i, d in enumerate(ds):
            line, = ax.plot(log_alpha, A[i], "o-", ms=3, label=f"d={d}")
            a_c = float(per_d["alpha_c"].iloc[i])
            if np.isfinite(a_c) and a_c > 0:
                ax.axvline(math.log10(a_c), color=line.get_color(), ls=":", lw=1)
        ax.axhline(thr, color="k", lw=0.8, ls="--")
        ax.set(xlabel="log10 α", ylabel="min_t align_A", title="(c) min_t align_A vs α (dotted: α_c)")
        ax.legend(fontsize=8)
        fig.suptitle(f"P1: vanilla LoRA (A0 ~ N(0, α²), B0 = 0), GD with η = {cfg.lr_times_sigma1:g}/σ1(G); "
                     f"N = {cfg.n_over_d}d, k = d, r* = {cfg.r_star}, r = {cfg.rank}, κ = 1; {cfg.seeds} seeds")
