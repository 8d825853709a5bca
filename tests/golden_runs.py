"""The golden runs: frames that a refactor must reproduce bit for bit (tests/test_golden.py).

``python tests/golden_runs.py`` rewrites tests/golden/frames.json from the current code; do that
only when a change of numbers is intended and said in the commit message. Each value is stored
exactly (floats as float.hex), so the test compares bits, not a tolerance.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "golden" / "frames.json"
ENVIRONMENT = GOLDEN.parent / "environment.json"  # where frames.json was written


def environment() -> dict:
    """What sets the frames' last bits besides lorasim: torch's and numpy's versions, the instruction set of
    torch's CPU kernels, and numpy's BLAS build with the core type it chose."""
    import numpy as np
    from threadpoolctl import threadpool_info

    # numpy's BLAS only: scipy's own OpenBLAS joins threadpool_info once anything imports scipy, which made the test
    # skip (an "other environment") in a worker that had run a scipy test first
    libs = [i for i in threadpool_info() if i["user_api"] == "blas"]
    numpy_dir = Path(np.__file__).resolve().parent
    own = [i for i in libs if Path(i["filepath"]).resolve().parent.name == "numpy.libs"
           or numpy_dir in Path(i["filepath"]).resolve().parents]
    libs = own or libs
    blas = sorted(f"{i['internal_api']} {i.get('version')} {i.get('architecture')}" for i in libs)
    return {"torch": torch.__version__, "numpy": np.__version__, "torch_cpu": torch.backends.cpu.get_cpu_capability(),
            "blas": blas}


def verdict(frames: dict, stored: dict, here: dict, recorded: dict) -> tuple[str, str]:
    """("pass" | "fail" | "skip", why). Frames that differ fail where they were written, and are skipped, said,
    in another environment: bit-for-bit frames compare within one (on the H200 host's CPU, torch 2.11 and
    numpy 2.5.2, at least twelve frames differ in their last bits)."""
    if sorted(frames) != sorted(stored):
        return "fail", f"frame names differ: {sorted(set(frames) ^ set(stored))}"
    bad = [name for name in stored if frames[name] != stored[name]]
    if not bad:
        return "pass", ""
    if here != recorded:
        return "skip", (f"{len(bad)} of {len(stored)} frames differ in an environment other than the one that wrote "
                        f"them ({here} against {recorded}); bit-for-bit frames compare within one")
    return "fail", f"frames differ from the golden ones: {bad}"


def _problems():
    from lorasim import LinearTeacher, MatrixSensing, ReLUTeacher
    from lorasim.problems import LinearConfig, ReLUConfig, SensingConfig

    return {
        "linear": LinearTeacher(LinearConfig(d=24, k=18, r_star=3, n=200, kappa=3.0, noise=0.05, seed=11)),
        "linear_pop": LinearTeacher(LinearConfig(d=20, k=16, r_star=2, n="population", kappa=5.0, seed=4)),
        "relu": ReLUTeacher(ReLUConfig(d=12, k=8, r_star=2, n=600, seed=5)),
        "sensing": MatrixSensing(SensingConfig(n1=10, n2=9, r_star=2, m=300, kappa=2.0, seed=6)),
    }


def _single_runs():
    """(name, problem key, train keywords). Every init, every solver, both orders, full FT, risk-only."""
    return [
        ("small_random+gd", "linear", dict(init="small_random", rank=3, solver="gd", lr=0.2, steps=40)),
        ("spectral+precgd", "linear", dict(init="spectral", rank=3, solver="precgd", lr=0.5, steps=30)),
        ("lora_one+precgd_gs", "linear", dict(init="lora_one", rank=2, solver="precgd", lr=0.3, order="gauss_seidel",
                                              steps=30, init_kwargs={"gamma": 8.0})),
        ("lora_ga+adam", "linear", dict(init="lora_ga", rank=2, solver="adam", lr=1e-2, steps=30)),
        ("lora_ga_top_r+gd", "linear", dict(init="lora_ga", rank=2, solver="gd", lr=0.2, steps=20,
                                            init_kwargs={"direction": "top_r"})),
        ("pissa+scaled_adam", "linear", dict(init="pissa", rank=2, solver="scaled_adam", lr=1e-2, steps=30)),
        ("kaiming+scaled_adam_after_sim", "linear", dict(init="kaiming", rank=4, solver="scaled_adam", lr=5e-3,
                                                         precondition="after", order="simultaneous", steps=30,
                                                         init_seed=3)),
        ("small_random_both+adam_nobc", "linear_pop", dict(init="small_random", rank=2, solver="adam", lr=1e-2,
                                                           bias_correction=False, steps=25, log_every=5,
                                                           init_kwargs={"alpha": 1e-2, "both": True})),
        ("full_ft", "linear", dict(solver="full_ft", lr=0.5, steps=20, rank=3)),
        ("relu_small_random+gd", "relu", dict(init="small_random", rank=2, solver="gd", lr=0.5, steps=30)),
        ("relu_spectral+precgd", "relu", dict(init="spectral", rank=2, solver="precgd", lr=0.5, steps=20)),
        ("sensing_small_random+gd", "sensing", dict(init="small_random", rank=2, solver="gd", lr=0.2, steps=25,
                                                    init_seed=2)),
        ("sensing_spectral+precgd_gs", "sensing", dict(init="spectral", rank=3, solver="precgd", order="gauss_seidel",
                                                       lr=0.5, steps=20, init_kwargs={"pad": 1e-3})),
        ("risk_only+lr_ratio", "linear", dict(init="small_random", rank=3, solver="gd", lr=0.2, lr_ratio=2.0,
                                             steps=40, log_every=7, metrics="risk")),
        ("diverges", "linear", dict(init="spectral", rank=3, solver="gd", lr=40.0, steps=50)),
    ]


def _batch_runs():
    """(name, problem key, train_batch keywords): mixed ranks, per-run lr, a diverging run, Adam."""
    return [
        ("batch_precgd_mixed_rank", "linear", dict(
            inits=[{"init": "small_random", "rank": 2, "seed": 1}, {"init": "spectral", "rank": 3, "seed": 0},
                   {"init": "small_random", "rank": 3, "seed": 2, "alpha": 1e-2}],
            solver="precgd", lr=[0.3, 0.5, 0.4], steps=25, log_every=5)),
        ("batch_gd_diverge", "linear", dict(
            inits=[{"init": "spectral", "rank": 2}, {"init": "spectral", "rank": 2}],
            solver="gd", lr=[0.2, 60.0], steps=20, log_every=2)),
        ("batch_adam_gs", "relu", dict(
            inits=[{"init": "kaiming", "rank": 2, "seed": 0}, {"init": "lora_one", "rank": 2}],
            solver="scaled_adam", lr=1e-2, steps=20, log_every=4)),
        ("batch_sensing_risk", "sensing", dict(
            inits=[{"init": "small_random", "rank": 2, "seed": 3}],
            solver="gd", lr=0.2, steps=20, log_every=5, metrics="risk")),
    ]


def _encode(frame) -> dict:
    cols = {}
    for name in frame.columns:
        values = []
        for v in frame[name].tolist():
            if isinstance(v, float):
                values.append({"f": v.hex()} if not math.isnan(v) else {"f": "nan"})
            elif v is None:
                values.append(None)
            else:
                values.append(v)
        cols[name] = values
    return {"columns": list(frame.columns), "values": cols}


CLI_RUNS = {  # the app's files for the headline methods and a ReLU single run (wall_s dropped)
    "cli/headline": ["problem.d=20", "problem.k=16", "problem.n=200", "run.steps=20", "run.rank=3"],
    "cli/relu_single": ["problem=relu", "methods=single", "init=spectral", "solver=precgd", "run.steps=15",
                        "run.rank=2", "run.log_every=3"],
}


def cli_frames() -> dict:
    import subprocess
    import sys

    import pandas as pd

    out = {}
    for name, overrides in CLI_RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "lorasim", *overrides, "run.figure=false", "run.quiet=true",
                            "run.threads=1", f"hydra.run.dir={tmp}"], check=True, capture_output=True)
            out[f"{name}/results"] = _encode(pd.read_csv(Path(tmp) / "results.csv"))
            out[f"{name}/summary"] = _encode(pd.read_csv(Path(tmp) / "summary.csv").drop(columns="wall_s"))
    return out


def compute() -> dict:
    from lorasim import train, train_batch

    torch.set_num_threads(1)
    problems = _problems()
    out = {}
    for name, key, kw in _single_runs():
        traj = train(problems[key], **kw)
        out[f"single/{name}"] = _encode(traj.to_frame())
    for name, key, kw in _batch_runs():
        kw = dict(kw)
        inits = kw.pop("inits")
        for i, traj in enumerate(train_batch(problems[key], inits, **kw)):
            out[f"batch/{name}/{i}"] = _encode(traj.to_frame())
    out.update(cli_frames())
    return out


def main() -> None:
    from lorasim.io import atomic_write

    frames = compute()
    for path, obj, indent in ((GOLDEN, frames, 0), (ENVIRONMENT, environment(), 1)):
        atomic_write(path, lambda tmp, obj=obj, indent=indent: Path(tmp).write_text(
            json.dumps(obj, indent=indent, sort_keys=True)))
    print(f"wrote {len(frames)} frames to {GOLDEN}, and where they were written to {ENVIRONMENT}")


if __name__ == "__main__":
    main()
