"""The LLM stage's report: every job of a ``lorasim-llm`` multirun in tidy tables, the comparison
table and the figures.

    lorasim-llm -m ...                       # the callback writes the report into the sweep folder
    lorasim-llm-report SWEEP_DIR [MORE ...] [out=DIR]   # again from saved jobs (or saved tables), into DIR

Tables: ``results.csv`` (job × logged step: train loss, validation and test loss and accuracy), ``summary.csv``
(one row per job), ``angles.csv`` (job × step × layer × side). The comparison (``report.md``):
per method and rank, the learning rate is chosen from that method's grid by the lowest mean
training loss over the last 20 % of steps (mean over seeds) — the training objective, so the held
-out set plays no part in the choice, and every method gets the same number of candidates. At the
chosen lr, test accuracy and losses are mean ± std over seeds. Figures: ``llm_curves.png`` (train
loss and test accuracy against step, mean ± std over seeds, chosen lr) and, when angles were
logged, ``llm_angles.png`` (Figure 1(b)'s analogue: sinΘ per layer class and side against step).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback

from ..io import atomic_write, write_csv
from .compare import PAIRS, choose_lr, curves as compare_curves, markdown as compare_markdown
from ..job import error
from ..plots import pyplot, save_png
from ..sweep import gather_tables

GROUPS = ("model", "task", "method", "run", "seed", "lr_mult")
KEY = ["model.name", "task.name", "method.name", "method.r", "run.steps"]


def gather(sweep_dir) -> dict[str, pd.DataFrame]:
    """The job folders' tables; for a folder that holds only a report's tables (results.csv and
    summary.csv copied off another machine), those. A job whose method has a ``label`` is reported
    under it (method.name becomes the label; method.base_name keeps the method's own name)."""
    sweep_dir = Path(sweep_dir)
    if not any((p / ".hydra").is_dir() for p in sweep_dir.iterdir()) and (sweep_dir / "summary.csv").is_file():
        angles = sweep_dir / "angles.csv"
        return {"results": _renamed(pd.read_csv(sweep_dir / "results.csv")),
                "summary": _renamed(pd.read_csv(sweep_dir / "summary.csv")),
                "angles": pd.read_csv(angles) if angles.is_file() and angles.stat().st_size > 1 else pd.DataFrame()}
    tables = gather_tables(sweep_dir, ("curve", "summary", "angles"), GROUPS)
    return {name: _labelled(_renamed(tables[table])) for name, table in (("results", "curve"), ("summary", "summary"),
                                                                         ("angles", "angles"))}


# Columns of tables written before the validation split existed: their held-out set is today's test split.
LEGACY = {"eval_loss": "test_loss", "eval_acc": "test_acc", "final_eval_loss": "final_test_loss",
          "final_eval_acc": "final_test_acc", "initial_eval_acc": "initial_test_acc"}


def _renamed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={k: v for k, v in LEGACY.items() if k in frame and v not in frame})


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    if "method.label" not in frame or "method.name" not in frame:
        return frame
    return frame.assign(**{"method.base_name": frame["method.name"],
                           "method.name": frame["method.label"].where(frame["method.label"].notna(), frame["method.name"])})


def gather_many(dirs) -> dict[str, pd.DataFrame]:
    """Several sweeps (or report folders) as one set of tables; jobs are renamed <sweep index>/<job>."""
    parts = [gather(d) for d in dirs]
    if len(parts) == 1:
        return parts[0]
    out = {}
    for name in ("results", "summary", "angles"):
        frames = [p[name].assign(job=[f"{i}/{j}" for j in p[name]["job"]]) for i, p in enumerate(parts)
                  if not p[name].empty]
        out[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def _per_job(results: pd.DataFrame) -> pd.DataFrame:
    """Per job: the first logged train loss and the first test accuracy after step 0 (where an init's
    head start shows; by the end every method may have converged), and the mean logged train loss over
    the last 20 % of its steps."""
    ok = results[(results["job_status"] == "ok") & (results["step"] > 0)]
    late = ok[ok["step"] > 0.8 * ok["run.steps"]]
    first = {f"first_{c}": ok.dropna(subset=[c]).sort_values("step").groupby("job")[c].first()
             for c in ("train_loss", "test_acc")}
    return pd.DataFrame({**first, "late_train_loss": late.groupby("job")["train_loss"].mean()})


def compare(results: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every method × lr, the chosen lr per method) with mean ± std over seeds."""
    done = summary[summary["job_status"] == "ok"].copy()
    if done.empty:
        return pd.DataFrame(), pd.DataFrame()
    done = done.join(_per_job(results), on="job")
    done["diverged"] = done["status"] != "ok"
    keys = [k for k in KEY if k in done] + ["lr"]  # the effective lr (method.lr × lr_mult)

    def spread(name, col=None):  # <name> and <name>_std: mean and std over seeds of ``col`` (default: name)
        return {name: (col or name, "mean"), f"{name}_std": (col or name, "std")}
    agg = done.groupby(keys, dropna=False).agg(
        seeds=("seed", "nunique"), diverged=("diverged", "sum"), **spread("late_train_loss"),
        **spread("test_acc", "final_test_acc"), **spread("test_loss", "final_test_loss"),
        initial_test_acc=("initial_test_acc", "mean"), **spread("first_train_loss"), **spread("first_test_acc"),
        init_seconds=("init_seconds", "mean"), peak_memory_mb=("peak_memory_mb", "max"),
        trainable_params=("trainable_params", "first")).reset_index()
    # A diverged seed disqualifies its lr: a method must be stable at the lr it is credited with.
    ranked = agg.assign(_bad=agg["diverged"] > 0, _loss=agg["late_train_loss"].fillna(np.inf))
    chosen = (ranked.sort_values(["_bad", "_loss"]).groupby(keys[:-1], dropna=False).head(1)
              .drop(columns=["_bad", "_loss"]).sort_values(keys[:-1]).reset_index(drop=True))
    grid = (agg.groupby(keys[:-1], dropna=False)["lr"]
            .apply(lambda lrs: ", ".join(f"{v:g}" for v in sorted(lrs))).rename("lr_grid").reset_index())
    chosen = chosen.merge(grid, on=keys[:-1], how="left")
    return agg, chosen


def _pm(row, col: str, digits=3) -> str:
    """``row[col]`` ± its std over seeds (``row[col + "_std"]``)."""
    mean, std = row[col], row[col + "_std"]
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if not pd.isna(std) else f"{mean:.{digits}f}"


def markdown(chosen: pd.DataFrame, agg: pd.DataFrame, summary: pd.DataFrame) -> str:
    lines = ["Every method at the lr of its lowest training loss over the last 20 % of steps (this generic "
             "view uses no held-out data; a pre-stated comparison below, where there is one, chooses on validation "
             "by its own rule):", "",
             "| task | method | r | lr grid | lr (train loss) | seeds | test acc (end) | test loss (end) | "
             "train loss (last 20 %) | acc at step 0 | first train loss | first test acc | init s | peak MiB | trainable |",
             "|" + "---|" * 15]
    for _, c in chosen.iterrows():
        lines.append(f"| {c.get('task.name', '–')} | {c['method.name']} | {c['method.r']} | {c['lr_grid']} | {c['lr']:g} | {c['seeds']} | "
                     f"{_pm(c, 'test_acc')} | {_pm(c, 'test_loss')} | {_pm(c, 'late_train_loss')} | "
                     f"{c['initial_test_acc']:.3f} | {_pm(c, 'first_train_loss')} | {_pm(c, 'first_test_acc')} | "
                     f"{c['init_seconds']:.2f} | {c['peak_memory_mb']:.0f} | {int(c['trainable_params']):,} |")
    lines += ["", "\"first\": the first logged window of training loss and the first evaluation after step 0. "
              "Accuracies and eval losses are on the test split.",
              "", "Every learning rate:", "",
              "| task | method | r | lr | seeds | diverged | test acc (end) | train loss (last 20 %) | first test acc |",
              "|" + "---|" * 9]
    for _, a in agg.iterrows():
        lines.append(f"| {a.get('task.name', '–')} | {a['method.name']} | {a['method.r']} | {a['lr']:g} | {a['seeds']} | {a['diverged']} | "
                     f"{_pm(a, 'test_acc')} | {_pm(a, 'late_train_loss')} | {_pm(a, 'first_test_acc')} |")
    unfinished = summary[summary["job_status"] != "ok"]
    if not unfinished.empty:
        keys = [k for k in ("task.name", "method.name") if k in unfinished] + ["job_status"]
        counts = unfinished.groupby(keys).size()
        lines += ["", "Jobs without results in these sweeps (one re-run to completion in another sweep is also in "
                  "the tables): " + ", ".join(f"{' '.join(map(str, k[:-1]))} {n} × {k[-1]}" for k, n in counts.items())
                  + "."]
    return "\n".join(lines) + "\n"


def plot(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame, angles: pd.DataFrame,
         out_dir) -> list[str]:
    plt = pyplot()
    out_dir, written = Path(out_dir), []
    summary_lr = summary[["job", "lr"]] if "lr" in summary else pd.DataFrame(columns=["job", "lr"])

    def save(fig, name):
        fig.tight_layout()
        save_png(fig, out_dir / name)
        written.append(name)

    ok = results[results["job_status"] == "ok"]
    if not chosen.empty:
        ok = ok.merge(summary_lr, on="job", how="left")
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for _, c in chosen.iterrows():
            runs = ok[(ok["method.name"] == c["method.name"]) & (ok["lr"] == c["lr"])
                      & (ok["method.r"] == c["method.r"])]
            if "task.name" in chosen:
                runs = runs[runs["task.name"] == c["task.name"]]
            several = "task.name" in chosen and chosen["task.name"].nunique() > 1
            label = f"{c['task.name'] + ': ' if several else ''}{c['method.name']} (lr {c['lr']:g})"
            for ax, col in zip(axes, ("train_loss", "test_acc")):
                vals = runs.dropna(subset=[col])
                if col == "train_loss":  # log scale: geometric mean × exp(± std of the log)
                    vals = vals[vals["step"] > 0].assign(train_loss=np.log(vals["train_loss"]))
                stats = vals.groupby("step")[col].agg(["mean", "std"]).fillna(0)
                lo, mid, hi = stats["mean"] - stats["std"], stats["mean"], stats["mean"] + stats["std"]
                if col == "train_loss":
                    lo, mid, hi = np.exp(lo), np.exp(mid), np.exp(hi)
                line, = ax.plot(stats.index, mid, label=label, lw=1.3)
                ax.fill_between(stats.index, lo, hi, color=line.get_color(), alpha=0.2)
        axes[0].set(xlabel="step", ylabel="train loss (response tokens)", yscale="log")
        axes[1].set(xlabel="step", ylabel="test accuracy")
        axes[1].legend(fontsize=7)
        fig.suptitle("each method at its chosen lr, over seeds: loss geometric mean × exp(±std of log), "
                     "accuracy mean ± std", fontsize=9)
        save(fig, "llm_curves.png")
    a = angles[angles["job_status"] == "ok"] if "side" in angles else pd.DataFrame()
    if not a.empty:
        classes = list(dict.fromkeys(a["layer_class"]))
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
        for ax, side in zip(axes, ("input", "output")):
            for cls in classes:
                sel = a[(a["side"] == side) & (a["layer_class"] == cls)]
                cols = [c for c in ("full", "rms", "truncated") if c in sel]
                per_job = sel.groupby(["job", "step"])[cols].mean().groupby("step").mean()
                line, = ax.plot(per_job.index, per_job["full"], label=cls, lw=1.3)
                for col, style in (("rms", "--"), ("truncated", ":")):
                    if col in per_job:
                        ax.plot(per_job.index, per_job[col], ls=style, color=line.get_color(), lw=1)
            ax.set(xlabel="step", title=f"{side} side ({'lora_A, paper A' if side == 'input' else 'lora_B, paper B'})",
                   ylim=(0, 1.02))
        axes[0].set_ylabel("sinΘ to the one-step gradient's top-r subspace")
        axes[1].legend(fontsize=7, title="layer class (mean over layers\nand seeds)\nsolid: sinΘ, full complement\n"
                       "dashed: rms of the r sines\ndotted: official, truncated", title_fontsize=7,
                       loc="center left", bbox_to_anchor=(1.02, 0.5))
        save(fig, "llm_angles.png")
    if "factor_top1" in a:
        plot_alignment(a, save)
    return written


ALIGNMENT = (("top1", "top-1"), ("top2", "top-2"), ("top_rstar", "top-r* (largest gap of G)"))


def alignment_curves(angles: pd.DataFrame) -> pd.DataFrame:
    """Per method, side and step, each angle column's mean over layers and then over seeds (jobs): the
    curves of Figure 1(b) in the theory's regime (experiment alignment_theory)."""
    cols = [c for c in angles if c.startswith(("factor_", "delta_")) or c in ("full", "truncated", "truncated_random")]
    per_job = angles.groupby(["method.name", "job", "side", "step"])[cols].mean()
    return per_job.groupby(["method.name", "side", "step"]).mean().reset_index()


def alignment_markdown(angles: pd.DataFrame) -> str:
    """The input-side top-1 sinΘ of lora_A's own SVD (the toy's a(t)) per arm and step, and each arm's minimum."""
    curves = alignment_curves(angles)
    inp = curves[curves["side"] == "input"].pivot(index="method.name", columns="step", values="factor_top1")
    lines = ["", "Input side, sinΘ between lora_A's top singular direction and G's (mean over layers and seeds):", "",
             "| method | " + " | ".join(f"t={int(t)}" for t in inp.columns) + " | min |",
             "|" + "---|" * (len(inp.columns) + 2)]
    for name, row in inp.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + f" | {row.min():.3f} |")
    return "\n".join(lines) + "\n"


def plot_alignment(angles: pd.DataFrame, save) -> None:
    """Rows: input and output side; columns: top-1, top-2, top-r*, the full r, the official truncated value.
    Solid: the factor's own SVD (lora_A input, lora_B output); dashed: ΔW's. One colour per method."""
    plt = pyplot()
    curves = alignment_curves(angles)
    methods = list(dict.fromkeys(curves["method.name"]))
    fig, axes = plt.subplots(2, 5, figsize=(17, 6.4), sharex=True, sharey=True)
    for i, side in enumerate(("input", "output")):
        for name in methods:
            c = curves[(curves["method.name"] == name) & (curves["side"] == side)].sort_values("step")
            color = None
            for j, (suffix, _) in enumerate(ALIGNMENT):
                line, = axes[i, j].plot(c["step"], c[f"factor_{suffix}"], "o-", ms=2.5, lw=1.3, color=color,
                                        label=name)
                color = line.get_color()
                axes[i, j].plot(c["step"], c[f"delta_{suffix}"], "--", lw=1, color=color)
            axes[i, 3].plot(c["step"], c["factor_full"], "o-", ms=2.5, lw=1.3, color=color)
            axes[i, 3].plot(c["step"], c["full"], "--", lw=1, color=color)
            axes[i, 4].plot(c["step"], c["truncated"], "--", lw=1, color=color)
        level = curves[curves["side"] == side]["truncated_random"].mean()
        axes[i, 4].axhline(level, color="0.5", lw=1, ls=":", label=f"random r-space {level:.2f}")
        axes[i, 4].legend(fontsize=7, loc="lower right")
        axes[i, 0].set_ylabel(f"{side} side ({'lora_A, paper A' if side == 'input' else 'lora_B, paper B'})\nsinΘ to G")
    for j, title in enumerate([t for _, t in ALIGNMENT] + ["full r", "official truncated (ΔW)"]):
        axes[0, j].set_title(title, fontsize=9)
        axes[1, j].set_xlabel("step")
    axes[0, 0].set_ylim(0, 1.02)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("sinΘ between the adapter's top-k singular subspace and the one-step gradient's (mean over layers "
                 "and seeds); solid: the factor's own SVD, dashed: ΔW's", fontsize=9)
    save(fig, "llm_alignment.png")


def report(sweep_dir, out_dir=None, more=()) -> Path:
    """Write the tables, report.md and figures into ``out_dir`` (default: ``sweep_dir``), from the
    jobs of ``sweep_dir`` and any ``more`` sweeps (several partial sweeps of one protocol)."""
    sweep_dir = Path(sweep_dir)
    tables = gather_many([sweep_dir, *more])
    target = Path(out_dir) if out_dir is not None else sweep_dir
    for name, frame in tables.items():
        if name != "angles" or "side" in frame:  # no angle was logged: no angles.csv of job columns alone
            write_csv(frame, target / f"{name}.csv")
    agg, chosen = compare(tables["results"], tables["summary"])
    text = markdown(chosen, agg, tables["summary"]) if not chosen.empty else "no job finished\n"
    angles = tables["angles"]
    if "factor_top1" in angles:
        text += alignment_markdown(angles[angles["job_status"] == "ok"])
        write_csv(alignment_curves(angles[angles["job_status"] == "ok"]), target / "alignment_curves.csv")
    summary = tables["summary"]
    compared = {m for pair in PAIRS for m in pair[:2]}
    if ("final_val_acc" in summary and "test_acc" in tables["results"]
            and summary["method.name"].isin(compared).any()):  # the pre-stated comparison (compare.py)
        done = summary[summary["job_status"] == "ok"]
        sizes = done.groupby("task.name")["test_examples"].max().to_dict() if "test_examples" in done else {}
        text += compare_markdown(tables["results"], done, sizes)
        chosen_on_val = choose_lr(done)
        if not chosen_on_val.empty:
            lines = compare_curves(tables["results"], done, chosen_on_val)
            write_csv(lines, target / "compare_curves.csv")
            plot_comparison(lines, target)
    atomic_write(target / "report.md", lambda tmp: Path(tmp).write_text(text))
    plot(tables["results"], tables["summary"], chosen, tables["angles"], target)
    return target / "report.md"


def plot_comparison(curves: pd.DataFrame, out_dir) -> str:
    """llm_compare.png: per task (rows), test accuracy and test loss against step for every method at
    its lr chosen on validation, mean ± 95 % t-interval over seeds (compare.curves)."""
    plt = pyplot()
    tasks = list(dict.fromkeys(curves["task.name"]))
    methods = list(dict.fromkeys(curves["method.name"]))
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}  # one colour per method across tasks
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 3.6 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        tc = curves[curves["task.name"] == task]
        for j, col in enumerate(("test_acc", "test_loss")):
            ax = axes[i, j]
            for method in dict.fromkeys(tc["method.name"]):
                c = tc[tc["method.name"] == method].dropna(subset=[col]).sort_values("step")
                if c.empty:
                    continue
                seeds = int(c[f"{col}_seeds"].min())
                ax.plot(c["step"], c[col], marker="o", ms=3, lw=1.3, label=f"{method} ({seeds} seeds)",
                        color=colour[method], ls="-" if method.startswith("lora_one") else "--")
                half = c[f"{col}_ci"].fillna(0)
                ax.fill_between(c["step"], c[col] - half, c[col] + half, color=colour[method], alpha=0.15)
            ax.set(xlabel="step", ylabel=f"{task}: test {'accuracy' if col == 'test_acc' else 'loss'}",
                   yscale="linear" if col == "test_acc" else "log")
        axes[i, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("each method at its lr chosen on validation (seed 0): mean ± 95 % t-interval over seeds",
                 fontsize=9)
    fig.tight_layout()
    save_png(fig, Path(out_dir) / "llm_compare.png")
    plt.close(fig)
    return "llm_compare.png"


class ReportCallback(Callback):
    """Hydra callback: the report when a multirun ends (conf/llm/llm.yaml registers it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        print(f"report: {report(Path(config.hydra.sweep.dir))}")


def main() -> None:
    """``lorasim-llm-report SWEEP_DIR [MORE_SWEEP_DIRS ...] [out=DIR]``."""
    args = sys.argv[1:]
    outs = [a.split("=", 1)[1] for a in args if a.startswith("out=")]
    dirs = [a for a in args if not a.startswith("out=")]
    if not dirs or any(d.startswith("-") for d in dirs) or len(outs) > 1:
        sys.stderr.write("usage: lorasim-llm-report SWEEP_DIR [MORE_SWEEP_DIRS ...] [out=DIR]\n")
        sys.exit(2)
    for d in dirs:
        if not Path(d).is_dir():
            error(f"dir={d!r}: allowed an existing lorasim-llm multirun folder")
    try:
        print(report(dirs[0], outs[0] if outs else None, more=dirs[1:]))
    except FileNotFoundError as e:
        error(f"dir={dirs[0]!r}: allowed a lorasim-llm multirun folder ({e})")


if __name__ == "__main__":
    main()
