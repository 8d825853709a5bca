"""Figures from tidy frames (never from live runs), so they can be redrawn from saved CSVs.

One run: ``risk_and_alignment`` (figure.png). A sweep: ``sweep_figures`` (sweep_alignment.png,
sweep_final_risk.png, sweep_steps_to_eps.png). The ``draw_*`` functions return the figure without
saving it, so tests can check what is on it. In every sweep figure a method keeps one colour; what
else varies between the jobs of one panel is drawn by line style (a few values) or as faint lines
(many), and said in the legend, which sits outside the axes.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_write

# Axis labels in matplotlib mathtext (every TeX fragment inside $...$).
RISK_LABEL = r"$\ln(\mathrm{risk})$, risk $= \frac{1}{2}\|A_tB_t - \Delta W\|_F^2$"
ALIGN_LABEL = r"$\mathrm{align}_A = \|U_{r^*,\perp}(G^\natural)^\top\, U_{r^*}(A_t)\|$"
FINAL_RISK_LABEL = r"final risk $\frac{1}{2}\|A_TB_T - \Delta W\|_F^2$"
STEP_LABEL = r"step $t$"
D_LABEL = r"dimension $d$"
RANK_LABEL = r"LoRA rank $r$"

NOT_REACHED = float("inf")  # steps-to-ε grid value: the jobs ran, the risk never got below ε
LINESTYLES = ["-", "--", ":", "-."]
NOT_REACHED_COLOR = "0.72"


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _quiet_mathtext():
    """Silence matplotlib's INFO lines about glyphs (⊥) taken from its bundled STIX fonts: hydra's
    logging shows them, one per label drawn."""
    log = logging.getLogger("matplotlib.mathtext")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def save_png(fig, path, dpi: int = 110) -> None:
    """Write the figure atomically as a PNG, then close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    pyplot().close(fig)


# --- one run -------------------------------------------------------------------------------------

def draw_risk_and_alignment(df: pd.DataFrame, title: str = ""):
    """Two panels against step: ln risk, and align_A, one line per method."""
    fig, (ax_r, ax_a) = pyplot().subplots(1, 2, figsize=(11, 4))
    for method, g in df.groupby("method", sort=False):
        risk = g["risk"].to_numpy(dtype=float)
        with np.errstate(divide="ignore"):
            ax_r.plot(g["step"], np.log(np.where(risk > 0, risk, np.nan)), label=method)
        if "align_A" in g:
            ax_a.plot(g["step"], g["align_A"], label=method)
    ax_r.set(xlabel=STEP_LABEL, ylabel=RISK_LABEL)
    ax_a.set(xlabel=STEP_LABEL, ylabel=ALIGN_LABEL, ylim=(-0.02, 1.02))
    ax_r.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def risk_and_alignment(df: pd.DataFrame, path, title: str = "") -> None:
    """figure.png of one run (see draw_risk_and_alignment)."""
    with _quiet_mathtext():
        save_png(draw_risk_and_alignment(df, title), path)


# --- a sweep: shared pieces ----------------------------------------------------------------------

def method_colors(methods) -> dict:
    """One colour per method, the same in every sweep figure (order of first appearance)."""
    methods = list(dict.fromkeys(methods))
    cmap = pyplot().get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def within_panel_axis(frame: pd.DataFrame, facets: list) -> tuple:
    """(the config column that varies between the jobs of one panel, its values) when there is exactly
    one such column with at most len(LINESTYLES) values (it gets line styles); else (None, the columns
    that vary): the jobs are then drawn as faint lines of one style."""
    config = [c for c in frame.columns if c.startswith(("problem.", "run.")) and c not in facets]
    facets = [f for f in facets if f in frame]
    if frame.empty:
        return None, []
    counts = (frame.groupby(facets, dropna=False)[config].nunique(dropna=False).max() if facets
              else frame[config].nunique(dropna=False))
    varying = [col for col in config if counts[col] > 1]
    if len(varying) == 1 and frame[varying[0]].nunique(dropna=False) <= len(LINESTYLES):
        return varying[0], sorted(frame[varying[0]].unique(), key=lambda v: (str(type(v)), v))
    return None, varying


def _tex_number(x: float) -> str:
    """1e-10 -> 10^{-10}, 2.5e-06 -> 2.5 \\cdot 10^{-6}, 0.5 -> 0.5 (mathtext, without the $)."""
    text = f"{x:g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    power = f"10^{{{int(exponent)}}}"
    return power if mantissa == "1" else rf"{mantissa} \cdot {power}"


def _legend_outside(fig, labels: tuple, colors: dict, style_col, style_values, extra: list) -> None:
    """The figure's (x, y) ``labels``, and its legend outside the axes: each method's colour, the line
    style of each value of ``style_col``, then the ``extra`` entries."""
    from matplotlib.lines import Line2D

    fig.supxlabel(labels[0], fontsize=9)
    fig.supylabel(labels[1], fontsize=9)
    styles = enumerate(style_values) if style_col else []
    handles = ([Line2D([], [], color=c, lw=2, label=m) for m, c in colors.items()]
               + [Line2D([], [], color="0.3", ls=LINESTYLES[k], label=f"{style_col}={v}") for k, v in styles])
    fig.legend(handles=handles + extra, loc="outside right upper", fontsize=8, title="method", title_fontsize=8,
               frameon=False)


def _dims(frame: pd.DataFrame) -> list:
    return sorted(frame["problem.d"].unique()) if "problem.d" in frame else [None]


def _d_ticks(ax, dims) -> None:
    """Log-scaled d axis labelled at exactly the swept values (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_xticks(dims, [f"{d:g}" for d in dims], fontsize=8, rotation=45 if len(dims) > 5 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(dims) == 1:
        ax.set_xlim(dims[0] / 1.5, dims[0] * 1.5)


# --- a sweep: the figures ------------------------------------------------------------------------

def draw_sweep_alignment(ok: pd.DataFrame, colors: dict):
    """align_A against step, one panel per (rank, d), one colour per method."""
    from matplotlib.lines import Line2D

    ranks, dims = sorted(ok["run.rank"].unique()), _dims(ok)
    facets = ["run.rank"] + (["problem.d"] if dims != [None] else [])
    style_col, style_values = within_panel_axis(ok, facets)
    jobs_per_panel = int(ok.groupby(facets)["job"].nunique().max())
    faint = style_col is None and jobs_per_panel > 1
    fig, axes = pyplot().subplots(len(ranks), len(dims), figsize=(2.9 * len(dims) + 2.6, 2.3 * len(ranks) + 0.8),
                                  squeeze=False, sharex=True, sharey=True, layout="constrained")
    for i, r in enumerate(ranks):
        for j, d in enumerate(dims):
            ax = axes[i][j]
            cell = ok[(ok["run.rank"] == r) & ((ok["problem.d"] == d) if d is not None else True)]
            for (method, _job), g in cell.groupby(["method", "job"], sort=False):
                style = LINESTYLES[style_values.index(g[style_col].iloc[0])] if style_col else "-"
                ax.plot(g["step"], g["align_A"], color=colors[method], ls=style, lw=1,
                        alpha=max(0.25, 1.5 / jobs_per_panel) if faint else 1.0)
            if cell.empty:
                ax.text(0.5, 0.5, "no finished job", transform=ax.transAxes, ha="center", va="center",
                        fontsize=8, color="0.45")
            ax.set_title(f"$r={r}$" + (f", $d={d}$" if d is not None else ""), fontsize=9)
            ax.tick_params(labelsize=8)
    extra = []
    if faint:  # (only without line styles)
        differ = f"\nthey differ in {', '.join(style_values)}" if style_values else ""
        extra.append(Line2D([], [], color="none",
                            label=f"faint lines: one per job\n(up to {jobs_per_panel} per panel){differ}"))
    _legend_outside(fig, (STEP_LABEL, ALIGN_LABEL), colors, style_col, style_values, extra)
    return fig


def draw_sweep_final_risk(done: pd.DataFrame, colors: dict):
    """Final risk against d, one panel per rank, one colour per method; a method that diverged is an
    × on the panel's top edge."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    ranks, dims = sorted(done["run.rank"].unique()), _dims(done)
    style_col, style_values = within_panel_axis(done, ["run.rank", "problem.d"])
    cols = min(len(ranks), 4)
    rows = -(-len(ranks) // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(3.0 * cols + 2.6, 2.8 * rows + 0.6), squeeze=False,
                                  sharey=True, layout="constrained")
    multi = int(done.groupby(["run.rank", "problem.d", "method"])["job"].nunique().max()) > 1
    for ax, r in zip(axes.ravel(), ranks):
        panel = done[done["run.rank"] == r]
        top = blended_transform_factory(ax.transData, ax.transAxes)
        for method, g in panel.groupby("method", sort=False):
            for value, h in (g.groupby(style_col, sort=True) if style_col else [(None, g)]):
                k = style_values.index(value) if style_col else 0
                # A diverged job's final risk counts as infinite: a median that is infinite is drawn as ×.
                risk = h["risk_final"].astype(float).where(h["status"] != "diverged", np.inf)
                by_d = risk.groupby(h["problem.d"])
                med = by_d.median()
                finite = med[np.isfinite(med) & (med > 0)]
                ax.plot(finite.index, finite.values, marker="o", ms=3, lw=1.2, ls=LINESTYLES[k], color=colors[method])
                if multi and style_col is None:
                    lo = by_d.apply(lambda v: v[np.isfinite(v)].min()).reindex(finite.index)
                    hi = by_d.apply(lambda v: v[np.isfinite(v)].max()).reindex(finite.index)
                    ax.fill_between(finite.index, lo.values, hi.values, color=colors[method], alpha=0.15, lw=0)
                gone = med[~np.isfinite(med)]
                if len(gone):  # (an empty line in axes coordinates breaks constrained layout)
                    ax.plot(gone.index, np.ones(len(gone)), "x", color=colors[method], transform=top, clip_on=False)
        ax.set_yscale("log")
        _d_ticks(ax, dims)
        ax.set_title(f"$r={r}$", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes.ravel()[len(ranks):]:
        ax.set_visible(False)
    extra = []
    if multi and not style_col:
        extra.append(Patch(color="0.3", alpha=0.2, label="line: median over jobs\nband: min–max"
                             + (f"\n(jobs differ in {', '.join(style_values)})" if style_values else "")))
    extra.append(Line2D([], [], color="0.3", marker="x", ls="none", label="diverged (× at the top)"))
    _legend_outside(fig, (D_LABEL, FINAL_RISK_LABEL), colors, style_col, style_values, extra)
    return fig


def steps_to_eps_grids(summary: pd.DataFrame) -> dict:
    """Per method: {"steps", "reached", "jobs"}, each a rank × d frame over the finished (ok) jobs.
    ``steps`` is the median over jobs of the first logged step with risk < ε, a job that never got
    there counting as NOT_REACHED (inf), so a cell is NOT_REACHED when most jobs missed ε; NaN only
    where no job of that cell finished. Methods are never pooled: each has its own grid."""
    done = summary[summary["job_status"] == "ok"]
    # The grid spans every job of the sweep, so a cell whose jobs failed or never ran shows as missing.
    every = summary.dropna(subset=["run.rank", "problem.d"])
    shape = dict(index=pd.Index(sorted(every["run.rank"].unique()), name="run.rank"),
                 columns=pd.Index(sorted(every["problem.d"].unique()), name="problem.d"))
    grids = {}
    for method in dict.fromkeys(summary["method"].dropna()):
        g = done[done["method"] == method]
        steps = g["steps_to_eps"].astype(float).fillna(NOT_REACHED)
        cells = steps.groupby([g["run.rank"], g["problem.d"]])
        grids[method] = {"steps": cells.median().unstack().reindex(**shape).astype(float),
                         "reached": cells.apply(lambda v: int(np.isfinite(v).sum())).unstack().reindex(**shape),
                         "jobs": cells.size().unstack().reindex(**shape)}
    return grids


def draw_sweep_steps_to_eps(summary: pd.DataFrame):
    """One heatmap panel per method (rank × d) of the steps to risk < ε; hatched grey: not reached;
    white: no finished job."""
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch, Rectangle

    plt = pyplot()
    grids = steps_to_eps_grids(summary)
    methods = list(grids)
    values = np.concatenate([g["steps"].to_numpy().ravel() for g in grids.values()])
    finite = values[np.isfinite(values)]
    norm = Normalize(vmin=finite.min() if finite.size else 0, vmax=finite.max() if finite.size else 1)
    cmap = plt.get_cmap("viridis")
    first = grids[methods[0]]["steps"]
    cols = min(len(methods), 2 if len(methods) == 4 else 3)
    rows = -(-len(methods) // cols)
    size = (0.75 * first.shape[1] * cols + 3.2, 0.55 * first.shape[0] * rows + 1.6)  # cells of a readable size
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    mappable = None
    for ax, method in zip(axes.ravel(), methods):
        grid, reached, jobs = (grids[method][k] for k in ("steps", "reached", "jobs"))
        arr = grid.to_numpy(dtype=float)
        mappable = ax.pcolormesh(np.arange(arr.shape[1] + 1) - 0.5, np.arange(arr.shape[0] + 1) - 0.5,
                                 np.ma.masked_invalid(arr), cmap=cmap, norm=norm)
        for (y, x), v in np.ndenumerate(arr):
            if v == NOT_REACHED:
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=NOT_REACHED_COLOR, hatch="///",
                                       edgecolor="0.5", lw=0))
                ax.text(x, y, "not\nreached", ha="center", va="center", fontsize=6.5, color="0.15")
            elif np.isfinite(v):
                n, hit = jobs.iat[y, x], reached.iat[y, x]
                text = f"{v:.0f}" + (f"\n{hit}/{n} jobs" if hit < n else "")
                ax.text(x, y, text, ha="center", va="center", fontsize=7,
                        color="k" if norm(v) > 0.6 else "w")
            else:
                ax.text(x, y, "no data", ha="center", va="center", fontsize=6.5, color="0.45")
        ax.set_xticks(range(arr.shape[1]), [f"{c:g}" for c in grid.columns], fontsize=8)
        ax.set_yticks(range(arr.shape[0]), [f"{c:g}" for c in grid.index], fontsize=8)
        ax.set(xlim=(-0.5, arr.shape[1] - 0.5), ylim=(-0.5, arr.shape[0] - 0.5))
        ax.set_title(method, fontsize=9)
        ax.set_xlabel(D_LABEL, fontsize=8)
        ax.set_ylabel(RANK_LABEL, fontsize=8)
    for ax in axes.ravel()[len(methods):]:
        ax.set_visible(False)
    eps = summary["run.risk_eps"].dropna().unique() if "run.risk_eps" in summary else []
    eps_text = rf" ($\varepsilon = {_tex_number(eps[0])}$)" if len(eps) == 1 else ""
    fig.suptitle(r"steps until risk $< \varepsilon$" + eps_text + ", median over jobs", fontsize=9)
    fig.colorbar(mappable, ax=axes.ravel().tolist(), label=r"steps to $\varepsilon$", shrink=0.8)
    handles = [Patch(facecolor=NOT_REACHED_COLOR, hatch="///", edgecolor="0.5", label="not reached"),
               Patch(facecolor="white", edgecolor="0.5", label="no finished job")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def sweep_figures(results: pd.DataFrame, summary: pd.DataFrame, out_dir) -> list:
    """Write sweep_alignment.png (align_A against step per rank × d), sweep_final_risk.png (final risk
    against d per rank) and sweep_steps_to_eps.png (a rank × d heatmap per method) from the finished
    jobs; returns the file names written."""
    out_dir = Path(out_dir)
    ok = results[results["job_status"] == "ok"]
    done = summary[summary["job_status"] == "ok"]
    if ok.empty or "run.rank" not in ok:
        return []
    colors = method_colors(summary["method"].dropna())
    draw = {}
    if "align_A" in ok and ok["align_A"].notna().any():
        draw["sweep_alignment.png"] = lambda: draw_sweep_alignment(ok, colors)
    if "problem.d" in done and not done.empty:  # both need d on the x axis
        draw["sweep_final_risk.png"] = lambda: draw_sweep_final_risk(done, colors)
        draw["sweep_steps_to_eps.png"] = lambda: draw_sweep_steps_to_eps(summary)
    with _quiet_mathtext():
        for name, figure in draw.items():
            save_png(figure(), out_dir / name)
    return list(draw)
