"""Least-squares fits for scaling laws: slope, its standard error, and the residuals.

A scaling law is checked by fitting it over a sweep, never by eyeballing two points.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Fit:
    """y ≈ intercept + slope·x, by ordinary least squares."""

    slope: float
    intercept: float
    slope_se: float  # standard error of the slope (NaN with fewer than 3 points)
    r2: float
    residuals: list
    x_label: str = "x"
    y_label: str = "y"

    def describe(self) -> str:
        se = "" if math.isnan(self.slope_se) else f" ± {self.slope_se:.3g}"
        return f"slope of {self.y_label} vs {self.x_label}: {self.slope:.3g}{se} (R² {self.r2:.4f})"

    def to_dict(self) -> dict:
        return {"x": self.x_label, "y": self.y_label, "slope": self.slope, "slope_se": self.slope_se,
                "intercept": self.intercept, "r2": self.r2,
                "max_abs_residual": float(np.max(np.abs(self.residuals))) if len(self.residuals) else math.nan}


def linear_fit(x, y, x_label: str = "x", y_label: str = "y") -> Fit:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("linear_fit needs two equal-length arrays of at least 2 points")
    X = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    n = x.size
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    sxx = float(((x - x.mean()) ** 2).sum())
    se = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 and sxx > 0 else math.nan
    return Fit(float(coef[1]), float(coef[0]), se, r2, resid.tolist(), x_label, y_label)


def loglog_fit(x, y, x_label: str = "x", y_label: str = "y") -> Fit:
    """Power law y ∝ x^slope, fitted as a line in (ln x, ln y)."""
    return linear_fit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)),
                      f"ln {x_label}", f"ln {y_label}")


def mean_se(values) -> tuple[float, float]:
    """Mean and its standard error over seeds."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return float(v.mean()), math.nan
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


def clustered_mean_se(values, clusters) -> tuple[float, float, int]:
    """Mean of ``values``, its standard error when values of one cluster (e.g. one seed's runs on nested data) are
    dependent and clusters are independent, and the number of clusters. The sandwich estimator
    G/(G − 1)·Σ_c (Σ_{i∈c} (v_i − mean))²/n², which is mean_se's SE when every cluster holds one value."""
    v, c = np.asarray(values, dtype=float), np.asarray(clusters)
    labels, index = np.unique(c, return_inverse=True)
    g = labels.size
    if g < 2:
        return float(v.mean()), math.nan, g
    sums = np.bincount(index, weights=v - v.mean(), minlength=g)
    return float(v.mean()), float(math.sqrt(g / (g - 1) * (sums ** 2).sum()) / v.size), g


def seedwise_loglog(frame, x: str, y: str, label: str, seed: str = "seed", keep: int = 3):
    """A power law fitted per seed: (fits, mean slope, its SE over seeds).

    ``fits`` holds the fit of the seed means first, then the first ``keep`` per-seed fits, for the
    report; the verdict uses the mean ± SE of the per-seed slopes (the seed-to-seed spread).
    """
    fits, slopes = [], []
    for i, (_, sub) in enumerate(frame.groupby(seed, sort=True)):
        sub = sub.sort_values(x)
        f = loglog_fit(sub[x], sub[y], x, f"{label} (seed {sub[seed].iloc[0]})")
        slopes.append(f.slope)
        if i < keep:
            fits.append(f)
    means = frame.groupby(x)[y].mean()
    fits.insert(0, loglog_fit(means.index, means.values, x, f"seed-mean {label}"))
    slope, se = mean_se(slopes)
    return fits, slope, se
