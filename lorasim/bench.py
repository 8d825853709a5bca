"""``lorasim-bench`` (= ``python -m lorasim.bench``): step speed against the hardware and a hand-rolled loop.

    lorasim-bench                       # on CUDA if present: d ∈ {1024, 4096, 16384}; then T1 on CPU
    lorasim-bench --device cpu          # CPU sizes (d ∈ {256, 1024}) and T1
    lorasim-bench --only t1             # just the T1 comparison
    lorasim-bench --only profile --sizes 16384 --ranks 16 --batches 1   # where one step's time goes

The step is one GD update of the linear model from its sufficient statistics,

    ∇_A = Σ̂ A (B Bᵀ) − G Bᵀ,        ∇_B = (Aᵀ Σ̂ A) B − Aᵀ G,

for a batch of b runs sharing Σ̂ and G (lorasim.engine). It must read Σ̂ (d²) and G (dk) once,
and do 2d²w + 4dkw flops (w = b·r) plus O((d + k) w r) for the small products: that gives
the floor, max(bytes / copy bandwidth, flops / fp32 GEMM rate), with both ceilings measured in
the same call (a device-to-device copy counting bytes read plus written; a 8192³ fp32 matmul).

Columns: ms/step of lorasim's step (CUDA graph, fused G pass), its multiple of the floor,
achieved GB/s and TFLOP/s and their share of the ceilings; the same step without CUDA graphs
(eager) and without the fused kernel (plain); and the hand-rolled loop — the paper's notebook
style: the residual over all N = 16d samples each step, and a full SVD of A each step for the
alignment metric — with lorasim's speed-up over it. A batch's hand-rolled time is b times one
run's (it runs the b runs one after another).

T1 (CPU): the paper's T1 configuration (d = k = 100, r = 8, r* = 4, N = 1600, GD η = 1/64,
1500 steps, α² ∈ {1, …, 1e-4}), hand-rolled per α with metrics every step (in torch, and the same loop
in numpy: ``speedup_np``) against one lorasim batch: the preset's figure rows (risk and align_A: what its
figure draws) at every step, from the teacher's factors and from G, the align and lean rows, the full
25-column rows at every step and at longer log intervals, and the steps alone (risk rows at the two ends);
the curves are compared at the common steps (``np_vs_torch_diff``: the two hand-rolled loops against each
other, the larger of the relative risk and the absolute alignment differences).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import kernels, streams
from .engine import LOG_CHUNK_STEPS, Stepper, as_solver_config, capturable_linalg, train_batch
from .io import write_csv
from .job import error
from .kernels import timed
from .linalg import set_threads
from .problems import LinearTeacher
from .solvers import make_solver

GPU_SIZES, CPU_SIZES = [1024, 4096, 16384], [256, 1024]
RANKS, BATCHES = [8, 16, 64], [1, 64]
T1_ALPHA2 = [1.0, 1e-1, 1e-2, 1e-3, 1e-4]


# -- ceilings --------------------------------------------------------------------------------
def ceilings(dev) -> dict:
    """Copy bandwidth (bytes read + written per second) and the fp32 / tf32 GEMM rates."""
    n_copy = (2**29 if dev.type == "cuda" else 2**25)  # float32 elements: 2 GiB / 128 MiB
    src = torch.randn(n_copy, device=dev)
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / timed(lambda: dst.copy_(src), dev, reps=20)
    n = 8192 if dev.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        fp32 = 2 * n**3 / timed(lambda: a @ b, dev, reps=10)
        tf32 = math.nan
        if dev.type == "cuda":
            torch.set_float32_matmul_precision("high")
            tf32 = 2 * n**3 / timed(lambda: a @ b, dev, reps=10)
    finally:
        torch.set_float32_matmul_precision(old)
    return {"copy_GBps": bw / 1e9, "fp32_TFLOPs": fp32 / 1e12, "tf32_TFLOPs": tf32 / 1e12}


def step_cost(d: int, k: int, r: int, b: int, elt: int = 4) -> tuple[float, float]:
    """(bytes, flops) every step must move and do: Σ̂ and G once, the factors read and written."""
    w = b * r
    bytes_ = (d * d + d * k) * elt + 2 * 2 * w * (d + k) * elt
    flops = 2 * d * d * w + 4 * d * k * w + b * (4 * d * r * r + 4 * k * r * r)
    return bytes_, flops


# -- instances -------------------------------------------------------------------------------
@dataclass
class Instance:
    problem: LinearTeacher
    X: torch.Tensor
    Y: torch.Tensor
    W0: torch.Tensor
    delta: torch.Tensor
    U_G: torch.Tensor


def instance(d: int, r_star: int, dev, dtype=torch.float32, seed: int = 0, n_over_d: int = 16) -> Instance:
    """A linear teacher with its raw data kept (the hand-rolled loop needs X and Y)."""
    def draw(what, *shape):  # each array from a stream of its own (lorasim.streams)
        return torch.randn(*shape, generator=streams.generator(seed, f"bench/{what}", dev), device=dev, dtype=dtype)

    n = n_over_d * d
    X = draw("X", n, d)
    W0 = draw("W0", d, d) / math.sqrt(d)
    P = torch.linalg.qr(draw("P", d, r_star))[0]
    Q = torch.linalg.qr(draw("Q", d, r_star))[0]
    delta = P @ Q.T
    Y = X @ (W0 + delta)
    prob = LinearTeacher.from_arrays(X=X, Y=Y, W0=W0, dtype="float32" if dtype == torch.float32 else "float64",
                                     device=str(dev))
    # The hand-rolled metric projects on the complement of G's top-r* left subspace. Its cost does
    # not depend on the values, so above d = 4096 a random orthonormal basis stands in for G's
    # (a full SVD of a 16384² matrix would take longer than the whole benchmark).
    U_G = torch.linalg.svd(prob.G)[0] if d <= 4096 else torch.linalg.qr(draw("U_G", d, d))[0]
    return Instance(prob, X, Y, W0, delta, U_G)


# -- the two loops ---------------------------------------------------------------------------
def hand_rolled_gd(X, Y, W0, delta, U_G, A, B, lr: float, steps: int, r_star: int):
    """The notebook's GD: full residual over the N samples, full SVD of A, metrics every step.
    Returns the risk and alignment curves (steps + 1 points, the state before each update).
    Torch tensors run through torch (oneMKL in its CPU wheels), numpy arrays through numpy (OpenBLAS):
    the same loop, line for line."""
    n = X.shape[0]
    la = np.linalg if isinstance(X, np.ndarray) else torch.linalg
    G_perp = U_G[:, r_star:]
    risk, align = [], []
    for _ in range(steps + 1):
        risk.append(0.5 * float(la.norm(A @ B - delta, "fro")) ** 2)
        UA = la.svd(A)[0]
        align.append(float(la.norm(G_perp.T @ UA[:, :r_star], 2)))
        R = X @ (W0 + A @ B) - Y
        gW = X.T @ R / n
        A, B = A - lr * (gW @ B.T), B - lr * (A.T @ gW)
    return np.array(risk[:steps + 1]), np.array(align[:steps + 1])


@contextlib.contextmanager
def engine_stepper(prob, r: int, b: int, dev, graphs: bool, fused):
    """A ``Stepper`` of b batched GD runs at rank r (no metrics: the step alone), inside the problem's
    matmul mode; ``fused`` as ``LinearTeacher.fused`` (False: plain matmuls; a dict: a tuned launch)."""
    A = 1e-3 * torch.randn(b, prob.d, r, generator=streams.generator(0, "bench/A", dev), device=dev, dtype=prob.dtype)
    B = 1e-3 * torch.randn(b, r, prob.k, generator=streams.generator(0, "bench/B", dev), device=dev, dtype=prob.dtype)
    slv = make_solver(as_solver_config("gd", 1e-3), lr=torch.full((b, 1, 1), 1e-3, device=dev, dtype=prob.dtype))
    prob.fused = fused
    with prob.matmul_mode(), capturable_linalg(dev):
        yield Stepper(prob, slv, A, B, use_graphs=graphs and dev.type == "cuda")


def engine_step_time(prob, r: int, b: int, dev, graphs: bool, fused, reps: int) -> float:
    """Seconds per step of ``engine_stepper``'s runs."""
    per_call = 20 if dev.type == "cuda" else 5
    with engine_stepper(prob, r, b, dev, graphs, fused) as st:
        return timed(lambda: st.advance(per_call), dev, reps=reps) / per_call


def hand_rolled_step_time(inst: Instance, r: int, dev, steps: int) -> float:
    A = 1e-3 * torch.randn(inst.problem.d, r, generator=streams.generator(0, "bench/A", dev), device=dev,
                           dtype=inst.X.dtype)
    B = torch.zeros(r, inst.problem.k, device=dev, dtype=inst.X.dtype)
    return timed(lambda: hand_rolled_gd(inst.X, inst.Y, inst.W0, inst.delta, inst.U_G, A, B, 1e-3, steps, 4),
                 dev, reps=1, warmup=1) / (steps + 1)


# -- the tables ------------------------------------------------------------------------------
def speed_table(dev, sizes, ranks, batches, dtypes, hand_rolled_max_d: int, reps: int, ceil: dict,
                kernel=True) -> pd.DataFrame:
    """One row per d × dtype × rank × batch; ``kernel``: the fused pass's setting (``LinearTeacher.fused``)."""
    rows = []
    for d in sizes:
        inst = instance(d, 4, dev)
        hand = {}
        for dtype in dtypes:
            prob = inst.problem
            prob.tf32 = dtype == "tf32"
            for r in ranks:
                if d <= hand_rolled_max_d and r not in hand:
                    hand[r] = hand_rolled_step_time(inst, r, dev, steps=1 if d > 4096 else 3)
                for b in batches:
                    t = engine_step_time(prob, r, b, dev, graphs=True, fused=kernel, reps=reps)
                    small = d <= 4096 or b == 1
                    t_eager = engine_step_time(prob, r, b, dev, graphs=False, fused=kernel, reps=reps) if small else math.nan
                    t_plain = engine_step_time(prob, r, b, dev, graphs=True, fused=False, reps=reps) if small else math.nan
                    bytes_, flops = step_cost(d, d, r, b)
                    gemm = ceil["tf32_TFLOPs"] if dtype == "tf32" else ceil["fp32_TFLOPs"]
                    floor = max(bytes_ / (ceil["copy_GBps"] * 1e9), flops / (gemm * 1e12))
                    t_hand = hand.get(r, math.nan) * b
                    rows.append({
                        "d": d, "r": r, "b": b, "dtype": dtype, "split": _split_of(kernel),
                        "sigma_halves": LinearTeacher.sigma_halves, "ms_step": 1e3 * t, "floor_ms": 1e3 * floor,
                        "x_floor": t / floor, "GBps": bytes_ / t / 1e9, "pct_copy_bw": 100 * bytes_ / t / (ceil["copy_GBps"] * 1e9),
                        "TFLOPs": flops / t / 1e12, "pct_gemm": 100 * flops / t / (gemm * 1e12),
                        "eager_ms": 1e3 * t_eager, "plain_ms": 1e3 * t_plain,
                        "hand_rolled_ms": 1e3 * t_hand, "speedup": t_hand / t})
                    print(_fmt_row(rows[-1]), flush=True)
        del inst
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return pd.DataFrame(rows)


def _split_of(kernel) -> str:
    """The tf32x3 split a speed row's two-sided pass was set to (``kernels.SPLITS``)."""
    return kernel.get("split", kernels.CONFIG["split"]) if isinstance(kernel, dict) else kernels.CONFIG["split"]


def profile_table(dev, sizes, ranks, batches, dtypes, steps: int = 20, top: int = 12) -> pd.DataFrame:
    """Where a step's time goes: the ``top`` kernels (CPU: operators, and the rest of the wall time, which is
    numpy's BLAS products and Python) of ``steps`` eager steps under torch.profiler, per step, with their
    share of the profiled total, for each d × dtype × rank × batch.
    Eager, so every kernel is seen; a CUDA graph replays the same kernels without the launch gaps."""
    from torch.profiler import ProfilerActivity, profile

    cuda = dev.type == "cuda"
    rows = []
    for d in sizes:
        prob = instance(d, 4, dev).problem
        for dtype in dtypes:
            prob.tf32 = dtype == "tf32"
            for r in ranks:
                for b in batches:
                    with engine_stepper(prob, r, b, dev, graphs=False, fused=True) as st:
                        st.advance(2)  # warm-up: Triton compilation, cuBLAS handles
                        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                        with profile(activities=activities) as prof:
                            wall = time.perf_counter()
                            st.advance(steps)
                            if cuda:
                                torch.cuda.synchronize(dev)
                            wall = time.perf_counter() - wall
                    events = []
                    for e in prof.key_averages():
                        if cuda:  # kernels only: an operator's device time is its kernels', counted already
                            us = getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
                            is_kernel = str(getattr(e, "device_type", "")).endswith("CUDA")
                        else:
                            us, is_kernel = e.self_cpu_time_total, True
                        if is_kernel and us > 0:
                            events.append((e.key, e.count, us))
                    total = sum(us for _, _, us in events)
                    if not cuda:  # the step's products run in numpy's BLAS, which torch's profiler does not see
                        events.append(("numpy BLAS products and Python (wall − torch ops)", steps,
                                       max(0.0, 1e6 * wall - total)))
                        total = max(total, 1e6 * wall)
                    for name, count, us in sorted(events, key=lambda x: -x[2])[:top]:
                        rows.append({"d": d, "r": r, "b": b, "dtype": dtype, "split": kernels.CONFIG["split"],
                                     "sigma_halves": LinearTeacher.sigma_halves, "kernel": name[:70],
                                     "calls_per_step": count / steps, "us_per_step": us / steps,
                                     "pct": 100 * us / total, "step_us": total / steps})
                    print(f"d={d} r={r} b={b} dtype={dtype}: {total / steps:.1f} us of kernels per step", flush=True)
        del prob
        if cuda:
            torch.cuda.empty_cache()
    return pd.DataFrame(rows)


def _compiles(pattern: str) -> bool:
    import re

    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _fmt_row(row: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


# (metrics, log_every, G): the preset first (figure: risk and align_A, the hand-rolled loop's columns); the last row logs
# only the ends (the steps alone: what rows cost is the rest). G "teacher": T1's labels are the teacher's own,
# noise-free, as in the paper_t1 preset, so the step reads ΔW's factors (LinearTeacher.teacher_factors); "data": the
# same problem with ``teacher_step = False``, so the step reads G (what noisy labels or any data get).
T1_REPEATS = 3
T1_SETTINGS = (("figure", 1, "teacher"), ("figure", 1, "data"), ("align", 1, "teacher"), ("lean", 1, "teacher"),
               ("full", 1, "teacher"), ("full", 10, "teacher"), ("full", 25, "teacher"), ("risk", 1500, "teacher"))


def t1_table(settings=T1_SETTINGS, steps: int = 1500) -> pd.DataFrame:
    """T1 on the CPU: the hand-rolled loop per α against one lorasim batch; float64 both. The hand-rolled
    loop logs risk and align_A at every step, so the speed-up at log_every > 1 logs fewer rows."""
    dev = torch.device("cpu")
    inst = instance(100, 4, dev, dtype=torch.float64, n_over_d=16)
    # T1's W0 ~ N(0, 1) and ΔW = P Qᵀ of rank 4 as in the notebook (instance() draws W0/√d).
    W0 = torch.randn(100, 100, generator=streams.generator(11, "bench/W0_t1"), dtype=torch.float64)
    Y = inst.X @ (W0 + inst.delta)
    probs = {which: LinearTeacher.from_arrays(X=inst.X, Y=Y, W0=W0, delta=inst.delta, r_star=4)
             for which in ("teacher", "data")}
    probs["data"].teacher_step = False
    U_G = torch.linalg.svd(probs["data"].G)[0]
    g = streams.generator(11, "bench/A0_t1")
    A0s = [math.sqrt(a2) * torch.randn(100, 8, generator=g, dtype=torch.float64) for a2 in T1_ALPHA2]
    B0 = torch.zeros(8, 100, dtype=torch.float64)
    # First calls are not timed, for either loop, and both are timed after all of them: the process's allocator
    # state sets both loops' speed. One 16 MB tensor allocated and freed before the hand-rolled loop (lorasim's kept
    # states are that size) made it 15–20 % faster, 2.8–3.2 s an α against 3.2–3.9; the reading is glibc's dynamic
    # mmap threshold, below which its 1.3 MB temporaries are mapped and unmapped at every step. Each first call runs
    # to lorasim's first flush (one log chunk): a first run in a fresh process touches ~7,400 new pages (its kept
    # states and the rows' block temporaries, ≈ 29 MB) and took 0.33–0.35 s where later runs took 0.31–0.33.
    warm = LOG_CHUNK_STEPS + 1
    for metrics, which in {(m, w) for m, _, w in settings}:
        train_batch(probs[which], [(A0, B0) for A0 in A0s], solver="gd", lr=1 / 64, steps=warm, metrics=metrics)
    hand_rolled_gd(inst.X, Y, W0, inst.delta, U_G, A0s[0], B0, 1 / 64, warm, 4)
    t = time.perf_counter()
    ref = [hand_rolled_gd(inst.X, Y, W0, inst.delta, U_G, A0, B0, 1 / 64, steps, 4) for A0 in A0s]
    t_hand = time.perf_counter() - t
    # The same loop through numpy: on the AMD CPUs measured here oneMKL's products are slower than OpenBLAS's, so
    # this is the leaner baseline (11.9–12.7 s against torch's 14.5–16.6 in five runs; benchmarks.md). Both are
    # reported; the issue stated its target against the torch loop.
    arrays = [x.numpy() for x in (inst.X, Y, W0, inst.delta, U_G, B0)]
    hand_rolled_gd(*arrays[:5], A0s[0].numpy(), arrays[5], 1 / 64, warm, 4)
    t = time.perf_counter()
    ref_np = [hand_rolled_gd(*arrays[:5], A0.numpy(), arrays[5], 1 / 64, steps, 4) for A0 in A0s]
    t_hand_np = time.perf_counter() - t
    np_vs_torch = max(max(float(np.max(np.abs(risk_np - risk) / risk)), float(np.max(np.abs(align_np - align))))
                      for (risk_np, align_np), (risk, align) in zip(ref_np, ref))
    rows = []
    for metrics, every, which in settings:
        # The median of T1_REPEATS runs: one 0.3 s run can catch a hiccup (0.36 s once, right after the hand-rolled
        # loop, where its two repeats took 0.31 and 0.32); the hand-rolled loop's time is already a sum over 5 runs.
        times = []
        for _ in range(T1_REPEATS):
            t = time.perf_counter()
            trajs = train_batch(probs[which], [(A0, B0) for A0 in A0s], solver="gd", lr=1 / 64, steps=steps,
                                log_every=every, metrics=metrics)
            times.append(time.perf_counter() - t)
        t_ours = float(np.median(times))
        risk_err = align_err = 0.0
        for (risk, align), tr in zip(ref, trajs):
            df = tr.to_frame()
            at = df["step"].to_numpy()
            risk_err = max(risk_err, float(np.max(np.abs(df["risk"].to_numpy() - risk[at]) / risk[at])))
            if "align_A" in df:  # the risk set has no alignment column
                align_err = max(align_err, float(np.max(np.abs(df["align_A"].to_numpy() - align[at]))))
            else:
                align_err = math.nan
        rows.append({"metrics": metrics, "log_every": every, "G": which, "points_per_curve": steps // every + 1,
                     "hand_rolled_s": t_hand, "hand_rolled_np_s": t_hand_np,
                     "lorasim_s": t_ours, "lorasim_min_s": min(times), "lorasim_max_s": max(times),
                     "speedup": t_hand / t_ours, "speedup_np": t_hand_np / t_ours, "max_rel_risk_diff": risk_err,
                     "max_abs_align_diff": align_err, "np_vs_torch_diff": np_vs_torch})
        print(_fmt_row(rows[-1]), flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    # The d = 16384 instance holds X, Y and the residual at 16 GiB each: on an 80 GB H100 the default allocator's
    # fragmentation ran it out of memory (14 GiB reserved but unallocated); expandable segments fit it. Read when
    # CUDA first allocates, so set before that; a user's own setting wins.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    ap = argparse.ArgumentParser(prog="lorasim-bench", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--only", default="all",
                    help="all | speed | t1 | kernel (block shapes of the fused pass, CUDA) | profile (kernels of a step) "
                         "| bias (the fused pass's signed error per precision, CUDA)")
    ap.add_argument("--sizes", type=int, nargs="+", help="d values (default: 1024 4096 16384 on CUDA, 256 1024 on CPU)")
    ap.add_argument("--ranks", type=int, nargs="+", default=RANKS)
    ap.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], help="float32 and/or tf32")
    ap.add_argument("--hand-rolled-max-d", type=int, default=16384)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: the per-core comparison)")
    ap.add_argument("--kernel-from", default=None,
                    help="a kernel table CSV (--only kernel --out): use its fastest float32-accurate configuration")
    ap.add_argument("--split", default=None,
                    help="how the fused passes split tf32x3's operands (kernels.SPLITS: auto | triton | hoisted); "
                         "default: kernels.CONFIG's")
    ap.add_argument("--sigma-halves", action="store_true",
                    help="the step forms Σ̂A from Σ̂'s upper 2×2 blocks (LinearTeacher.sigma_halves; ¾ of Σ̂'s bytes, "
                         "below the floor's count)")
    ap.add_argument("--match", default=None,
                    help="--only kernel: run only the variants whose name this regular expression finds")
    ap.add_argument("--out", default=None, help="write the tables as CSV files with this prefix")
    args = ap.parse_args(argv)

    dev_name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = dev_name.startswith("cuda")
    counts = (("--sizes", args.sizes or [1]), ("--ranks", args.ranks), ("--batches", args.batches))
    for flag, value, ok, allowed in (  # the first flag that is not ok is refused
            ("--only", args.only, args.only in ("all", "speed", "t1", "kernel", "profile", "bias"),
             "all, speed, t1, kernel, profile, bias"),
            ("--device", args.device, dev_name == "cpu" or cuda, "auto, cpu, cuda, cuda:N"),
            ("--device", args.device, not cuda or torch.cuda.is_available(), "auto or cpu (CUDA is not available)"),
            *((flag, values, all(v >= 1 for v in values), "integers ≥ 1") for flag, values in counts),
            ("--dtypes", args.dtypes, all(x in ("float32", "tf32") for x in args.dtypes), "float32, tf32"),
            ("--reps/--threads", (args.reps, args.threads), args.reps >= 1 and args.threads >= 1, "integers ≥ 1"),
            ("--split", args.split, args.split is None or args.split in kernels.SPLITS, ", ".join(kernels.SPLITS)),
            ("--match", args.match, args.match is None or _compiles(args.match), "a regular expression"),
            ("--match", args.match, args.match is None or args.only == "kernel", "only with --only kernel")):
        if not ok:
            error(f"{flag}={value!r}: allowed {allowed}")
    set_threads(args.threads)
    dev = torch.device(dev_name)
    sizes = args.sizes or (GPU_SIZES if dev.type == "cuda" else CPU_SIZES)
    pd.set_option("display.width", 250, "display.max_columns", 30)

    def show(table: pd.DataFrame, name: str) -> None:  # printed; with --out also <out><name>.csv
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if args.out:
            write_csv(table, f"{args.out}{name}.csv")

    if args.sigma_halves:  # this process's problems
        LinearTeacher.sigma_halves = True
    if args.split:  # both passes: this process's steps, profiles and kernel-table defaults
        kernels.CONFIG["split"] = kernels.CONFIG_ONE_SIDED["split"] = args.split
    kernel = True
    if args.kernel_from:
        kernel = kernels.best_kernel_config(pd.read_csv(args.kernel_from).to_dict("records")) or True
        if args.split and kernel is not True:  # --split over the table's
            kernel["split"] = args.split
        print("kernel configuration: " + _fmt_row({**kernels.CONFIG, **(kernel if kernel is not True else {})}))
    if args.only in ("all", "speed"):
        print(f"device: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
              f"fused kernel: {'yes' if kernels.triton is not None and dev.type == 'cuda' else 'no (torch.matmul)'}")
        ceil = ceilings(dev)
        print("ceilings: " + _fmt_row(ceil))
        show(speed_table(dev, sizes, args.ranks, args.batches, args.dtypes, args.hand_rolled_max_d, args.reps, ceil,
                         kernel), "speed")
        if args.out:
            write_csv(pd.DataFrame([ceil]), f"{args.out}ceilings.csv")
    if args.only == "kernel":
        if dev.type != "cuda" or kernels.triton is None:
            error("--only='kernel': allowed all, speed, t1 (the kernel table needs CUDA and Triton)")
        show(pd.DataFrame(kernels.kernel_table(dev, sizes=args.sizes or (16384,), reps=args.reps, match=args.match,
                                               report=lambda row: print(_fmt_row(row), flush=True))), "kernel")
    if args.only == "bias":
        if dev.type != "cuda" or kernels.triton is None:
            error("--only='bias': allowed all, speed, t1 (the bias table needs CUDA and Triton)")
        show(pd.DataFrame(kernels.bias_table(dev)), "bias")
    if args.only == "profile":
        show(profile_table(dev, sizes, args.ranks, args.batches, args.dtypes), "profile")
    if args.only in ("all", "t1"):
        t1 = t1_table()  # (its rows print as they are measured, before the heading)
        print("T1 on CPU (float64, 5 runs, 1500 steps):")
        show(t1, "t1")


if __name__ == "__main__":
    main()
