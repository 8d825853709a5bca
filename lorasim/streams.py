"""Random streams: every consumer of randomness draws from a generator of its own.

A stream is named by a seed and a key that says who consumes it ("truth", "design", "noise",
"init/small_random", ...). The pair goes through numpy's SeedSequence (the seed as entropy, the
key's hash as spawn key), whose output is a 64-bit torch seed. Two streams with different keys
are therefore unrelated whatever their seeds and shapes: before this, the problem's ΔW and the
small-random init both drew from ``manual_seed(0)``, so at rank = r* the init spanned exactly U*.

Changing a key changes every number that stream produces; the keys below are part of lorasim's
reproducibility contract (a run is defined by its seeds *and* these keys).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

# Who consumes randomness. A new consumer gets a new key here, never a borrowed one.
KEYS = (
    "truth",            # U*, V* of ΔW (problems)
    "w0",               # the frozen weight W0
    "covariance",       # the input covariance's eigenbasis
    "design",           # the design matrix X
    "noise",            # label noise
    "operator",         # the sensing operator 𝒜
    # one per named init (lorasim.INITS), whether or not it draws today
    "init/small_random", "init/kaiming", "init/spectral", "init/lora_one", "init/lora_ga", "init/pissa",
    "init/offset_lora_one", "init/arrays",
    "llm/corpus", "llm/split", "llm/batch_order", "llm/model", "llm/head", "llm/adapters", "llm/svd_sketch",
    "llm/svd_randomized", "llm/sketch_range", "llm/sketch_corange", "llm/loraga_sketch", "llm/init_dropout",
    "llm/arith_problems", "llm/arith_wording",  # task=arith: the arithmetic, and the words it is told in
)
# Families of keys named by their users: a claim's own draws are "theory/<claim>/<what>", the
# benchmark's "bench/<what>".
PREFIXES = ("theory/", "bench/")

_DOMAIN = 0x6C6F7261  # "lora": keeps lorasim's spawn keys apart from anyone else's SeedSequence use


def _key_words(key: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


def stream_seed(seed: int, key: str) -> int:
    """The 64-bit seed of stream (seed, key)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: allowed an integer ≥ 0")
    if not (key in KEYS or key.startswith(PREFIXES)):
        raise ValueError(f"key={key!r}: allowed one of {', '.join(KEYS)}, theory/<claim>/<what> or bench/<what>")
    seq = np.random.SeedSequence(entropy=int(seed), spawn_key=(_DOMAIN, *_key_words(key)))
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def generator(seed: int, key: str, device="cpu") -> torch.Generator:
    """A torch generator for stream (seed, key) on ``device`` (a CUDA generator draws other numbers
    than a CPU one from the same seed)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, key))


def numpy_rng(seed: int, key: str) -> np.random.Generator:
    """A numpy generator for stream (seed, key)."""
    return np.random.default_rng(stream_seed(seed, key))
