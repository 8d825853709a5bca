r"""
## C18 — Scaled AdamW (`AdamWr`) preconditioning equals lorasim's `scaled_adam`  (SPEC §6.3 (b), §1.4, §9 C18)

**Hypothesis.** LoRA-One's deleted preconditioned optimiser `AdamWr` (pilancilab's, copied into
`prec_logTrainer.py`) — parameters in consecutive pairs (lora_A, lora_B); g_A ← (lora_Bᵀlora_B +
reg·I)⁻¹∇lora_A, Adam moments on g_A (β = (0.9, 0.999), ε = 10⁻⁸, no bias correction), update lora_A;
then g_B ← ∇lora_B(lora_A lora_Aᵀ + reg·I)⁻¹ with the *already updated* lora_A (Gauss–Seidel), Adam,
update lora_B; reg = 10⁻⁶ — is lorasim's solver `scaled_adam` with its defaults, in paper layout
through `lorasim.peft_convention`. `order="simultaneous"` uses the old lora_A instead, and bias
correction is off by default.

**Derivation.** Map A = √s·lora_Aᵀ, B = √s·lora_Bᵀ (SPEC §1.1). The chain rule gives
∇lora_A = √s(∇_A L)ᵀ and ∇lora_B = √s(∇_B L)ᵀ; the Grams are lora_Bᵀlora_B = BBᵀ/s and
lora_A lora_Aᵀ = AᵀA/s, so (BBᵀ/s + reg·I)⁻¹ = s(BBᵀ + s·reg·I)⁻¹ and

  g_A^torch = s^{3/2}[∇_A(BBᵀ + s·reg·I)⁻¹]ᵀ,   g_B^torch = s^{3/2}[(AᵀA + s·reg·I)⁻¹∇_B]ᵀ,

i.e. the paper-layout ScaledGD(λ) gradients (SPEC R3) with λ = s·reg, times c = s^{3/2}. Adam acts
entrywise (transposes commute) and m/(√v + ε) computed from c·g equals m/(√v + ε/c) from g. The update
lora_A −= lr·dir becomes A −= √s·lr·dirᵀ. Hence AdamWr on (lora_A, lora_B) with (lr, reg, ε) is
`scaled_adam` on (A, B) with (lr·√s, damping s·reg, eps ε/s^{3/2}); with s = 1 all three are unchanged.
Gauss–Seidel survives the map because A_new = √s·lora_A,newᵀ. With bias correction, AdamWr uses the
HF-transformers form lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε), while a textbook Adam uses m̂/(√v̂ + ε): they
differ only through ε (effective ε·√(1−β₂ᵗ) vs ε), so they coincide exactly at ε = 0.

Discrimination: at step 1 Adam's direction is m/√v = sign(g)/√(1−β₂)·(1−β₁) ≈ 3.16·sign(g), so the
update order is invisible at t = 1 (the preconditioner rescales but does not flip g) and shows from
t = 2; without bias correction the first step is 3.16·lr per entry, with it lr — a factor √1000/10.

**Setup.** conf/claims/C18.yaml: a tiny peft-like `torch.nn.Module` (frozen `weight` out×in,
`lora_A` r×in then `lora_B` out×r, forward x ↦ Wx + s·lora_B lora_A x), least-squares loss on
synthetic data (N samples), both adapters random (so both Grams are invertible and non-trivial), own
`AdamWr` (written from SPEC §6.3 (b) and pilancilab's code: `torch.inverse`, ε added to √v, optional
HF-style bias correction, Gauss–Seidel switch), autograd gradients. lorasim: `LinearTeacher.from_arrays
(X, Y, W0 = weightᵀ)` and `lorasim.train(..., solver="scaled_adam", keep_factors=True)` from
A0, B0 = `from_peft(lora_A0, lora_B0, s)`; the transform `lorasim.solvers.precondition` for the one-step
gradient check.

**Measured.** Max over steps of the relative factor difference (torch layout, via `to_peft`) between
lorasim and the own AdamWr for: defaults (s = 1); `order="simultaneous"` vs own simultaneous; defaults
vs own simultaneous and vs own bias-corrected (must differ); bias correction on with ε = 0 (equal)
and with ε = 10⁻⁸ (the ε-placement gap); s = α_L/√r with the mapped (lr, damping, eps). At the initial
point: precondition's update of g_A (partner B0) and of g_B (partner A_new) vs (lora_Bᵀlora_B + λI)⁻¹g_A
and g_B(A_new A_newᵀ + λI)⁻¹.

**Prediction.** Equal to round-off where the rules coincide; O(lr) differences where they do not.

**Pass rule.** "Equal" means ≤ tol = 10·T·u·κ·ρ (u = 2.2·10⁻¹⁶, T steps, κ = largest condition number
of the damped Grams along the run, ρ = largest ‖g‖_∞/min_i|g_i| of the preconditioned gradients, the
entrywise error amplification of Adam's m/√v normalisation): a worst-case accumulation of per-step
round-off. "Differ" means > 100·tol. Measured: equal cases ≤ 2.7·10⁻¹⁵ at ci (10 steps) and
≤ 1.5·10⁻¹⁴ at paper (50 steps) against tol 7·10⁻¹¹–2·10⁻⁶; the differing cases are ≥ 10⁻² apart.

**Mutations.** Planted bugs in lorasim's solver (the code under test): `bias_correction_on` (Adam's bias
correction applied although the default is off: the first step is lr instead of ≈ 3.16·lr; rule "equal:
default_vs_adamwr"); `simultaneous_order` (B preconditioned with the old A, the Gauss–Seidel order
ignored: visible from t = 2, rule "equal: default_vs_adamwr"); `eps_inside_sqrt` (m/√(v + ε) instead of
m/(√v + ε): relative change ≈ ε/(2v) ≫ tol; rule "equal: default_vs_adamwr" and the other ε = 10⁻⁸ cases;
the ε = 0 case is untouched).
"""
import math

import numpy as np
import pandas as pd
import torch

import lorasim
import lorasim.solvers
from lorasim import streams
from lorasim.peft_convention import from_peft, to_peft
from lorasim.solvers import precondition

from .kit import Checks, ClaimSettings, Mutation, parse, patched, span

TITLE = "Scaled AdamW = scaled_adam"
RESULT = "§6.3"
FIGURE = "c18_scaled_adamw.png"
SAME = ["default_vs_adamwr", "simultaneous_vs_own_simultaneous", "bias_corrected_eps0", "rslora_scale_mapped",
        "precond_grad_A", "precond_grad_B_new_A"]  # equal to round-off
DIFFER = ["default_vs_own_simultaneous", "default_vs_own_bias_corrected"]  # O(lr) apart


def _adam_always_bias_corrected(g, m, v, t, beta1, beta2, eps, bias_correction):
    return _ADAM(g, m, v, t, beta1, beta2, eps, True)


def _adam_eps_inside(g, m, v, t, beta1, beta2, eps, bias_correction):
    """Adam with ε under the square root: m/√(v + ε)."""
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    if bias_correction:
        m, v = m / (1 - beta1**t), v / (1 - beta2**t)
    return m / (v + eps).sqrt()


def _always_simultaneous(self, A, B, gA, gB, state):
    """Solver.step_ (the in-place update the engine takes, and ``step``'s) with B's preconditioner built from
    the old A whatever the order says."""
    state["t"] += 1
    dA = self.direction("A", gA, state, B)
    dB = self.direction("B", gB, state, A)
    A.sub_(dA)
    B.sub_(dB)


_ADAM = lorasim.solvers.adam_direction
MUTATIONS = {
    "bias_correction_on": Mutation("lorasim's Adam applies bias correction even when it is off",
                                   patched(lorasim.solvers, "adam_direction", _adam_always_bias_corrected)),
    "simultaneous_order": Mutation("lorasim's pair step ignores Gauss–Seidel (B preconditioned with the old A)",
                                   patched(lorasim.solvers.Solver, "step_", _always_simultaneous)),
    "eps_inside_sqrt": Mutation("lorasim's Adam puts ε under the square root, m/√(v + ε)",
                                patched(lorasim.solvers, "adam_direction", _adam_eps_inside)),
}


class Settings(ClaimSettings):
    inn: int
    out: int
    r: int
    n: int
    steps: int
    lr: float
    reg: float
    lora_alpha: float
    seeds: int


class PeftLikeLinear(torch.nn.Module):
    """A frozen out×in weight plus a LoRA pair registered in peft's order (lora_A, then lora_B)."""

    def __init__(self, weight, lora_A, lora_B, s):
        super().__init__()
        self.register_buffer("weight", weight.clone())
        self.lora_A = torch.nn.Parameter(lora_A.clone())
        self.lora_B = torch.nn.Parameter(lora_B.clone())
        self.s = s

    def forward(self, x):
        return x @ self.weight.T + self.s * (x @ self.lora_A.T) @ self.lora_B.T


class AdamWr:
    """AdamWr as in pilancilab / LoRA-One's prec_logTrainer.py, over consecutive parameter pairs."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, reg=1e-6, correct_bias=False, gauss_seidel=True):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps, self.reg = lr, betas, eps, reg
        self.correct_bias, self.gauss_seidel = correct_bias, gauss_seidel
        self.state = [{"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p)} for p in self.params]
        self.last = []  # (preconditioned grads, Gram condition numbers) of the last step

    @torch.no_grad()
    def step(self):
        self.last = []
        for i in range(0, len(self.params), 2):
            p1, p2 = self.params[i], self.params[i + 1]
            eye = torch.eye(p1.shape[0], dtype=p1.dtype, device=p1.device)
            old_p1 = p1.detach().clone()
            gram_B = p2.T @ p2 + self.reg * eye
            g1 = torch.inverse(gram_B) @ p1.grad
            self._adam(i, p1, g1)
            c1 = p1 if self.gauss_seidel else old_p1  # AdamWr reads p1.data after its in-place update
            gram_A = c1 @ c1.T + self.reg * eye
            g2 = p2.grad @ torch.inverse(gram_A)
            self._adam(i + 1, p2, g2)
            self.last.append((g1.clone(), g2.clone(), float(torch.linalg.cond(gram_B)), float(torch.linalg.cond(gram_A))))

    def _adam(self, i, p, g):
        st = self.state[i]
        st["step"] += 1
        st["m"].mul_(self.b1).add_(g, alpha=1 - self.b1)
        st["v"].mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        step = self.lr
        if self.correct_bias:
            step = step * math.sqrt(1 - self.b2 ** st["step"]) / (1 - self.b1 ** st["step"])
        p.addcdiv_(st["m"], st["v"].sqrt().add_(self.eps), value=-step)


def own_run(X, Y, weight, lA0, lB0, s, steps, **kw):
    mod = PeftLikeLinear(weight, lA0, lB0, s)
    opt = AdamWr(mod.parameters(), **kw)
    traj, kappa, rho = [(lA0.clone(), lB0.clone())], 1.0, 1.0
    for _ in range(steps):
        mod.zero_grad()
        (0.5 * ((mod(X) - Y) ** 2).sum() / X.shape[0]).backward()
        opt.step()
        g1, g2, k1, k2 = opt.last[0]
        kappa = max(kappa, k1, k2)
        rho = max(rho, *(float(g.abs().max() / g.abs().min()) for g in (g1, g2)))
        traj.append((mod.lora_A.detach().clone(), mod.lora_B.detach().clone()))
    return traj, kappa, rho


def step_diffs(tr, ref, s):
    """Per step, the relative differences of lorasim's (lora_A, lora_B) (torch layout) from the reference's."""
    return [(float((LA - la).norm() / la.norm()), float((LB - lb).norm() / lb.norm()))
            for (LA, LB), (la, lb) in zip((to_peft(A, B, s) for _, A, B in tr.factors), ref)]


def max_diff(tr, ref, s):
    return max(0.0, *(v for pair in step_diffs(tr, ref, s) for v in pair))


def run(settings, ctx):
    cfg = parse(Settings, settings, ctx)
    inn, out, r, T, lr, reg, dev = cfg.inn, cfg.out, cfg.r, cfg.steps, cfg.lr, cfg.reg, cfg.device
    u = torch.finfo(torch.float64).eps
    rows, curves = [], {}
    for seed in range(cfg.seeds):
        def rnd(what, *shape, scale=1.0):  # each array from a stream of its own (lorasim.streams)
            g = streams.generator(seed, f"theory/c18/{what}")
            return scale * torch.randn(*shape, generator=g, dtype=torch.float64).to(dev)

        X, W = rnd("X", cfg.n, inn), rnd("W0", out, inn)
        Y = X @ (W + 0.5 * rnd("delta", out, inn)).T
        lA0, lB0 = rnd("lora_A", r, inn, scale=0.3), rnd("lora_B", out, r, scale=0.3)
        prob = lorasim.LinearTeacher.from_arrays(X=X, Y=Y, W0=W.T, device=dev)

        def ours(s=1.0, **kw):
            return own_run(X, Y, W, lA0, lB0, s, T, lr=lr, reg=reg, **kw)

        def lorasim_run(s=1.0, **kw):
            A0, B0 = from_peft(lA0, lB0, s)
            return lorasim.train(prob, A0=A0, B0=B0, solver="scaled_adam", steps=T, keep_factors=True, **kw)

        ref_gs, kap, rho = ours()
        ref_sim, k2, r2 = ours(gauss_seidel=False)
        ref_bc, _, _ = ours(correct_bias=True)
        ref_bc0, _, _ = ours(correct_bias=True, eps=0.0)
        s = cfg.lora_alpha / math.sqrt(r)
        ref_s, k3, r3 = ours(s=s)
        kap, rho = max(kap, k2, k3), max(rho, r2, r3)
        tol = 10 * T * u * kap * rho

        default = lorasim_run(lr=lr)  # defaults: damping 1e-6, gauss_seidel, no bias correction, eps 1e-8
        sim = lorasim_run(lr=lr, order="simultaneous")
        bc0 = lorasim_run(lr=lr, bias_correction=True, eps=0.0)
        bc = lorasim_run(lr=lr, bias_correction=True)
        mapped = lorasim_run(s=s, lr=math.sqrt(s) * lr, damping=s * reg, eps=1e-8 / s**1.5)

        # one-step preconditioned gradients at the initial point (paper layout ↔ torch layout)
        A0, B0 = lA0.T, lB0.T
        gA, gB = prob.grads(A0, B0)
        P = precondition(reg)
        eye = torch.eye(r, dtype=torch.float64, device=dev)
        own_gA = torch.linalg.inv(lB0.T @ lB0 + reg * eye) @ gA.T
        pre_gA = P.update("A", gA, {}, B0, 1)
        A_new = A0 - 0.1 * pre_gA  # any updated A: B's update must use the one it is given
        own_gB = gB.T @ torch.linalg.inv(A_new.T @ A_new + reg * eye)
        pre_A = float((pre_gA.T - own_gA).norm() / own_gA.norm())
        pre_B = float((P.update("B", gB, {}, A_new, 1).T - own_gB).norm() / own_gB.norm())

        same = {
            "default_vs_adamwr": max_diff(default, ref_gs, 1.0),
            "simultaneous_vs_own_simultaneous": max_diff(sim, ref_sim, 1.0),
            "bias_corrected_eps0": max_diff(bc0, ref_bc0, 1.0),
            "rslora_scale_mapped": max_diff(mapped, ref_s, s),
            "precond_grad_A": pre_A, "precond_grad_B_new_A": pre_B,
        }
        differ = {
            "default_vs_own_simultaneous": max_diff(default, ref_sim, 1.0),
            "default_vs_own_bias_corrected": max_diff(default, ref_bc, 1.0),
        }
        eps_gap = max_diff(bc, ref_bc, 1.0)
        rows.append({"seed": seed, "tol": tol, "kappa": kap, "rho": rho, **same, **differ,
                     "bias_corrected_eps_1e-8 (ε placement)": eps_gap})
        if seed == 0:
            curves = {"lorasim default vs AdamWr": (default, ref_gs, 1.0),
                      "lorasim default vs own simultaneous": (default, ref_sim, 1.0),
                      "lorasim default vs own bias-corrected": (default, ref_bc, 1.0),
                      "lorasim simultaneous vs own simultaneous": (sim, ref_sim, 1.0),
                      f"rsLoRA s={s:.2f}, mapped": (mapped, ref_s, s)}
    tab = pd.DataFrame(rows)
    checks = Checks()
    for col in SAME:
        checks.add(f"equal: {col}", (tab[col] <= tab["tol"]).all(), f"max {tab[col].max():.1e}, tol {tab['tol'].min():.1e}")
    for col in DIFFER:
        checks.add(f"differ: {col}", (tab[col] > 100 * tab["tol"]).all(),
                   f"min {tab[col].min():.1e} ≤ 100·tol {100 * tab['tol'].max():.1e}")
    _figure(ctx, curves)
    return checks.verdict(
        prediction="lorasim scaled_adam (defaults; simultaneous; s-mapped) = own AdamWr to round-off; "
                   "differs from simultaneous / bias-corrected AdamWr",
        measured=(f"equal cases max {tab[SAME].max().max():.1e} (tol {span(tab['tol'], '.1e')}); "
                  f"default vs simultaneous {tab['default_vs_own_simultaneous'].min():.1e}, vs bias-corrected "
                  f"{tab['default_vs_own_bias_corrected'].min():.1e}; ε-placement gap with bias correction "
                  f"{tab['bias_corrected_eps_1e-8 (ε placement)'].max():.1e}"),
        table=tab, figures=[FIGURE],
        notes=("With bias_correction=True lorasim uses m̂/(√v̂ + ε); AdamWr (HF AdamW) uses "
               "lr·√(1−β₂ᵗ)/(1−β₁ᵗ)·m/(√v + ε). Identical at ε = 0 (checked), O(ε/√v̂) apart otherwise "
               "(column 'ε placement'); the official default has bias correction off, where they agree exactly."))


def _figure(ctx, curves):
    with ctx.figure(FIGURE, dpi=120, figsize=(6.4, 4.4)) as (fig, ax):
        for label, (tr, ref, s) in curves.items():
            diffs = [max(a, b, 1e-17) for a, b in step_diffs(tr, ref, s)[1:]]
            ax.semilogy(np.arange(1, len(diffs) + 1), diffs, "o-", ms=3, label=label)
        ax.set_xlabel("step t"), ax.set_ylabel("relative factor difference (torch layout)")
        ax.set_title("C18: lorasim scaled_adam vs an independent AdamWr")
        ax.legend(fontsize=7)
