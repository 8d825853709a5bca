"""``lorasim-llm-bench``: each LoRA init's cost against the plain passes, and each factorisation's accuracy.

What each init costs against the plain passes over its init batches, and how accurate each
factorisation of the one-step gradient is against the exact SVD.

    lorasim-llm-bench                                  # CUDA: 135m (fp32), 1b and 7b (bf16), 8 batches of
                                                       # 16 × 256 tokens; CPU: 135m, 8 batches of 4 × 128
    lorasim-llm-bench --models 7b --only gradient svd sketch init --accumulate device offload cpu \
        --inits lora pissa lora_ga lora_one lora_one:official lora_one:sketch     # 7b without its skips
    lorasim-llm-bench --models 1b --dtype bf16 --out b_
    lorasim-llm-bench --models 7b --batch-size 4 --memory-cap 40 --only gradient sketch
    lorasim-llm-bench --models smollm2 --device cpu    # SmolLM2's real weights on a real task's batches

Models are random-weight Llamas of named shapes (135m: SmolLM2-135M, 1b: Llama-3.2-1B, 7b:
Llama-2-7B; built on the device, weights from the "bench/model" stream) fed random tokens
("bench/tokens"), or ``smollm2`` (the real model on the synthetic_topics task's init batches).
One table per model, a row per stage, columns

    stage         plain passes | target passes (only the target weights take gradients: a LoRA
                  backward's weight work) | gradient (where it is summed) | reference (the exact SVD
                  in --reference precision, fp64 by default) | svd <method> (on the gradient) |
                  sketch q=<q> passes=<p> (the passes + reconstruction) | init <method> (everything, from a
                  fresh model; lora_one:<svd> names the factorisation) | init lora_one…: gradient + svd
                  (the part of that init before peft wraps the model, timed inside it)
    seconds       wall time, device synchronised; × plain: seconds over the plain passes'
    peak_gib      peak device memory during the stage (torch's allocator; on the CPU, peak RSS)
    sin_U, sin_V  the largest sinΘ over layers between the stage's top-r subspaces and the reference's
    sin_median    the median over layers of the larger of the two
    rel_err       the largest over layers of ‖F̂ − F‖_F/‖F‖_F, F = [−G]_r/σ1 (what official LoRA-One
                  sets, up to the constant s/γ)
    gap           the largest σ_{r+1}/σ_r over layers (near 1: the top-r subspace itself is fragile)

Unless named, 7b skips what costs minutes there and says nothing the other shapes do not (SLOW_AT):
the svd stages (their float64 reference SVD of 224 layers), synchronous "cpu" accumulation and
pissa's exact SVD of every weight. A stage that runs out of memory is a row with status "oom", not a crash. ``--memory-cap`` caps the
process (torch.cuda.set_per_process_memory_fraction) for the gradient and sketch stages.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import threading
import time
from contextlib import contextmanager

import pandas as pd
import torch

from .. import streams
from ..io import write_csv
from ..job import error
from ..linalg import set_threads
from ..metrics import sin_theta
from .gradient import one_step_gradients, target_linear_names
from .methods import MethodConfig, prepare
from .sketch import sketched_top_r
from .svd import DEFAULT_SVD, SVD_METHODS, top_r

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings
    "135m": (576, 1536, 30, 9, 3, 49152, True),
    "1b": (2048, 8192, 16, 32, 8, 128256, True),
    "7b": (4096, 11008, 32, 32, 32, 32000, False),
    "tiny": (64, 96, 2, 4, 2, 259, False),
}
MODELS = (*SHAPES, "smollm2")
STAGES = ("gradient", "svd", "sketch", "init")  # the plain passes always run: they are the unit
INITS = ("lora", "pissa", "lora_ga", "lora_one", "lora_one:official", "lora_one:sketch")
SLOW_AT = {"7b": {"svd", "cpu", "pissa"}}  # skipped there unless --only / --accumulate / --inits name them
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


def random_llama(shape: str, dtype: torch.dtype, device, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[shape]
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                      tie_word_embeddings=tied)
    old = torch.get_default_dtype()
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    try:
        torch.set_default_dtype(dtype)
        with torch.random.fork_rng(devices=devices), torch.device(device):
            torch.manual_seed(streams.stream_seed(seed, "bench/model"))
            return LlamaForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(old)


def build(model_name: str, dtype, device, n_batches: int, batch_size: int, seq: int, seed: int = 0):
    """(model on ``device``, init batches on ``device``)."""
    if model_name == "smollm2":
        from .data import Batcher, load_task
        from .models import load_model

        model, tok, kind = load_model("smollm2")
        model = model.to(device=device, dtype=dtype)
        task = load_task("synthetic_topics")
        batcher = Batcher(task, tok, kind, max_text_tokens=seq)
        batches = [batcher(task.train[i * batch_size:(i + 1) * batch_size]) for i in range(n_batches)]
        return model, [{k: v.to(device) for k, v in b.items()} for b in batches]
    model = random_llama(model_name, dtype, device, seed)
    gen = streams.generator(seed, "bench/tokens")
    vocab = model.config.vocab_size
    ids = [torch.randint(0, vocab, (batch_size, seq), generator=gen) for _ in range(n_batches)]
    return model, [{"input_ids": i.to(device), "labels": i.to(device)} for i in ids]


# -- measuring -----------------------------------------------------------------------------------
class _PeakRSS(threading.Thread):
    """Peak resident memory of this process while it runs (the CPU's stand-in for the allocator's peak)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()

    def run(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)
            self.stop.wait(0.002)


@contextmanager
def measured(device, row: dict):
    """Fills row's seconds, peak_gib and status ("oom" when the device ran out of memory)."""
    dev = torch.device(device)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        watch = _PeakRSS()
        watch.start()
    start = time.perf_counter()
    row["status"] = "ok"
    try:
        yield
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    except torch.OutOfMemoryError:
        row["status"] = "oom"
    row["seconds"] = time.perf_counter() - start
    if dev.type == "cuda":
        row["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        watch.stop.set()
        watch.join()
        row["peak_gib"] = watch.peak / 2**30


def plain_passes(model, batches, only=None) -> None:
    """Forward and backward of every batch, every parameter taking gradients (a training step's work
    without the optimizer), or only the weights in ``only``; the gradients are dropped afterwards."""
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(only is None)
    for w in only or ():
        w.requires_grad_(True)
    try:
        for batch in batches:
            model(**batch).loss.backward()
    finally:
        for p, f in flags.items():
            p.grad = None
            p.requires_grad_(f)


def accuracy(spectra: dict, reference: dict, r: int) -> dict:
    """sin_U, sin_V, rel_err (worst layer) of ``spectra`` against ``reference`` (module docstring),
    in float64; F is formed layer by layer (a product of thin factors would lose half the digits)."""
    sin_u = sin_v = rel = 0.0
    worst = []
    for name, (U0, S0, V0) in reference.items():
        U0, S0, V0 = U0[:, :r].double(), S0[:r].double(), V0[:, :r].double()
        U, S, V = (t.to(device=U0.device, dtype=torch.float64) for t in spectra[name])
        su, sv = float(sin_theta(U0, U[:, :r])), float(sin_theta(V0, V[:, :r]))
        worst.append(max(su, sv))
        sin_u, sin_v = max(sin_u, su), max(sin_v, sv)
        F0 = (U0 * (S0 / S0[0])) @ V0.T
        rel = max(rel, float(torch.linalg.matrix_norm(F0 - (U[:, :r] * (S[:r] / S[0])) @ V[:, :r].T)
                             / torch.linalg.matrix_norm(F0)))
    return {"sin_U": sin_u, "sin_V": sin_v, "sin_median": float(torch.tensor(worst).median()), "rel_err": rel}


def bench_model(name: str, args, report) -> list[dict]:
    dtype, dev, r = DTYPES[args.dtype or ("fp32" if name in ("135m", "tiny", "smollm2") else "bf16")], args.device, args.r
    start = time.perf_counter()
    model, batches = build(name, dtype, dev, args.batches, args.batch_size, args.seq)
    print(f"{name}: built in {time.perf_counter() - start:.1f} s (not a stage; every init rebuilds it)", flush=True)
    base = {"model": name, "dtype": str(dtype).removeprefix("torch."), "device": dev, "r": r,
            "tokens": sum(int(b["input_ids"].numel()) for b in batches)}
    rows, plain = [], float("nan")

    def add(stage, run, score=None, **extra):
        """Runs and measures one stage; its row gets ``score(result)``'s columns when it finished."""
        nonlocal plain
        row, out = {**base, "stage": stage, **extra}, None
        with measured(dev, row):
            out = run()
        if stage == "plain passes":
            plain = row["seconds"] if row["status"] == "ok" else float("nan")
        row["x_plain"] = row["seconds"] / plain
        if row["status"] == "ok" and score is not None:
            row.update(score(out))
        rows.append(row)
        report(row)
        return out if row["status"] == "ok" else None

    plain_passes(model, batches[:1])  # warm-up: kernels, cuBLAS handles, allocator
    add("plain passes", lambda: plain_passes(model, batches))
    names = target_linear_names(model)  # names, not weights: weights held here would outlive ``model``
    add("target passes",  # a LoRA backward's weight work
        lambda: plain_passes(model, batches, only=[model.get_submodule(n).weight for n in names]))
    cap = _cap(dev, args.memory_cap)
    grads = reference = None
    slow = SLOW_AT.get(name, set())
    only = args.only or [s for s in STAGES if s not in slow]
    inits = args.inits or [i for i in INITS if i not in slow]
    if slow:
        print(f"{name}: skipping {', '.join(sorted(slow))} unless named (SLOW_AT)", flush=True)
    if "gradient" in only or ("svd" in only and not cap):
        modes = args.accumulate or [m for m in (["offload", "cpu", "device"] if torch.device(dev).type == "cuda"
                                                else ["cpu"]) if m not in slow]
        for mode in (["auto"] if cap else []) + sorted(modes, key=lambda m: m == "device"):  # device last: kept
            grads = None  # a stage's peak never includes an earlier stage's gradients
            grads = add(f"gradient {mode}", lambda: one_step_gradients(model, batches, accumulate_on=mode))
    if grads is not None and not cap and "svd" in only:
        grads = {k: v.to(dev) for k, v in grads.items()}
        reference = add(f"reference ({args.reference} exact)",
                        lambda: top_r(grads, r + 1, "exact", dtype=DTYPES[args.reference]),
                        lambda ref: {"gap": max(float(S[r] / S[r - 1]) for _, S, _ in ref.values())})
        for method in SVD_METHODS:
            top_r({"warm-up": torch.randn(64, 48, device=dev)}, 2, method)  # solver handles are not a stage's cost
            add(f"svd {method}", lambda: top_r(grads, r, method), lambda sp: accuracy(sp, reference, r))
    grads = None  # freed before the sketches: their peak is their own
    if "sketch" in only:
        for passes in args.sketch_passes:
            for q in args.sketch_q:
                add(f"sketch q={q} passes={passes}", lambda: sketched_top_r(model, batches, r, q, passes),
                    (lambda sp: accuracy(sp, reference, r)) if reference is not None else None)
    _cap(dev, None)
    if "init" in only:
        del model
        importlib.import_module("peft")  # its import is not any init's cost
        for init in inits:
            name_, _, svd = init.partition(":")
            method = MethodConfig(name=name_, r=r, **({"svd": svd} if svd else {}))
            fresh, batches = build(name, dtype, dev, args.batches, args.batch_size, args.seq)
            stage, spectra = f"init {init}" + ("" if svd or name_ != "lora_one" else f" ({DEFAULT_SVD})"), {}
            with _timed_spectra(dev, spectra):
                add(stage, lambda: prepare(method, fresh, batches))
            if spectra:  # the "full init": LoRA-One's gradient and factorisation, without peft's wrapping
                row = {**base, "stage": f"{stage}: gradient + svd", "status": "ok", **spectra}
                row["x_plain"] = row["seconds"] / plain
                rows.append(row)
                report(row)
            del fresh
    return rows


@contextmanager
def _timed_spectra(device, into: dict):
    """Fills ``into`` with the seconds (device synchronised) and, on CUDA, the peak so far of every
    lorasim.llm.methods.lora_one_spectra call that a LoRA-One init makes inside the block."""
    from . import methods

    inner, dev = methods.lora_one_spectra, torch.device(device)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = inner(*args, **kwargs)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            into["peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        into["seconds"] = time.perf_counter() - start
        return out

    methods.lora_one_spectra = timed
    try:
        yield
    finally:
        methods.lora_one_spectra = inner


def _cap(device, gib):
    """Caps this process's device memory at ``gib`` GiB (None lifts the cap); returns the cap."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(1.0 if gib is None else min(1.0, gib * 2**30 / total), index)
    return gib


COLUMNS = ["model", "dtype", "stage", "status", "seconds", "x_plain", "peak_gib", "sin_U", "sin_V", "sin_median", "rel_err", "gap"]


def _fmt(row: dict) -> str:
    parts = []
    for c in COLUMNS:
        v = row.get(c)
        if v is None:
            continue
        parts.append(f"{c}={v:.3g}" if isinstance(v, float) else f"{c}={v}")
    return "  ".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="lorasim-llm-bench", description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help=f"of {', '.join(MODELS)} (default: 135m 1b 7b on CUDA, 135m on CPU)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--dtype", default=None, help="fp32 | bf16 (default: fp32 for 135m and smollm2, else bf16)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 16 on CUDA, 4 on the CPU")
    ap.add_argument("--seq", type=int, default=None,
                    help="tokens per sequence (smollm2: max text tokens); default: 256 on CUDA, 128 on the CPU")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--sketch-q", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--sketch-passes", type=int, nargs="+", default=[1, 4], help="1 or even numbers")
    ap.add_argument("--accumulate", nargs="+", help="device offload cpu (default: all three on CUDA, 7b: no cpu; cpu on CPU)")
    ap.add_argument("--inits", nargs="+", help=" ".join(INITS) + " (default: all; 7b: all but pissa)")
    ap.add_argument("--only", nargs="+", help=" ".join(STAGES) + " (default: all; 7b: all but svd)")
    ap.add_argument("--memory-cap", type=float, default=None, help="GiB this process may use on the device")
    ap.add_argument("--reference", default="fp64", help="fp64 | fp32: the precision of the exact SVD the others are scored against")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--out", default=None, help="write the table as <out>llm_bench.csv")
    args = ap.parse_args(argv)

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = dev.startswith("cuda")
    args.models = args.models or (["135m", "1b", "7b"] if cuda else ["135m"])
    if args.batch_size is None:  # the CPU's default: 1/8 of the tokens
        args.batch_size = 16 if cuda else 4
    if args.seq is None:
        args.seq = 256 if cuda else 128
    for flag, value, ok, allowed in (
            ("--device", args.device, dev == "cpu" or (cuda and torch.cuda.is_available()),
             "auto, cpu" + (", cuda, cuda:N" if torch.cuda.is_available() else " (CUDA is not available)")),
            ("--models", args.models, all(m in MODELS for m in args.models), ", ".join(MODELS)),
            ("--dtype", args.dtype, args.dtype in (None, "fp32", "bf16"), "fp32, bf16"),
            ("--reference", args.reference, args.reference in ("fp64", "fp32"), "fp64, fp32"),
            ("--only", args.only, all(s in STAGES for s in args.only or []), ", ".join(STAGES)),
            ("--inits", args.inits, all(i in INITS for i in args.inits or []), ", ".join(INITS)),
            ("--accumulate", args.accumulate, all(a in ("device", "offload", "cpu") for a in args.accumulate or []),
             "device, offload, cpu"),
            ("--batches/--batch-size/--seq/--r", (args.batches, args.batch_size, args.seq, args.r),
             min(args.batches, args.batch_size, args.seq, args.r) >= 1, "integers ≥ 1"),
            ("--sketch-q", args.sketch_q, all(q >= args.r for q in args.sketch_q), f"integers ≥ --r ({args.r})"),
            ("--sketch-passes", args.sketch_passes, all(p == 1 or (p >= 2 and p % 2 == 0) for p in args.sketch_passes),
             "1 or even integers ≥ 2"),
            ("--memory-cap", args.memory_cap, args.memory_cap is None or (cuda and args.memory_cap > 0),
             "a positive number of GiB, on CUDA")):
        if not ok:
            error(f"{flag}={value!r}: allowed {allowed}")
    if "smollm2" in args.models:
        from ..config import ConfigError
        from .models import check_available

        try:
            check_available("smollm2")
        except ConfigError as e:
            error(f"--models=smollm2: {e}")
    if args.threads:
        set_threads(args.threads)
    args.device = dev
    print(f"device: {torch.cuda.get_device_name(dev) if cuda else 'cpu'}, torch {torch.__version__}, "
          f"{args.batches} batches of {args.batch_size} × {args.seq} tokens, r = {args.r}", flush=True)

    def report(row):
        print(_fmt(row), flush=True)

    rows = []
    for name in args.models:
        rows += bench_model(name, args, report)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 250, "display.max_columns", 30)
    print(table[[c for c in COLUMNS if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        write_csv(table, f"{args.out}llm_bench.csv")


if __name__ == "__main__":
    main()
