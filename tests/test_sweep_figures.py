"""Figures that do not mislead (issue 12, section 3): steps to ε per method with an explicit
"not reached", one colour per method, legends outside the axes, labels in valid mathtext."""
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.mathtext import MathTextParser  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from lorasim import plots  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _close_drawn_figures():
    """The draw_* functions hand their figure to the caller, who closes it: here that is the test."""
    import matplotlib.pyplot as plt

    yield
    plt.close("all")

METHODS = ["vanilla_gd", "spectral_precgd", "lora_ga_precgd", "full_ft"]
RANKS, DIMS, SEEDS = [1, 2, 4, 8], [64, 128, 256, 512], [0, 1]


def _frames():
    """A rank_dim-like sweep with 2 seeds per cell (so a panel holds several jobs): LoRA methods reach
    ε only at r ≥ 4, full_ft everywhere; cell (r=2, d=128) failed (no finished job)."""
    results, summary, job = [], [], 0
    for r in RANKS:
        for d in DIMS:
            for seed in SEEDS:
                status = "error" if (r, d) == (2, 128) else "ok"
                config = {"job": job, "run.rank": r, "problem.d": d, "problem.k": d, "problem.seed": seed,
                          "run.risk_eps": 1e-10, "job_status": status}
                for m, method in enumerate(METHODS):
                    reached = method == "full_ft" or r >= 4
                    summary.append({**config, "method": method, "status": "ok", "risk_final": 10.0 ** -(m + r),
                                    "steps_to_eps": 20 + d // 16 + seed if reached else np.nan})
                    steps = np.arange(0, 30, 5)
                    results.append(pd.DataFrame({**config, "method": method, "step": steps,
                                                 "align_A": np.exp(-steps / (5 + m + seed)), "risk": 1.0}))
                job += 1
    return pd.concat(results, ignore_index=True), pd.DataFrame(summary)


def test_steps_to_eps_is_a_grid_per_method_with_not_reached_marked():
    """Old: one grid, the median over methods, so full_ft's steps filled the r = 1, 2 cells that no
    LoRA method reached; not reached and missing were both blank."""
    _, summary = _frames()
    grids = plots.steps_to_eps_grids(summary)
    assert list(grids) == METHODS
    lora, full = grids["vanilla_gd"]["steps"], grids["full_ft"]["steps"]
    assert lora.loc[1, 64] == plots.NOT_REACHED and lora.loc[2, 512] == plots.NOT_REACHED
    assert full.loc[1, 64] == 20 + 64 // 16 + 0.5  # its own median over the two seeds, never pooled
    assert lora.loc[4, 64] == full.loc[4, 64]
    assert np.isnan(lora.loc[2, 128]) and np.isnan(full.loc[2, 128])  # no finished job: missing, not "not reached"
    assert grids["full_ft"]["jobs"].loc[1, 64] == 2 and grids["vanilla_gd"]["reached"].loc[1, 64] == 0


def test_steps_to_eps_counts_a_job_that_missed_eps_in_the_median():
    _, summary = _frames()
    cell = (summary["run.rank"] == 4) & (summary["problem.d"] == 64) & (summary["method"] == "full_ft")
    summary.loc[cell & (summary["problem.seed"] == 1), "steps_to_eps"] = np.nan
    grid = plots.steps_to_eps_grids(summary)["full_ft"]
    assert grid["steps"].loc[4, 64] == plots.NOT_REACHED  # median of (24, never): not reached
    assert grid["reached"].loc[4, 64] == 1 and grid["jobs"].loc[4, 64] == 2


def test_the_heatmap_has_one_panel_per_method_and_labels_its_cells():
    _, summary = _frames()
    fig = plots.draw_sweep_steps_to_eps(summary)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title() in METHODS]
    assert sorted(ax.get_title() for ax in panels) == sorted(METHODS)
    texts = {ax.get_title(): [t.get_text() for t in ax.texts] for ax in panels}
    assert texts["vanilla_gd"].count("not\nreached") == 2 * 4 - 1 and texts["vanilla_gd"].count("no data") == 1
    assert "not\nreached" not in texts["full_ft"] and texts["full_ft"].count("no data") == 1
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "not reached" in legend and "no finished job" in legend


def _math_ok(text: str) -> bool:
    """Every $...$ part parses as mathtext, and no TeX markup is left outside $...$."""
    parts = text.split("$")
    if len(parts) % 2 == 0:
        return False
    for math in parts[1::2]:
        MathTextParser("path").parse(f"${math}$")
    return not any(re.search(r"[_^]\{|\\[a-zA-Z]", plain) for plain in parts[0::2])


def _figures():
    results, summary = _frames()
    colors = plots.method_colors(summary["method"])
    ok, done = results[results["job_status"] == "ok"], summary[summary["job_status"] == "ok"]
    one_run = results[results["job"] == 0].assign(risk=np.linspace(1, 1e-3, len(results[results["job"] == 0])))
    return {"alignment": plots.draw_sweep_alignment(ok, colors),
            "final_risk": plots.draw_sweep_final_risk(done, colors),
            "steps_to_eps": plots.draw_sweep_steps_to_eps(summary), "one_run": plots.draw_risk_and_alignment(one_run)}


def test_every_label_is_valid_mathtext():
    """Old: raw TeX outside $...$ (align_A = ‖U⊥(G♮)ᵀ U_{r*}(A_t)‖)."""
    for name, fig in _figures().items():
        texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
        assert any("$" in t for t in texts), name
        bad = [t for t in texts if not _math_ok(t)]
        assert not bad, (name, bad)


def test_one_colour_per_method_and_legends_outside_the_axes():
    """Old: alignment colours cycled per (method, job), so with two jobs per panel the legend named the
    wrong lines; the final-risk legend sat on the data, 16 lines in one panel."""
    results, summary = _frames()
    colors = plots.method_colors(summary["method"])
    figs = _figures()
    for name in ("alignment", "final_risk"):
        fig = figs[name]
        fig.canvas.draw()
        used = {tuple(line.get_color()) for ax in fig.axes for line in ax.get_lines()
                if line.get_linestyle() != "None"}
        assert used == {tuple(c) for c in colors.values()}, name
        entries = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert all(entries.count(m) == 1 for m in METHODS), entries
        box = fig.legends[0].get_window_extent()
        assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes if ax.get_visible()), name
    final = figs["final_risk"]
    assert len([ax for ax in final.axes if ax.get_visible()]) == len(RANKS)  # a panel per rank: 4 lines each
    for ax in final.axes:
        labels = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        assert len(labels) == len(DIMS)
        assert not any(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:])


@pytest.mark.parametrize("extra, expect", [
    (None, "problem.seed=1"),  # one column, two values: a line style each, named in the legend
    ("run.seed", "faint lines: one per job\n(up to 2 per panel)\nthey differ in problem.seed, run.seed"),
])
def test_what_else_varies_in_a_panel_is_in_the_legend(extra, expect):
    results, summary = _frames()
    if extra:  # two columns vary within a panel: one faint line per job
        results[extra] = results["problem.seed"]
    ok = results[results["job_status"] == "ok"]
    fig = plots.draw_sweep_alignment(ok, plots.method_colors(summary["method"]))
    entries = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
    assert expect in entries
