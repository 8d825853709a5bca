"""Structured configs: one dataclass per conf/ group, validated before any compute.

The Python API and the hydra app build the same dataclasses, so a bad value gets
the same one-line message from either: ``<group>.<field>=<value>: allowed <range>``.
The app turns ``ConfigError`` into exit code 2.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Optional

DTYPES = ("float64", "float32", "tf32")
SPACINGS = ("linear", "geometric")
W0_KINDS = ("gaussian", "orthonormal", "zeros")


class ConfigError(ValueError):
    """A bad config value; its message is one line naming the field and the allowed values."""


def fail(where: str, name: str, value: Any, allowed: str):
    key = f"{where}.{name}" if where else name
    raise ConfigError(f"{key}={value!r}: allowed {allowed}")


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


class _Checked:
    """Mixin: field checks with the group name in every message."""

    where: str = ""

    def _int(self, name, lo=None, hi=None, allow=()):
        v = getattr(self, name)
        if v in allow:
            return
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            extra = "".join(f" or {a!r}" for a in allow)
            fail(self.where, name, v, f"integer in [{lo_s}, {hi_s}]{extra}")
        setattr(self, name, int(v))

    def _bool(self, name):
        v = getattr(self, name)
        if not isinstance(v, bool):
            fail(self.where, name, v, "true or false")

    def _num(self, name, lo=None, hi=None, lo_open=False):
        v = getattr(self, name)
        bad = not _is_num(v)
        if not bad and lo is not None:
            bad = v <= lo if lo_open else v < lo
        if not bad and hi is not None:
            bad = v > hi
        if bad:
            lb = "(" if lo_open else "["
            fail(self.where, name, v, f"finite number in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]")
        setattr(self, name, float(v))

    def _choice(self, name, options):
        v = getattr(self, name)
        if v not in options:
            fail(self.where, name, v, "one of " + ", ".join(map(str, options)))

    def _numlist(self, name, length=None, positive=True):
        v = getattr(self, name)
        if v is None:
            return
        v = list(v)
        ok = all(_is_num(x) and (x > 0 or not positive) for x in v) and len(v) > 0
        if length is not None:
            ok = ok and len(v) == length
        if not ok:
            size = f" of length {length}" if length is not None else ""
            fail(self.where, name, v, f"null or a list{size} of finite {'positive ' if positive else ''}numbers")
        setattr(self, name, [float(x) for x in v])


@dataclass
class LinearConfig(_Checked):
    d: int = 100
    k: int = 100
    r_star: int = 4
    n: Any = 1600  # int ≥ 1 or "population"
    kappa: float = 4.0
    spacing: str = "linear"
    singular_values: Optional[list] = None
    scale: float = 1.0
    w0: str = "gaussian"
    w0_scale: float = 1.0
    noise: float = 0.0
    cov_kappa: float = 1.0
    cov_spectrum: Optional[list] = None
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    where: str = field(default="problem", repr=False, compare=False)

    def __post_init__(self):
        _check_teacher(self, self.d, self.k, "d", "k")
        self._int("n", 1, allow=("population",))
        self._choice("w0", W0_KINDS)
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' or 'zeros' when d < k (d={self.d}, k={self.k})")
        self._num("w0_scale", 0)
        self._num("cov_kappa", 1)
        self._numlist("cov_spectrum", length=self.d)
        if self.cov_spectrum is not None and self.cov_kappa != 1:
            fail(self.where, "cov_kappa", self.cov_kappa, "1 when cov_spectrum is given (one or the other)")


@dataclass
class ReLUConfig(_Checked):
    d: int = 20
    k: int = 10
    r_star: int = 2
    n: int = 4000
    kappa: float = 1.0
    spacing: str = "linear"
    singular_values: Optional[list] = None
    scale: float = 0.3
    w0: str = "orthonormal"
    w0_scale: float = 1.0
    noise: float = 0.0
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    where: str = field(default="problem", repr=False, compare=False)

    def __post_init__(self):
        _check_teacher(self, self.d, self.k, "d", "k")
        self._int("n", 1)
        self._choice("w0", ("gaussian", "orthonormal"))  # W0 = 0 would give relu'(0) = 0: no gradient ever
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' when d < k (d={self.d}, k={self.k})")
        self._num("w0_scale", 0, lo_open=True)


@dataclass
class SensingConfig(_Checked):
    n1: int = 200
    n2: int = 200
    r_star: int = 10
    m: Optional[int] = None  # default 5·max(n1,n2)·r*  (the ScaledGD anchor's m = 5nr)
    kappa: float = 1.0
    spacing: str = "linear"
    singular_values: Optional[list] = None
    scale: float = 1.0
    noise: float = 0.0
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    max_operator_gb: float = 8.0
    where: str = field(default="problem", repr=False, compare=False)

    def __post_init__(self):
        _check_teacher(self, self.n1, self.n2, "n1", "n2")
        if self.m is None:
            self.m = 5 * max(self.n1, self.n2) * self.r_star
        self._int("m", 1)
        self._num("max_operator_gb", 0, lo_open=True)
        gb = self.m * self.n1 * self.n2 * (8 if self.dtype == "float64" else 4) / 2**30
        if gb > self.max_operator_gb:
            fail(self.where, "m", self.m, f"m·n1·n2 within max_operator_gb={self.max_operator_gb} (needs {gb:.1f} GB)")


@dataclass
class ArraysConfig(_Checked):
    """A small problem written inline in the config: X (N×d), Y (N×k), W0 (d×k), optional delta."""

    X: Any = None
    Y: Any = None
    W0: Any = None
    delta: Any = None
    r_star: Optional[int] = None
    dtype: str = "float64"
    device: str = "cpu"
    where: str = field(default="problem", repr=False, compare=False)

    def __post_init__(self):
        for name in ("X", "Y", "W0"):
            if not isinstance(getattr(self, name), (list, tuple)):
                fail(self.where, name, getattr(self, name), "a nested list (rows of numbers)")
        if self.r_star is not None:
            self._int("r_star", 1)
        self._choice("dtype", DTYPES)
        _check_device(self)


@dataclass
class NpzConfig(_Checked):
    path: str = ""
    r_star: Optional[int] = None
    dtype: str = "float64"
    device: str = "cpu"
    where: str = field(default="problem", repr=False, compare=False)

    def __post_init__(self):
        import os

        if not self.path or not os.path.isfile(self.path):
            fail(self.where, "path", self.path, "an existing .npz file holding X, Y, W0 and optionally delta")
        if self.r_star is not None:
            self._int("r_star", 1)
        self._choice("dtype", DTYPES)
        _check_device(self)


# Each init and solver name takes its own parameters, with its own defaults. A parameter left
# as None takes the name's default; one the name does not take is an error, not ignored.
INIT_PARAMS = {
    "small_random": {"alpha": 1e-3, "both": False},
    "kaiming": {"lora_alpha": 16.0, "rslora": True, "scale": None},
    "spectral": {"zeta": 1.0, "tol": 0.0, "pad": 0.0},
    "lora_one": {"gamma": 128.0, "lora_alpha": 16.0, "rslora": True, "scale": None},
    "lora_ga": {"variant": "reference", "direction": "ArB2r", "gamma": 16.0, "lora_alpha": 16.0, "rslora": True,
                "scale": None},
    "pissa": {},
    "arrays": {"A0": None, "B0": None},
}
_ADAM = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
_PREC = {"order": "simultaneous", "inverse": "inv"}
SOLVER_PARAMS = {
    "gd": {"lr": 0.25, "lr_ratio": 1.0},
    "precgd": {"lr": 0.5, "lr_ratio": 1.0, "damping": 1e-3, **_PREC},
    "adam": {"lr": 1e-2, "lr_ratio": 1.0, **_ADAM, "bias_correction": True},
    # LoRA-One's deleted AdamWr: Gauss–Seidel, reg 1e-6, no bias correction, scaling before the moments.
    "scaled_adam": {"lr": 1e-2, "lr_ratio": 1.0, "damping": 1e-6, **_PREC, "order": "gauss_seidel", **_ADAM,
                    "bias_correction": False, "precondition": "before"},
    "full_ft": {"lr": 0.5},
}


class _Named(_Checked):
    """Fill a named config's defaults from its table and reject parameters the name does not take."""

    def _fill(self, table: dict):
        self._choice("name", tuple(table))
        own = table[self.name]
        for f in dataclasses.fields(self):
            if f.name in ("name", "where"):
                continue
            value = getattr(self, f.name)
            if f.name in own:
                if value is None:
                    setattr(self, f.name, own[f.name])
            elif value is not None:
                takers = [n for n, params in table.items() if f.name in params]
                fail(self.where, f.name, value, f"only with name in {', '.join(takers)} (name is {self.name})")

    def _check_own(self, checks: dict):
        own = set(type(self)._table()[self.name])
        for field_name, check in checks.items():
            if field_name in own and getattr(self, field_name) is not None:
                check(field_name)


@dataclass
class InitConfig(_Named):
    """A named init and its parameters; see INIT_PARAMS for which name takes which."""

    name: str = "small_random"
    alpha: Optional[float] = None  # small_random: std of A0's entries (the theory's α)
    both: Optional[bool] = None  # small_random: B0 random too
    zeta: Optional[float] = None  # spectral: A0B0 = ζ[G]_r
    tol: Optional[float] = None  # spectral: singular values ≤ tol·σ1 are set to 0 before √S
    pad: Optional[float] = None  # spectral: std of random padding in the zero directions (over-rank)
    gamma: Optional[float] = None  # lora_one / lora_ga: stable_gamma
    lora_alpha: Optional[float] = None  # peft lora_alpha (α_L, not the theory's α)
    rslora: Optional[bool] = None  # s = α_L/√r (true) or α_L/r
    scale: Optional[float] = None  # explicit LoRA scale s; overrides lora_alpha/rslora
    variant: Optional[str] = None  # lora_ga: reference | peft
    direction: Optional[str] = None  # lora_ga: ArB2r | top_r
    A0: Optional[list] = None  # arrays: explicit A0 (d×r) as nested lists
    B0: Optional[list] = None  # arrays: explicit B0 (r×k)
    where: str = field(default="init", repr=False, compare=False)

    @staticmethod
    def _table():
        return INIT_PARAMS

    def __post_init__(self):
        self._fill(INIT_PARAMS)
        self._check_own({
            "alpha": lambda n: self._num(n, 0), "both": self._bool, "zeta": lambda n: self._num(n, 0, lo_open=True),
            "tol": lambda n: self._num(n, 0, 1), "pad": lambda n: self._num(n, 0),
            "gamma": lambda n: self._num(n, 0, lo_open=True), "lora_alpha": lambda n: self._num(n, 0, lo_open=True),
            "rslora": self._bool, "scale": lambda n: self._num(n, 0, lo_open=True),
            "variant": lambda n: self._choice(n, ("reference", "peft")),
            "direction": lambda n: self._choice(n, ("ArB2r", "top_r")),
        })
        if self.name == "arrays":
            for key in ("A0", "B0"):
                if not isinstance(getattr(self, key), (list, tuple)):
                    fail(self.where, key, getattr(self, key), "a nested list (rows of numbers) for init arrays")


@dataclass
class SolverConfig(_Named):
    """A named update rule and its parameters; see SOLVER_PARAMS for which name takes which."""

    name: str = "gd"
    lr: Optional[float] = None
    lr_ratio: Optional[float] = None  # LoRA+: B's learning rate is lr_ratio·lr
    damping: Optional[float] = None  # λ of ScaledGD(λ)
    order: Optional[str] = None  # simultaneous | gauss_seidel
    inverse: Optional[str] = None  # inv | pinv
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    eps: Optional[float] = None
    bias_correction: Optional[bool] = None
    precondition: Optional[str] = None  # scaled_adam: scale the gradient before the moments, or the step after
    where: str = field(default="solver", repr=False, compare=False)

    @staticmethod
    def _table():
        return SOLVER_PARAMS

    def __post_init__(self):
        self._fill(SOLVER_PARAMS)
        self._check_own({
            "lr": lambda n: self._num(n, 0, lo_open=True), "lr_ratio": lambda n: self._num(n, 0),
            "damping": lambda n: self._num(n, 0), "order": lambda n: self._choice(n, ("simultaneous", "gauss_seidel")),
            "inverse": lambda n: self._choice(n, ("inv", "pinv")), "beta1": lambda n: self._num(n, 0, 1),
            "beta2": lambda n: self._num(n, 0, 1), "eps": lambda n: self._num(n, 0), "bias_correction": self._bool,
            "precondition": lambda n: self._choice(n, ("before", "after")),
        })


@dataclass
class RunConfig(_Checked):
    rank: int = 8
    steps: int = 500
    log_every: int = 1
    seed: int = 0  # init seed; the problem has its own
    eps: float = 1e-10  # risk threshold for "iterations to ε"
    diverge_factor: float = 1e8  # loss above this × max(loss₀, 1) counts as diverged
    quiet: bool = False
    metrics: str = "full"  # full | risk (loss, risk and error norms only: no SVDs per logged step)
    figure: bool = True  # draw figure.png per run (a sweep's aggregate draws its own figures)
    threads: Any = "auto"  # torch CPU threads: "auto" (the job's share of the cores) or an integer ≥ 1
    where: str = field(default="run", repr=False, compare=False)

    def __post_init__(self):
        self._int("rank", 1)
        self._int("steps", 0)
        self._int("log_every", 1)
        self._int("seed", 0)
        self._num("eps", 0, lo_open=True)
        self._num("diverge_factor", 1, lo_open=True)
        self._bool("quiet")
        self._choice("metrics", ("full", "risk"))
        self._bool("figure")
        self._int("threads", 1, allow=("auto",))


def _check_teacher(cfg, rows, cols, rows_name, cols_name):
    """The fields every generated problem shares: sizes, the ΔW spectrum, noise, seed, dtype, device."""
    cfg._int(rows_name, 1)
    cfg._int(cols_name, 1)
    cfg._int("r_star", 1, min(getattr(cfg, rows_name), getattr(cfg, cols_name)))
    cfg._num("kappa", 1)
    cfg._choice("spacing", SPACINGS)
    cfg._numlist("singular_values", length=cfg.r_star)
    cfg._num("scale", 0, lo_open=True)
    cfg._num("noise", 0)
    cfg._int("seed", 0)
    cfg._choice("dtype", DTYPES)
    _check_device(cfg)


def _check_device(cfg):
    dev = str(cfg.device)
    if not (dev == "cpu" or dev == "cuda" or dev.startswith("cuda:")):
        fail(cfg.where, "device", dev, "cpu, cuda or cuda:N")
    if dev.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail(cfg.where, "device", dev, "cpu (CUDA is not available on this machine)")


def build(cls, values: dict, where: Optional[str] = None):
    """Build a config dataclass from a plain dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls) if f.name != "where"}
    where = where if where is not None else cls.where if isinstance(getattr(cls, "where", None), str) else ""
    for key in values:
        if key not in names:
            fail(where, key, values[key], "a known key: " + ", ".join(sorted(names)))
    # `where` goes in with the values, so messages carry the caller's path.
    return cls(**values, where=where)
