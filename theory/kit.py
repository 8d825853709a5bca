"""The claim kit (not a claim): settings, pass rules, report text and, with ``lorasim.verify.Context.figure``,
figures. How a claim uses it: theory/README.md, "Writing a claim"; shared numerics: theory/numerics.py.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional
from unittest import mock

import numpy as np

import lorasim
from lorasim.config import fail
from lorasim.verify import Verdict


def is_integer(x) -> bool:
    """An integer setting as yaml or an override gives it: an int, not a bool (3.5 and '4' are refused)."""
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(kw_only=True)
class ClaimSettings:
    """Base of a claim's ``Settings``, whose fields are the keys of its conf/claims/CNN.yaml blocks. A subclass
    is made a (keyword-only) dataclass where it is defined: it needs no ``@dataclass`` of its own."""

    device: str = "cpu"  # lorasim-verify's device=, unless the yaml block pins one
    dtype: Optional[str] = None  # lorasim-verify's dtype=: the teachers' dtype (None: the claim's own)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        dataclass(kw_only=True)(cls)

    def refused(self) -> Optional[tuple]:
        """(key, allowed) for a setting that is out of range given the others, else None. ``parse`` checks it, so a
        bad value is refused in one line before any claim computes (lorasim-verify's validation, exit code 2).
        Here: a calibrated tolerance's ``calibration_seeds``, where a claim has one (a spread needs two values)."""
        n = getattr(self, "calibration_seeds", None)
        if n is not None and not (is_integer(n) and n >= 2):
            return "calibration_seeds", "an integer ≥ 2 (the calibration's spread needs two instances)"
        return None

    @property
    def eps(self) -> float:
        """Machine epsilon of the products the teachers' computations run in: float64's without ``dtype=``,
        float32's under ``dtype=float32``, and tf32's 2^-10 (10 stored mantissa bits) under ``dtype=tf32``
        on CUDA, where lorasim's training products use the tensor cores (on the CPU tf32 is float32). A
        round-off bound on a computation in the teachers' dtype is written with this, not with float64's
        ``numerics.EPS``, so that it is the same derivation at every dtype."""
        return eps_of(self.dtype or "float64", self.device)

    @property
    def storage_eps(self) -> float:
        """Machine epsilon of the dtype the teachers are built and stored in: ``eps`` except under tf32, whose
        teachers are float32 (lorasim uses tf32 only in training's products). The unit of a bound on G♮, Σ̂
        or anything a claim computes itself outside training."""
        return eps_of(self.dtype or "float64", "cpu")


class TeacherSettings(ClaimSettings):
    """A claim on teachers of one shape (d, k, r*), repeated over ``seeds`` seeds."""

    d: int
    k: int
    r_star: int
    seeds: int

    def teacher(self, seed: int, relu: bool = False, **kw):
        """The ``lorasim.LinearTeacher`` (``relu``: ``ReLUTeacher``) of this shape at ``seed``; ``kw``: n, kappa, …
        In the run's ``dtype`` where one is set and ``kw`` names none; the dtype built is recorded in
        ``TEACHER_DTYPES`` (the runner reports it per claim)."""
        cls = lorasim.ReLUTeacher if relu else lorasim.LinearTeacher
        if self.dtype is not None:
            kw.setdefault("dtype", self.dtype)
        prob = cls(d=self.d, k=self.k, r_star=self.r_star, seed=seed, device=self.device, **kw)
        TEACHER_DTYPES.add(prob.config.dtype)
        return prob


def eps_of(dtype: str, device: str = "cpu") -> float:
    """Machine epsilon of ``dtype`` (float64 | float32 | tf32) as lorasim runs it on ``device``."""
    if dtype == "tf32" and str(device).startswith("cuda"):
        return 2.0**-10
    return float(np.finfo({"float64": np.float64, "float32": np.float32, "tf32": np.float32}[dtype]).eps)


TEACHER_DTYPES: set = set()  # the dtypes of the teachers built by the running claim (lorasim.verify.run_claim)


@dataclass(frozen=True)
class Mutation:
    """A wrong theory or a planted bug that a claim's pass rule must catch (``lorasim-verify mutate=true``).

    It changes the code path under test, never the pass rule: either ``patch`` (a function returning a
    context manager, e.g. ``patched(lorasim.inits, "lora_one", wrong)``) is applied around the claim's
    ``run``, or the claim's measurement code reads the flag ``ctx.mutant(name)``."""

    what: str  # one line: what is wrong
    patch: Optional[Callable[[], ContextManager]] = None
    # The rules (name prefixes, e.g. "(vi)") that must be among the failed ones: a mutation that only another rule
    # catches has escaped the rule meant for it (``lorasim.verify.mutation_outcome``).
    caught_by: tuple = ()


def patched(owner, attribute: str, replacement) -> Callable[[], ContextManager]:
    """A ``Mutation.patch`` that replaces ``owner.attribute`` (a module's function, a class's method) while the claim runs."""
    return lambda: mock.patch.object(owner, attribute, replacement)


def inits_replaced(**replacements) -> Callable[[], ContextManager]:
    """A ``Mutation.patch`` that swaps named entries of lorasim's init table (``small_random=wrong``)."""
    return lambda: mock.patch.dict(lorasim.inits.INITS, replacements)


def fan_in_small_random(problem, rank, generator, cfg):
    """A planted init bug for ``inits_replaced(small_random=...)``: A0 ~ N(0, α²/d) (the fan-in convention) instead of
    the theory's N(0, α²)."""
    got = _SMALL_RANDOM(problem, rank, generator, cfg)
    return lorasim.inits.Init(got.A / math.sqrt(problem.d), got.B)


_SMALL_RANDOM = lorasim.inits.INITS["small_random"]


def statistics_with(change) -> Callable[[], ContextManager]:
    """A ``Mutation.patch`` of ``LinearTeacher._set_statistics`` that hands on ``change(Σ̂, G)`` instead of G."""
    original = lorasim.LinearTeacher._set_statistics

    def set_statistics(self, sigma_hat, G, resid_sq):
        return original(self, sigma_hat, change(sigma_hat, G), resid_sq)
    return patched(lorasim.LinearTeacher, "_set_statistics", set_statistics)


def identity_preconditioner() -> Callable[[], ContextManager]:
    """A ``Mutation.patch`` that makes lorasim's ``precondition`` the identity: PrecGD becomes plain GD."""
    return patched(lorasim.solvers.precondition, "update", lambda self, side, g, state, partner, t: g)


def _gauss_seidel_step(self):
    """``lorasim.engine.Stepper.step`` with a planted bug: B's gradient taken at (A_{t+1}, B_t), not (A_t, B_t)."""
    gA, _ = self.problem.grads(self.A, self.B)
    self.state["t"] += 1
    A_next = self.A - self.solver.direction("A", gA, self.state, self.B)
    _, gB = self.problem.grads(A_next, self.B)
    B_next = self.B - self.solver.direction("B", gB, self.state, A_next)
    self.A.copy_(A_next)
    self.B.copy_(B_next)


def gauss_seidel_step(what: str = "lorasim's step takes B's gradient at A_{t+1} (planted solver bug)") -> Mutation:
    """The mutation several claims plant in lorasim's training step (eager path: claims run on the CPU or
    with graphs off where they keep factors): B_{t+1} = B_t − η·dir(∇_B(A_{t+1}, B_t))."""
    return Mutation(what, patched(lorasim.engine.Stepper, "step", _gauss_seidel_step))


def parse(cls, raw: dict, ctx):
    """The claim's ``Settings`` from its yaml block at ``ctx.scale``. An unknown or missing key is
    refused in one line naming its override path: ``claims.C09.ci.kapas=[1]: allowed a known key: …``."""
    where = f"claims.{cls.__module__.rsplit('.', 1)[-1][:3].upper()}.{ctx.scale}"
    fields = dataclasses.fields(cls)
    known = sorted(f.name for f in fields)
    for key, value in raw.items():
        if key not in known:
            fail(where, key, value, "a known key: " + ", ".join(known))
    for f in fields:
        if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(where, f.name, None, "a value (the key is required)")
    settings = cls(**raw)
    refused = settings.refused()
    if refused is not None:
        fail(where, refused[0], raw[refused[0]], refused[1])
    return settings


class Checks:
    """A claim's named pass rules. It passes when every rule holds (and it has one); the verdict lists
    each rule in report.md and appends a failed rule's text, which carries the numbers that broke it,
    to the measured line."""

    def __init__(self):
        self.rules: dict[str, tuple[bool, str]] = {}

    def add(self, name: str, ok, failure: str = "") -> bool:
        if name in self.rules:
            raise ValueError(f"check {name!r} added twice")
        self.rules[name] = (bool(ok), failure)
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.rules) and all(ok for ok, _ in self.rules.values())

    def verdict(self, prediction: str, measured: str, notes: str = "", **kw) -> Verdict:
        """The claim's Verdict; ``kw`` are Verdict's other fields (fits, table, figures)."""
        failed = [f"{name}: {text}" if text else name for name, (ok, text) in self.rules.items() if not ok]
        listing = "\n".join(f"- {name}: " + ("ok" if ok else "**FAIL**" + (f": {text}" if text else ""))
                            for name, (ok, text) in self.rules.items())
        return Verdict(prediction=prediction, measured=measured + ("; FAILED " + "; ".join(failed) if failed else ""),
                       passed=self.passed, failed=[name for name, (ok, _) in self.rules.items() if not ok], notes="Checks:\n\n" + listing + ("\n\n" + notes if notes else ""), **kw)


def calibrated_tolerance(calibration, n: int, false_alarm: float = 1e-3, sided: int = 2) -> float:
    """The tolerance of a mean of ``n`` measured values whose expectation under the theory is known: t·SD/√n, SD the
    spread of ``calibration`` (the same quantity on instances drawn apart from the measured ones, e.g. the seeds after
    them) and t the Student-t quantile with len(calibration) − 1 degrees of freedom at which an exact theory fails
    with probability ``false_alarm`` (``sided`` = 2: |mean − expectation|; 1: one direction). The tolerance is fixed
    before the measured values are seen, and is not computed from the quantity it bounds (C10, C11, C14, C15, C20).
    NaN (no rule passes against it) where the calibration has fewer than two values or one is not finite: a
    calibration instance that never converged leaves the spread undefined."""
    from scipy import stats

    cal = np.asarray(calibration, dtype=float)
    if len(cal) < 2 or not np.isfinite(cal).all():
        return math.nan
    t = float(stats.t.ppf(1 - false_alarm / sided, len(cal) - 1))
    return t * float(cal.std(ddof=1)) / float(np.sqrt(n))


def span(values, fmt: str) -> str:
    """``min–max`` of ``values``, each formatted with ``fmt`` (e.g. ``".2g"``), for a measured line."""
    return f"{values.min():{fmt}}–{values.max():{fmt}}"


def text_table(frame, fence: bool = False) -> str:
    """A DataFrame as plain text for a verdict's notes (4 significant digits; ``fence``: a Markdown code block)."""
    text = frame.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    return f"```\n{text}\n```" if fence else text


def seed_means(ax, x, y, label: str, **kw):
    """The seed means of ``y`` per ``x`` as a line with markers (``kw``: its style), each seed's point behind it."""
    m = y.groupby(x).mean()
    line, = ax.plot(m.index, m.values, "o-", label=label, **kw)
    ax.scatter(x, y, s=8, alpha=0.4, color=line.get_color())


def heatmap(fig, ax, x, M, label: str, yticklabels, **kw):
    """``M`` (one row per y tick) as cells centred on the evenly spaced ``x`` and on rows 0, 1, …,
    with a colour bar labelled ``label``; ``kw`` go to ``pcolormesh`` (cmap, vmin, vmax)."""
    step = x[1] - x[0] if len(x) > 1 else 1.0
    xe = np.concatenate([x - step / 2, [x[-1] + step / 2]])
    im = ax.pcolormesh(xe, np.arange(len(M) + 1) - 0.5, M, shading="flat", **kw)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_yticks(range(len(M)), yticklabels)
