"""The comparison stated in the README before its runs (issue 16): each method's lr chosen on the
validation split, then the paper's claims as paired differences of test accuracy over seeds.

    choose_lr     per (task, method): the lr of the grid with the highest mean validation accuracy at
                  the last step over the selection seeds (ties: lower mean validation loss); an lr with a
                  diverged or unfinished seed is out. The test split plays no part.
    second_stage  the commands that run the further seeds at each chosen lr (``python -m
                  lorasim.llm.compare``): the grid is tried on seed 0 alone, the README's amendment 2.
    differences   for each pre-stated pair (a, b) and point (the first evaluation after step 0, "early",
                  and the last step, "end"): the per-seed differences of test accuracy a − b at the
                  chosen lrs (paired: a seed fixes the batch order and each method's random draws), their
                  mean and 95 % t-interval, and the verdict: "supported" (interval above 0),
                  "contradicted" (below 0) or "not separated".
    method_table  every method at its chosen lr: test accuracy and loss early and at the end, mean ± 95 %
                  t-interval over seeds, init seconds, peak memory.
    curves        every method's evaluation curves at its chosen lr, mean ± 95 % t-interval over seeds.

The intervals are over seeds only: a test split of n examples adds a binomial spread of up to 0.5/√n
to each method's accuracy, reported beside the differences (``binomial_sd``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

# (a, b, what the difference a − b tests); the paper's claim is a ≥ b for each
PAIRS = (("lora_one", "lora", "LoRA-One vs vanilla LoRA (α/r)"),
         ("lora_one", "rslora", "LoRA-One vs rsLoRA (LoRA-One's own scaling)"),
         ("lora_one_prec", "lora_one", "the preconditioner (official AdamWr) on LoRA-One"))
GROUP = ["task.name", "method.name"]
SELECTION_SEEDS = (0,)  # the seeds an lr is chosen on (README, amendment 2); the others run at the choice only
FURTHER_SEEDS = (1, 2)


def interval(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95 % t-interval, n) of ``values`` (NaN half-width for n < 2)."""
    v = np.asarray([x for x in values if not pd.isna(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    return float(v.mean()), float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def choose_lr(summary: pd.DataFrame, seeds=SELECTION_SEEDS) -> pd.DataFrame:
    """One row per (task, method): the chosen lr (and its lr_mult where recorded), its grid, how many
    seeds it was chosen on, and whether the choice sits at an edge of the grid (then the grid may not
    bracket the best lr). Only ``seeds`` take part (None: all), so the further seeds run at the
    chosen lr alone cannot tilt the choice towards it."""
    rows = []
    if seeds is not None:
        summary = summary[summary["seed"].isin(seeds)]
    for key, jobs in summary.groupby(GROUP):
        grid = sorted(jobs["lr"].unique())
        cands = []
        for lr, at in jobs.groupby("lr"):
            clean = (at["job_status"] == "ok") & (at["status"] == "ok")
            if not clean.all():
                continue
            cands.append((-at["final_val_acc"].mean(), at["final_val_loss"].mean(), lr, at["seed"].nunique()))
        if not cands:
            continue
        _, _, lr, seeds = min(cands, key=lambda c: (c[0], c[1] if not pd.isna(c[1]) else math.inf))
        mults = jobs.loc[jobs["lr"] == lr, "lr_mult"].unique() if "lr_mult" in jobs else []
        rows.append({**dict(zip(GROUP, key)), "lr": lr, "lr_mult": float(mults[0]) if len(mults) == 1 else math.nan,
                     "lr_grid": ", ".join(f"{g:g}" for g in grid), "seeds": seeds,
                     "at_edge": len(grid) > 1 and lr in (grid[0], grid[-1])})
    return pd.DataFrame(rows)


def _unfinished_grid(summary: pd.DataFrame) -> pd.Series:
    """Rows of the (task, method)s with a job of the sweep that has not finished (error, incomplete):
    their lr cannot be chosen yet."""
    if "job_status" not in summary:
        return pd.Series(False, index=summary.index)
    open_ = summary.loc[summary["job_status"] != "ok", GROUP].drop_duplicates()
    keys = pd.MultiIndex.from_frame(summary[GROUP])
    return pd.Series(keys.isin(pd.MultiIndex.from_frame(open_)) if len(open_) else False, index=summary.index)


def second_stage(summary: pd.DataFrame, experiment: str, sweep_root: str, seeds=FURTHER_SEEDS,
                 extra: tuple = ()) -> list[str]:
    """One ``lorasim-llm`` multirun per method of a first-stage sweep (``experiment``): ``seeds`` at its
    chosen lr_mult, into ``sweep_root``/<method>. A method's reported name is its preset's (labels are
    the preset names), so it is also the ``method=`` override. A method whose grid has an unfinished
    job gets no command yet (its choice could still change); rerun once stage 1 has finished it."""
    seed_list = ",".join(str(s) for s in seeds)
    lines = []
    for _, c in choose_lr(summary[~_unfinished_grid(summary)]).iterrows():
        if pd.isna(c["lr_mult"]):
            raise ValueError(f"{c['method.name']}: no single lr_mult recorded for its chosen lr {c['lr']:g}")
        lines.append(" ".join(["lorasim-llm", "-m", f"experiment={experiment}", f"method={c['method.name']}",
                               f"lr_mult={c['lr_mult']:g}", f"seed={seed_list}", *extra,
                               f"hydra.sweep.dir={sweep_root}/{c['method.name']}"]))
    return lines


def _points(results: pd.DataFrame) -> dict[str, int]:
    """"early": the first step after 0 with a test evaluation; "end": the last one."""
    steps = sorted(results.dropna(subset=["test_acc"])["step"].unique())
    later = [s for s in steps if s > 0]
    return {"early": int(later[0]), "end": int(later[-1])} if later else {}


def _at_chosen(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """The curve rows of the chosen lr's jobs, with their seeds."""
    jobs = summary[["job", "lr", "seed", *GROUP]].merge(chosen[[*GROUP, "lr"]], on=[*GROUP, "lr"])
    cols = ["job", "step", "test_acc", "test_loss", "val_acc", "val_loss"]
    return results[[c for c in cols if c in results]].merge(jobs, on="job")


def differences(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame,
                test_sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """The pre-stated differences, one row per (task, pair, point)."""
    curves = _at_chosen(results, summary, chosen)
    rows = []
    for task, tc in curves.groupby("task.name"):
        points = _points(tc)
        n_test = (test_sizes or {}).get(task)
        for a, b, what in PAIRS:
            for point, step in points.items():
                at = tc[tc["step"] == step].pivot_table(index="seed", columns="method.name", values="test_acc")
                if a not in at or b not in at:
                    continue
                diff = (at[a] - at[b]).dropna()
                mean, half, n = interval(diff)
                lo, hi = mean - half, mean + half
                verdict = ("supported" if lo > 0 else "contradicted" if hi < 0 else "not separated") if n >= 2 \
                    else "too few seeds"
                rows.append({"task.name": task, "a": a, "b": b, "what": what, "point": point, "step": step,
                             "seeds": n, "mean_a": at[a].mean(), "mean_b": at[b].mean(), "diff": mean,
                             "ci_low": lo, "ci_high": hi, "verdict": verdict,
                             "binomial_sd": 0.5 / math.sqrt(n_test) if n_test else math.nan})
    return pd.DataFrame(rows)


def method_table(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every method at its chosen lr: test accuracy and loss early and at the end (mean, 95 % half-width)."""
    curves = _at_chosen(results, summary, chosen)
    rows = []
    for (task, method), mc in curves.groupby(GROUP):
        points = _points(curves[curves["task.name"] == task])
        row = {"task.name": task, "method.name": method}
        for point, step in points.items():
            at = mc[mc["step"] == step]
            for col in ("test_acc", "test_loss"):
                row[f"{col}_{point}"], row[f"{col}_{point}_ci"], row["seeds"] = interval(at[col])
        jobs = summary[(summary["task.name"] == task) & (summary["method.name"] == method)
                       & (summary["lr"].isin(mc["lr"].unique()))]
        row["init_seconds"] = jobs["init_seconds"].mean()
        row["peak_memory_mb"] = jobs["peak_memory_mb"].max()
        rows.append(row)
    return pd.DataFrame(rows)


def curves(results: pd.DataFrame, summary: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every method's evaluation curves at its chosen lr: per (task, method, step), the mean and 95 %
    t half-width over seeds of each evaluated column (steps where a column was not evaluated are NaN)."""
    at = _at_chosen(results, summary, chosen)
    cols = [c for c in ("test_acc", "test_loss", "val_acc", "val_loss") if c in at]
    rows = []
    for (task, method, step), g in at.groupby([*GROUP, "step"]):
        row = {"task.name": task, "method.name": method, "step": step}
        for c in cols:
            row[c], row[f"{c}_ci"], row[f"{c}_seeds"] = interval(g[c])
        rows.append(row)
    return pd.DataFrame(rows)


def _pm(mean, half, digits=3) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if not pd.isna(half) else f"{mean:.{digits}f}"


def markdown(results: pd.DataFrame, summary: pd.DataFrame, test_sizes: dict[str, int] | None = None) -> str:
    """The comparison's section of report.md."""
    chosen = choose_lr(summary)
    if chosen.empty:
        return ""
    diffs = differences(results, summary, chosen, test_sizes)
    table = method_table(results, summary, chosen)
    lines = ["", "## The pre-stated comparison's rule applied to these runs (README: \"The comparison, stated before its runs\")", "",
             "Learning rates chosen on validation accuracy at the last step of the selection seed(s) (README, amendment 2: seed 0); test never used:", "",
             "| task | method | lr grid | chosen lr | seeds | at grid edge |", "|---|---|---|---|---|---|"]
    for _, c in chosen.iterrows():
        lines.append(f"| {c['task.name']} | {c['method.name']} | {c['lr_grid']} | {c['lr']:g} | {c['seeds']} | "
                     f"{'yes' if c['at_edge'] else 'no'} |")
    lines += ["", "Paired differences of test accuracy (a − b) over seeds, mean [95 % t-interval]:", "",
              "| task | a − b | point (step) | seeds | a | b | a − b | 95 % interval | verdict | test binomial sd |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, d in diffs.iterrows():
        lines.append(f"| {d['task.name']} | {d['a']} − {d['b']} | {d['point']} ({d['step']}) | {d['seeds']} | "
                     f"{d['mean_a']:.3f} | {d['mean_b']:.3f} | {d['diff']:+.3f} | [{d['ci_low']:+.3f}, "
                     f"{d['ci_high']:+.3f}] | {d['verdict']} | {d['binomial_sd']:.3f} |")
    lines += ["", "Every method at its chosen lr (test split; mean ± 95 % t half-width over seeds):", "",
              "| task | method | seeds | acc early | acc end | loss early | loss end | init s | peak MiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for _, t in table.iterrows():
        lines.append(f"| {t['task.name']} | {t['method.name']} | {t.get('seeds', '–')} | "
                     f"{_pm(t.get('test_acc_early'), t.get('test_acc_early_ci'))} | "
                     f"{_pm(t.get('test_acc_end'), t.get('test_acc_end_ci'))} | "
                     f"{_pm(t.get('test_loss_early'), t.get('test_loss_early_ci'))} | "
                     f"{_pm(t.get('test_loss_end'), t.get('test_loss_end_ci'))} | "
                     f"{t['init_seconds']:.1f} | {t['peak_memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    """``python -m lorasim.llm.compare SWEEP_DIR EXPERIMENT SWEEP_ROOT [override ...]``: print the
    second stage's commands (one per line) for a finished first-stage sweep."""
    import sys

    from .report import gather

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python -m lorasim.llm.compare SWEEP_DIR EXPERIMENT SWEEP_ROOT [override ...]", file=sys.stderr)
        raise SystemExit(2)
    summary = gather(args[0])["summary"]
    waiting = summary[_unfinished_grid(summary)][GROUP].drop_duplicates()
    for _, w in waiting.iterrows():
        print(f"{w['task.name']} {w['method.name']}: its lr grid has unfinished jobs; no stage-2 command yet",
              file=sys.stderr)
    lines = second_stage(summary, args[1], args[2], extra=tuple(args[3:]))
    if lines:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
