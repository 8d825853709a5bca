"""The pre-stated comparison (lorasim/llm/compare.py) on tables whose answers are known by hand: the lr
is chosen on validation only, a diverged seed disqualifies its lr, and the paired t-intervals and
verdicts are the textbook ones."""
import math

import pandas as pd
import pytest

from lorasim.llm.compare import choose_lr, differences, interval, markdown


def _tables(spec):
    """spec: {(method, lr): [(seed, val_acc, val_loss, test_acc_early, test_acc_end, status)]}."""
    summary, results = [], []
    for (method, lr), seeds in spec.items():
        for seed, val_acc, val_loss, early, end, status in seeds:
            job = f"{method}-{lr}-{seed}"
            summary.append({"job": job, "job_status": "ok", "status": status, "task.name": "arith",
                            "method.name": method, "lr": lr, "seed": seed, "final_val_acc": val_acc,
                            "final_val_loss": val_loss, "init_seconds": 1.0, "peak_memory_mb": 100.0})
            for step, acc in ((0, 0.0), (25, early), (200, end)):
                results.append({"job": job, "step": step, "test_acc": acc, "test_loss": 1 - acc,
                                "val_acc": val_acc, "val_loss": val_loss})
    return pd.DataFrame(results), pd.DataFrame(summary)


def test_interval_is_the_t_interval():
    mean, half, n = interval([0.10, 0.12, 0.14])
    assert n == 3 and mean == pytest.approx(0.12)
    assert half == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))
    assert math.isnan(interval([0.3])[1]) and interval([])[2] == 0


def test_lr_is_chosen_on_validation_never_on_test():
    # lr 1e-3 has the better test accuracy, 4e-3 the better validation accuracy: 4e-3 must win
    results, summary = _tables({
        ("lora", 1e-3): [(s, 0.40, 1.0, 0.5, 0.9, "ok") for s in range(3)],
        ("lora", 4e-3): [(s, 0.45, 1.2, 0.1, 0.2, "ok") for s in range(3)],
        ("lora", 1.6e-2): [(0, 0.90, 0.1, 0.1, 0.1, "diverged"), (1, 0.9, 0.1, 0.1, 0.1, "ok"),
                           (2, 0.9, 0.1, 0.1, 0.1, "ok")],  # best validation, but a seed diverged
    })
    chosen = choose_lr(summary)
    assert chosen["lr"].tolist() == [4e-3] and not chosen["at_edge"].iloc[0]
    # ties on validation accuracy go to the lower validation loss
    results, summary = _tables({("lora", 1e-3): [(0, 0.5, 0.9, 0, 0, "ok")], ("lora", 4e-3): [(0, 0.5, 0.7, 0, 0, "ok")]})
    chosen = choose_lr(summary)
    assert chosen["lr"].tolist() == [4e-3] and chosen["at_edge"].iloc[0]


def test_paired_differences_and_verdicts():
    results, summary = _tables({
        ("lora_one", 1e-3): [(0, .5, 1, 0.60, 0.80, "ok"), (1, .5, 1, 0.62, 0.80, "ok"), (2, .5, 1, 0.64, 0.70, "ok")],
        ("lora", 1e-3): [(0, .5, 1, 0.50, 0.80, "ok"), (1, .5, 1, 0.50, 0.80, "ok"), (2, .5, 1, 0.50, 0.80, "ok")],
        ("rslora", 1e-3): [(0, .5, 1, 0.70, 0.90, "ok"), (1, .5, 1, 0.71, 0.91, "ok"), (2, .5, 1, 0.72, 0.92, "ok")],
    })
    chosen = choose_lr(summary)
    d = differences(results, summary, chosen, {"arith": 400}).set_index(["b", "point"])
    early = d.loc[("lora", "early")]
    assert early["step"] == 25 and early["diff"] == pytest.approx(0.12)
    assert early["ci_low"] == pytest.approx(0.12 - 4.302652729911275 * 0.02 / math.sqrt(3))
    assert early["verdict"] == "supported" and early["binomial_sd"] == pytest.approx(0.025)
    assert d.loc[("lora", "end"), "verdict"] == "not separated"  # diffs 0, 0, −0.1
    assert d.loc[("rslora", "early"), "verdict"] == "contradicted"  # diffs −0.1, −0.09, −0.08
    assert d.loc[("rslora", "end"), "step"] == 200
    # no lora_one_prec jobs: that pair is absent, not invented
    assert "lora_one_prec" not in set(d["a"])
    text = markdown(results, summary, {"arith": 400})
    assert "| arith | lora_one − lora | early (25) | 3 |" in text and "supported" in text
