"""Structured configs: one dataclass per conf/ group, validated before any compute.

The Python API and the hydra app build the same dataclasses, so a bad value gets
the same one-line message from either: ``<group>.<field>=<value>: allowed <range>``.
The app turns ``ConfigError`` into exit code 2.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

DTYPES = ("float64", "float32")
SPACINGS = ("linear", "geometric")
W0_KINDS = ("gaussian", "orthonormal", "zeros")
PROBLEM_KINDS = ("linear", "relu", "sensing", "npz")
INIT_NAMES = ("small_random", "kaiming", "spectral", "lora_one", "lora_ga", "pissa")
SOLVER_NAMES = ("gd", "precgd", "adam", "scaled_adam", "full_ft")


class ConfigError(ValueError):
    """A bad config value; its message is one line naming the field and the allowed values."""


def fail(where: str, name: str, value: Any, allowed: str):
    key = f"{where}.{name}" if where else name
    raise ConfigError(f"{key}={value!r}: allowed {allowed}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(float(x))


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
class SpectrumConfig(_Checked):
    """Singular values of ΔW (or M*): λ*_1 = scale, condition number kappa."""

    kappa: float = 1.0
    spacing: str = "linear"
    singular_values: Optional[list] = None
    scale: float = 1.0


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
        self._int("d", 1)
        self._int("k", 1)
        self._int("r_star", 1, min(self.d, self.k))
        self._int("n", 1, allow=("population",))
        _check_spectrum(self, self.r_star)
        self._choice("w0", W0_KINDS)
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' or 'zeros' when d < k (d={self.d}, k={self.k})")
        self._num("w0_scale", 0)
        self._num("noise", 0)
        self._num("cov_kappa", 1)
        self._numlist("cov_spectrum", length=self.d)
        self._int("seed", 0)
        self._choice("dtype", DTYPES)
        _check_device(self)


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
        self._int("d", 1)
        self._int("k", 1)
        self._int("r_star", 1, min(self.d, self.k))
        self._int("n", 1)
        _check_spectrum(self, self.r_star)
        self._choice("w0", W0_KINDS)
        if self.w0 == "orthonormal" and self.d < self.k:
            fail(self.where, "w0", self.w0, f"'gaussian' or 'zeros' when d < k (d={self.d}, k={self.k})")
        self._num("w0_scale", 0)
        self._num("noise", 0)
        self._int("seed", 0)
        self._choice("dtype", DTYPES)
        _check_device(self)


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
        self._int("n1", 1)
        self._int("n2", 1)
        self._int("r_star", 1, min(self.n1, self.n2))
        if self.m is None:
            self.m = 5 * max(self.n1, self.n2) * self.r_star
        self._int("m", 1)
        _check_spectrum(self, self.r_star)
        self._num("noise", 0)
        self._int("seed", 0)
        self._choice("dtype", DTYPES)
        _check_device(self)
        self._num("max_operator_gb", 0, lo_open=True)
        gb = self.m * self.n1 * self.n2 * (8 if self.dtype == "float64" else 4) / 2**30
        if gb > self.max_operator_gb:
            fail(self.where, "m", self.m, f"m·n1·n2 within max_operator_gb={self.max_operator_gb} (needs {gb:.1f} GB)")


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


@dataclass
class InitConfig(_Checked):
    """A named init and its parameters (each init reads the ones it documents)."""

    name: str = "small_random"
    alpha: float = 1e-3  # small_random: std of A0's entries
    both: bool = False  # small_random: B0 random too
    zeta: float = 1.0  # spectral: A0B0 = ζ[G]_r
    tol: float = 0.0  # spectral: singular values ≤ tol·σ1 are set to 0 before √S
    pad: float = 0.0  # spectral: std of random padding for zero directions (over-rank)
    gamma: float = 128.0  # lora_one / lora_ga: stable_gamma
    lora_alpha: float = 16.0  # lora_one / lora_ga / pissa: peft lora_alpha (α_L, not the theory α)
    rslora: bool = True  # s = α_L/√r (True) or α_L/r
    scale: Optional[float] = None  # explicit LoRA scale s; overrides lora_alpha/rslora
    variant: str = "reference"  # lora_ga: reference | peft
    where: str = field(default="init", repr=False, compare=False)

    def __post_init__(self):
        self._choice("name", INIT_NAMES)
        self._num("alpha", 0)
        self._num("zeta", 0, lo_open=True)
        self._num("tol", 0, 1)
        self._num("pad", 0)
        self._num("gamma", 0, lo_open=True)
        self._num("lora_alpha", 0, lo_open=True)
        if self.scale is not None:
            self._num("scale", 0, lo_open=True)
        self._choice("variant", ("reference", "peft"))


@dataclass
class SolverConfig(_Checked):
    name: str = "gd"
    lr: float = 0.25
    lr_ratio: float = 1.0  # LoRA+: B's learning rate is lr_ratio·lr
    damping: float = 1e-3  # λ of ScaledGD(λ)
    order: str = "simultaneous"  # or gauss_seidel
    inverse: str = "inv"  # or pinv
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    bias_correction: Optional[bool] = None  # default: on for adam, off for scaled_adam (as AdamWr)
    precondition: str = "before"  # scaled_adam: scale the gradient before the moments, or the step after
    where: str = field(default="solver", repr=False, compare=False)

    def __post_init__(self):
        self._choice("name", SOLVER_NAMES)
        self._num("lr", 0, lo_open=True)
        self._num("lr_ratio", 0)
        self._num("damping", 0)
        self._choice("order", ("simultaneous", "gauss_seidel"))
        self._choice("inverse", ("inv", "pinv"))
        self._num("beta1", 0, 1)
        self._num("beta2", 0, 1)
        self._num("eps", 0)
        self._choice("precondition", ("before", "after"))
        if self.bias_correction is None:
            self.bias_correction = self.name == "adam"


@dataclass
class RunConfig(_Checked):
    rank: int = 8
    steps: int = 500
    log_every: int = 1
    seed: int = 0  # init seed; the problem has its own
    eps: float = 1e-10  # risk threshold for "iterations to ε"
    diverge_factor: float = 1e8  # loss above this × max(loss₀, 1) counts as diverged
    quiet: bool = False
    where: str = field(default="run", repr=False, compare=False)

    def __post_init__(self):
        self._int("rank", 1)
        self._int("steps", 0)
        self._int("log_every", 1)
        self._int("seed", 0)
        self._num("eps", 0, lo_open=True)
        self._num("diverge_factor", 1, lo_open=True)


def _check_spectrum(cfg, r_star):
    cfg._num("kappa", 1)
    cfg._choice("spacing", SPACINGS)
    cfg._numlist("singular_values", length=r_star)
    cfg._num("scale", 0, lo_open=True)


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
