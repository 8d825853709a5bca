"""The LLM stage's report: every job of a ``lorasim-llm`` multirun in tidy tables, the comparison
table and the figures.

    lorasim-llm -m ...                       # the callback writes the report into the sweep folder
    lorasim-llm-report SWEEP_DIR [out=DIR]   # again from the saved jobs, optionally into DIR

Tables: ``results.csv`` (job × logged step: train loss, eval loss and accuracy), ``summary.csv``
(one row per job), ``angles.csv`` (job × step × layer × side). The comparison (``report.md``):
per method and rank, the learning rate is chosen from that method's grid by the lowest mean
training loss over the last 20 % of steps (mean over seeds) — the training objective, so the held
-out set plays no part in the choice, and every method gets the same number of candidates. At the
chosen lr, eval accuracy and losses are mean ± std over seeds. Figures: ``llm_curves.png`` (train
loss and eval accuracy against step, mean ± std over seeds, chosen lr) and, when angles were
logged, ``llm_angles.png`` (Figure 1(b)'s analogue: sinΘ per layer class and side against step).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write, write_csv
from ..sweep import gather_tables

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a core dependency
    Callback = object

GROUPS = ("model", "task", "method", "run", "seed", "lr_mult")
KEY = ["model.name", "task.name", "method.name", "method.r", "run.steps"]


def gather(sweep_dir) -> dict[str, pd.DataFrame]:
    tables = gather_tables(sweep_dir, ("curve", "summary", "angles"), GROUPS)
    return {"results": tables["curve"], "summary": tables["summary"], "angles": tables["angles"]}


def _late_train_loss(results: pd.DataFrame) -> pd.Series:
    """Per job: mean logged train loss over the last 20 % of its steps."""
    ok = results[(results["job_status"] == "ok") & (results["step"] > 0)]
    late = ok[ok["step"] > 0.8 * ok["run.steps"]]
    return late.groupby("job")["train_loss"].mean()


def compare(results: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every method × lr, the chosen lr per method) with mean ± std over seeds."""
    done = summary[summary["job_status"] == "ok"].copy()
    if done.empty:
        return pd.DataFrame(), pd.DataFrame()
    done["late_train_loss"] = done["job"].map(_late_train_loss(results))
    done["diverged"] = done["status"] != "ok"
    keys = [k for k in KEY if k in done] + ["lr"]  # the effective lr (method.lr × lr_mult)
    agg = done.groupby(keys, dropna=False).agg(
        seeds=("seed", "nunique"), diverged=("diverged", "sum"),
        late_train_loss=("late_train_loss", "mean"), late_train_loss_std=("late_train_loss", "std"),
        eval_acc=("final_eval_acc", "mean"), eval_acc_std=("final_eval_acc", "std"),
        eval_loss=("final_eval_loss", "mean"), eval_loss_std=("final_eval_loss", "std"),
        initial_eval_acc=("initial_eval_acc", "mean"), init_seconds=("init_seconds", "mean"),
        peak_memory_mb=("peak_memory_mb", "max"), trainable_params=("trainable_params", "first")).reset_index()
    # A diverged seed disqualifies its lr: a method must be stable at the lr it is credited with.
    ranked = agg.assign(_bad=agg["diverged"] > 0, _loss=agg["late_train_loss"].fillna(np.inf))
    chosen = (ranked.sort_values(["_bad", "_loss"]).groupby(keys[:-1], dropna=False).head(1)
              .drop(columns=["_bad", "_loss"]).sort_values(keys[:-1]).reset_index(drop=True))
    grid = (agg.groupby(keys[:-1], dropna=False)["lr"]
            .apply(lambda lrs: ", ".join(f"{v:g}" for v in sorted(lrs))).rename("lr_grid").reset_index())
    chosen = chosen.merge(grid, on=keys[:-1], how="left")
    return agg, chosen


def _pm(mean, std, digits=3) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not pd.isna(std) else f"{mean:.{digits}f}"


def markdown(chosen: pd.DataFrame, agg: pd.DataFrame) -> str:
    lines = ["| method | r | lr grid | chosen lr | seeds | eval acc | eval loss | train loss (last 20 %) | "
             "acc before | init s | peak MiB | trainable |", "|" + "---|" * 12]
    for _, c in chosen.iterrows():
        lines.append(f"| {c['method.name']} | {c['method.r']} | {c['lr_grid']} | {c['lr']:g} | {c['seeds']} | "
                     f"{_pm(c['eval_acc'], c['eval_acc_std'])} | {_pm(c['eval_loss'], c['eval_loss_std'])} | "
                     f"{_pm(c['late_train_loss'], c['late_train_loss_std'])} | {c['initial_eval_acc']:.3f} | "
                     f"{c['init_seconds']:.2f} | {c['peak_memory_mb']:.0f} | {int(c['trainable_params']):,} |")
    lines += ["", "Every learning rate:", "", "| method | r | lr | seeds | diverged | eval acc | train loss (last 20 %) |",
              "|" + "---|" * 7]
    for _, a in agg.iterrows():
        lines.append(f"| {a['method.name']} | {a['method.r']} | {a['lr']:g} | {a['seeds']} | {a['diverged']} | "
                     f"{_pm(a['eval_acc'], a['eval_acc_std'])} | {_pm(a['late_train_loss'], a['late_train_loss_std'])} |")
    return "\n".join(lines) + "\n"


def plot(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame, angles: pd.DataFrame,
         out_dir) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir, written = Path(out_dir), []
    summary_lr = summary[["job", "lr"]] if "lr" in summary else pd.DataFrame(columns=["job", "lr"])

    def save(fig, name):
        fig.tight_layout()
        atomic_write(out_dir / name, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        written.append(name)

    ok = results[results["job_status"] == "ok"]
    if not chosen.empty:
        ok = ok.merge(summary_lr, on="job", how="left")
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for _, c in chosen.iterrows():
            runs = ok[(ok["method.name"] == c["method.name"]) & (ok["lr"] == c["lr"])
                      & (ok["method.r"] == c["method.r"])]
            label = f"{c['method.name']} (lr {c['lr']:g})"
            for ax, col in zip(axes, ("train_loss", "eval_acc")):
                stats = runs.dropna(subset=[col]).groupby("step")[col].agg(["mean", "std"]).fillna(0)
                if col == "train_loss":
                    stats = stats[stats.index > 0]
                line, = ax.plot(stats.index, stats["mean"], label=label, lw=1.3)
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=line.get_color(), alpha=0.2)
        axes[0].set(xlabel="step", ylabel="train loss (response tokens)", yscale="log")
        axes[1].set(xlabel="step", ylabel="eval accuracy")
        axes[1].legend(fontsize=7)
        fig.suptitle("mean ± std over seeds at each method's chosen lr", fontsize=9)
        save(fig, "llm_curves.png")
    a = angles[angles["job_status"] == "ok"] if "side" in angles else pd.DataFrame()
    if not a.empty:
        classes = list(dict.fromkeys(a["layer_class"]))
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        for ax, side in zip(axes, ("input", "output")):
            for cls in classes:
                sel = a[(a["side"] == side) & (a["layer_class"] == cls)]
                per_job = sel.groupby(["job", "step"])[["full", "truncated"]].mean().groupby("step").mean()
                line, = ax.plot(per_job.index, per_job["full"], label=cls, lw=1.3)
                ax.plot(per_job.index, per_job["truncated"], ls=":", color=line.get_color(), lw=1)
            ax.set(xlabel="step", title=f"{side} side ({'lora_A, paper A' if side == 'input' else 'lora_B, paper B'})",
                   ylim=(0, 1.02))
        axes[0].set_ylabel("sinΘ to the one-step gradient's top-r subspace")
        axes[1].legend(fontsize=7, title="layer (solid: full complement,\ndotted: official truncated)",
                       title_fontsize=7)
        save(fig, "llm_angles.png")
    return written


def report(sweep_dir, out_dir=None) -> Path:
    """Write the tables, report.md and figures into ``sweep_dir`` (and copy them to ``out_dir``)."""
    sweep_dir = Path(sweep_dir)
    tables = gather(sweep_dir)
    for name, frame in tables.items():
        write_csv(frame, sweep_dir / f"{name}.csv")
    agg, chosen = compare(tables["results"], tables["summary"])
    text = markdown(chosen, agg) if not chosen.empty else "no job finished\n"
    atomic_write(sweep_dir / "report.md", lambda tmp: Path(tmp).write_text(text))
    names = ["results.csv", "summary.csv", "angles.csv", "report.md"] + plot(
        tables["results"], tables["summary"], chosen, tables["angles"], sweep_dir)
    if out_dir is not None:
        out_dir = Path(out_dir)
        for name in names:
            atomic_write(out_dir / name, lambda tmp, n=name: shutil.copyfile(sweep_dir / n, tmp))
    return sweep_dir / "report.md"


class ReportCallback(Callback):
    """Hydra callback: the report when a multirun ends (conf/llm/llm.yaml registers it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        print(f"report: {report(Path(config.hydra.sweep.dir))}")


def main() -> None:
    """``lorasim-llm-report SWEEP_DIR [out=DIR]``."""
    args = sys.argv[1:]
    outs = [a.split("=", 1)[1] for a in args if a.startswith("out=")]
    dirs = [a for a in args if not a.startswith("out=")]
    if len(dirs) != 1 or dirs[0].startswith("-") or len(outs) > 1:
        sys.stderr.write("usage: lorasim-llm-report SWEEP_DIR [out=DIR]\n")
        sys.exit(2)
    target = Path(dirs[0])
    if not target.is_dir():
        sys.stderr.write(f"lorasim: error: dir={str(target)!r}: allowed an existing lorasim-llm multirun folder\n")
        sys.exit(2)
    try:
        print(report(target, outs[0] if outs else None))
    except FileNotFoundError as e:
        sys.stderr.write(f"lorasim: error: dir={str(target)!r}: allowed a lorasim-llm multirun folder ({e})\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
