"""Multirun aggregation: every job's results in one tidy table, and the sweep figures.

    lorasim -m run.rank=1,2,4,8 problem.d=64,128,256     # the callback aggregates when the sweep ends
    lorasim-plot SWEEP_DIR                               # redraw from the saved results, no recompute

``aggregate.csv`` has one row per job × method × logged step: the job's results.csv columns plus
``job`` (its folder name), ``job_status`` (ok, error, incomplete), ``error`` and the job's config
flattened to ``problem.*`` and ``run.*`` columns. ``aggregate_summary.csv`` is the same per
job × method from each summary.csv. A job that raised or was stopped still has its row, with the
reason, so a sweep's table always accounts for every job.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

from .io import write_csv

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a core dependency
    Callback = object


def _flat(prefix: str, node) -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: node if not isinstance(node, list) else str(node)}


def _job_dirs(sweep_dir: Path) -> list:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()),
                  key=lambda p: (len(p.name), p.name))


def gather_tables(sweep_dir, tables: tuple[str, ...], groups: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """{table: every job's ``<table>.csv`` stacked} over the job folders of a multirun, each row labelled
    with ``job``, ``job_status`` (ok, error, incomplete), ``error`` and the job's config groups flattened
    (``<group>.<field>``; top-level scalars keep their name). A job without results keeps one row."""
    sweep_dir = Path(sweep_dir)
    frames = {t: [] for t in tables}
    for job in _job_dirs(sweep_dir):
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {}
        labels = {"job": int(job.name) if job.name.isdigit() else job.name}
        for key in groups:
            node = cfg.get(key, {})
            labels.update(_flat(key, node) if isinstance(node, dict) else {key: node})
        if (job / "error.txt").is_file():
            status, error = "error", (job / "error.txt").read_text().strip()
        elif (job / "done.json").is_file():
            status, error = "ok", ""
        else:
            status, error = "incomplete", "no results (the job was stopped or crashed before writing them)"
        labels.update(job_status=status, error=error)
        for t in tables:
            path = job / f"{t}.csv"
            ok = status == "ok" and path.is_file() and path.stat().st_size > 1
            frames[t].append(pd.read_csv(path).assign(**labels) if ok else pd.DataFrame([labels]))
    if not frames[tables[0]]:
        raise FileNotFoundError(f"{sweep_dir}: no hydra job folders (with .hydra/config.yaml) inside")
    return {t: pd.concat(f, ignore_index=True) for t, f in frames.items()}


def gather(sweep_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-step table, per-method summary) over every job folder of a ``lorasim`` multirun."""
    out = gather_tables(sweep_dir, ("results", "summary"), ("problem", "run"))
    return out["results"], out["summary"]


def plot_sweep(results: pd.DataFrame, summary: pd.DataFrame, out_dir) -> list:
    """Alignment curves faceted by rank × d, final risk vs d per rank, and a heatmap of steps to ε."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .io import atomic_write

    out_dir = Path(out_dir)
    ok = results[results["job_status"] == "ok"]
    done = summary[summary["job_status"] == "ok"]
    written = []
    if ok.empty:
        return written
    ranks = sorted(ok["run.rank"].unique())
    dims = sorted(ok["problem.d"].unique()) if "problem.d" in ok else [None]

    def save(fig, name, rect=(0, 0, 1, 1)):
        fig.tight_layout(rect=rect)
        atomic_write(out_dir / name, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        written.append(name)

    if "align_A" in ok:
        fig, axes = plt.subplots(len(ranks), len(dims), figsize=(3.2 * len(dims), 2.6 * len(ranks)),
                                 squeeze=False, sharey=True)
        for i, r in enumerate(ranks):
            for j, d in enumerate(dims):
                ax = axes[i][j]
                cell = ok[(ok["run.rank"] == r) & ((ok["problem.d"] == d) if d is not None else True)]
                for (method, _), g in cell.groupby(["method", "job"], sort=False):
                    ax.plot(g["step"], g["align_A"], label=method, lw=1)
                ax.set_title(f"r={r}" + (f", d={d}" if d is not None else ""), fontsize=9)
                if i == len(ranks) - 1:
                    ax.set_xlabel("step")
                if j == 0:
                    ax.set_ylabel("align_A")
        handles, labels = axes[0][0].get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        fig.legend(uniq.values(), uniq.keys(), fontsize=8, loc="center right")
        save(fig, "sweep_alignment.png", rect=(0, 0, 0.84, 1))

    if dims != [None]:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for (method, r), g in done.groupby(["method", "run.rank"]):
            g = g.groupby("problem.d")["risk_final"].median()
            ax.plot(g.index, g.values, "o-", label=f"{method}, r={r}")
        ax.set(xscale="log", yscale="log", xlabel="d", ylabel="final risk (median over jobs)")
        ax.legend(fontsize=7)
        save(fig, "sweep_final_risk.png")

        heat = done.pivot_table(index="run.rank", columns="problem.d", values="steps_to_eps", aggfunc="median")
        fig, ax = plt.subplots(figsize=(5, 3.6))
        grid = heat.to_numpy(dtype=float)
        im = ax.pcolormesh(np.arange(grid.shape[1] + 1) - 0.5, np.arange(grid.shape[0] + 1) - 0.5,
                           np.ma.masked_invalid(grid), cmap="viridis")
        ax.set_xticks(range(heat.shape[1]), [str(c) for c in heat.columns])
        ax.set_yticks(range(heat.shape[0]), [str(c) for c in heat.index])
        ax.set(xlabel="d", ylabel="rank r", title="iterations to risk < ε (median over methods; blank: not reached)")
        ax.title.set_fontsize(8)
        fig.colorbar(im, ax=ax)
        for (y, x), v in np.ndenumerate(heat.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(x, y, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w")
        save(fig, "sweep_steps_to_eps.png")
    return written


def aggregate(sweep_dir) -> Path:
    """Gather, write aggregate.csv and aggregate_summary.csv, draw the figures; returns the table's path."""
    sweep_dir = Path(sweep_dir)
    results, summary = gather(sweep_dir)
    write_csv(results, sweep_dir / "aggregate.csv")
    write_csv(summary, sweep_dir / "aggregate_summary.csv")
    plot_sweep(results, summary, sweep_dir)
    return sweep_dir / "aggregate.csv"


class AggregateCallback(Callback):
    """Hydra callback: aggregate a multirun when it ends (conf/config.yaml registers it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        path = aggregate(Path(config.hydra.sweep.dir))
        print(f"aggregate: {path}")


def plot_main() -> None:
    """``lorasim-plot SWEEP_DIR``: rebuild aggregate.csv and the sweep figures from saved job results."""
    args = [a for a in sys.argv[1:]]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: lorasim-plot SWEEP_DIR (or dir=SWEEP_DIR)\n")
        sys.exit(2)
    target = Path(args[0].split("=", 1)[1] if args[0].startswith("dir=") else args[0])
    if not target.is_dir():
        sys.stderr.write(f"lorasim: error: dir={str(target)!r}: allowed an existing multirun folder\n")
        sys.exit(2)
    try:
        print(aggregate(target))
    except FileNotFoundError as e:
        sys.stderr.write(f"lorasim: error: dir={str(target)!r}: allowed a multirun folder ({e})\n")
        sys.exit(2)
