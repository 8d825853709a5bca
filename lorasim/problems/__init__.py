"""Teacher–student problems. Each exposes G = −∇L(W0), ΔW, grads, loss and risk (see base.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from ..config import ConfigError, build, checked, fail, register
from .base import Problem, ProblemConfig, check_factors
from .linear import ArraysConfig, LinearConfig, LinearTeacher
from .relu import ReLUConfig, ReLUTeacher
from .sensing import MatrixSensing, SensingConfig


@register("problem", "npz")
@dataclass
class NpzConfig(ProblemConfig):
    """Your own data: an .npz holding X (N×d), Y (N×k), W0 (d×k) and optionally delta (ΔW, d×k)."""

    kind: str = "npz"
    path: str = MISSING
    r_star: Optional[int] = checked(None, "int", 1)  # default: the numerical rank of delta

    def __post_init__(self):
        if not isinstance(self.path, str) or not os.path.isfile(self.path):
            fail(self.where, "path", self.path, "an existing .npz file holding X, Y, W0 and optionally delta")
        super().__post_init__()


KINDS = {"linear": (LinearConfig, LinearTeacher), "relu": (ReLUConfig, ReLUTeacher),
         "sensing": (SensingConfig, MatrixSensing), "npz": (NpzConfig, None), "arrays": (ArraysConfig, None)}


def load_npz(cfg: NpzConfig) -> LinearTeacher:
    """A linear problem from an .npz holding X, Y, W0 and optionally delta (never unpickled)."""
    import zipfile

    import numpy as np

    if not zipfile.is_zipfile(cfg.path):
        fail("problem", "path", cfg.path, "an .npz file (a zip archive of .npy arrays, as np.savez writes)")
    try:
        with np.load(cfg.path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception as e:  # a corrupt archive, or object arrays that would need unpickling
        fail("problem", "path", cfg.path, f"a readable .npz of numeric arrays ({type(e).__name__}: {e})")
    missing = [n for n in ("X", "Y", "W0") if n not in arrays]
    if missing:
        fail("problem", "path", cfg.path, f"an .npz with arrays X, Y, W0 (missing {', '.join(missing)})")
    try:
        return LinearTeacher.from_arrays(arrays["X"], arrays["Y"], arrays["W0"], delta=arrays.get("delta"),
                                         r_star=cfg.r_star, dtype=cfg.dtype, device=cfg.device)
    except ConfigError as e:
        raise ConfigError(f"problem.path={cfg.path!r}: array {e}") from None


def make_problem(values: dict) -> Problem:
    """Build a problem from a plain dict with a ``kind`` key (the ``problem`` conf group)."""
    kind = values.get("kind", "linear")
    if kind not in KINDS:
        fail("problem", "kind", kind, "one of " + ", ".join(KINDS))
    cfg_cls, cls = KINDS[kind]
    cfg = build(cfg_cls, values, where="problem")
    if kind == "npz":
        return load_npz(cfg)
    if kind == "arrays":
        try:
            return LinearTeacher.from_arrays(cfg.X, cfg.Y, cfg.W0, delta=cfg.delta, r_star=cfg.r_star,
                                             dtype=cfg.dtype, device=cfg.device)
        except ConfigError as e:
            raise ConfigError(f"problem.{e}") from None
    return cls(cfg)


__all__ = ["Problem", "LinearTeacher", "ReLUTeacher", "MatrixSensing", "make_problem", "check_factors", "KINDS",
           "LinearConfig", "ReLUConfig", "SensingConfig", "ArraysConfig", "NpzConfig"]
