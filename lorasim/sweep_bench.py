"""Sweep-throughput benchmark: ``python -m lorasim.sweep_bench`` (or ``lorasim-sweep-bench``).

Runs one 100-job multirun (d ∈ {32, 64, 128, 256} × 25 problem seeds; spectral init + PrecGD;
500 steps, metrics every 10) through the ordinary ``lorasim -m`` command line, aggregation
included, and prints a table: total wall time, the time spent in training, and the per-job
overhead (everything else: hydra's job set-up, problem generation, writing outputs).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from .job import error


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=25, help="problem seeds per d (jobs = 4 × seeds)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--launcher", default="basic", help="basic (in-process, sequential) or local (joblib, 2 workers)")
    args = ap.parse_args(argv)
    for flag, value, ok, allowed in (("--seeds", args.seeds, args.seeds >= 1, "an integer ≥ 1"),
                                     ("--steps", args.steps, args.steps >= 1, "an integer ≥ 1"),
                                     ("--launcher", args.launcher, args.launcher in ("basic", "local"), "basic, local")):
        if not ok:
            error(f"{flag}={value!r}: allowed {allowed}")
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        cmd = [sys.executable, "-m", "lorasim", "-m", "problem.d=32,64,128,256", f"problem.seed=range(0,{args.seeds})",
               "problem.r_star=4", "methods=single", "init=spectral", "solver=precgd", "run.rank=8",
               f"run.steps={args.steps}", "run.log_every=10", "run.quiet=true", "run.figure=false",
               f"hydra.sweep.dir={sweep}"]
        if args.launcher == "local":
            cmd.append("hydra/launcher=local")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        start = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        total = time.perf_counter() - start
        if res.returncode != 0:
            sys.stderr.write(res.stderr[-2000:])
            sys.exit(1)
        summary = pd.read_csv(sweep / "aggregate_summary.csv")
    jobs = summary["job"].nunique()
    train_s = float(summary["wall_s"].sum())
    workers = 2 if args.launcher == "local" else 1
    rows = [
        ("jobs", f"{jobs}"),
        ("launcher", args.launcher),
        ("total wall (s), aggregation included", f"{total:.1f}"),
        ("training, summed over jobs (s)", f"{train_s:.1f}"),
        ("per-job overhead (s)", f"{(total * workers - train_s) / jobs:.3f}"),
        ("target", "total < 60 s"),
        ("met", "yes" if total < 60 else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    by_d = summary.groupby("problem.d")["wall_s"].mean()
    print("\nmean training time per job by d (s): " + ", ".join(f"d={d}: {t:.3f}" for d, t in by_d.items()))


if __name__ == "__main__":
    main()
