"""Figures from tidy frames (never from live runs), so they can be redrawn from saved CSVs."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .io import atomic_write


def risk_and_alignment(df: pd.DataFrame, path, title: str = "") -> None:
    """Two panels against step: ln risk, and align_A = sinΘ(U_{r*}(G♮), U_{r*}(A_t)), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for method, g in df.groupby("method", sort=False):
        risk = g["risk"].to_numpy(dtype=float)
        with np.errstate(divide="ignore"):
            ax_r.plot(g["step"], np.log(np.where(risk > 0, risk, np.nan)), label=method)
        if "align_A" in g:
            ax_a.plot(g["step"], g["align_A"], label=method)
    ax_r.set_xlabel("step t")
    ax_r.set_ylabel("ln risk  ln ½‖A_tB_t − ΔW‖²")
    ax_a.set_xlabel("step t")
    ax_a.set_ylabel("align_A = ‖U⊥(G♮)ᵀ U_{r*}(A_t)‖")
    ax_a.set_ylim(-0.02, 1.02)
    ax_r.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
