"""Random streams: every consumer of randomness draws from a generator of its own.

A stream is named by a seed and a key that says who consumes it ("truth", "design", "noise",
"init/small_random", ...). The pair goes through numpy's SeedSequence (the seed as entropy, the
key's hash as spawn key), whose output is a 64-bit torch seed. Two streams with different keys
are therefore unrelated whatever their seeds and shapes: before this, the problem's ΔW and the
small-random init both drew from ``manual_seed(0)``, so at rank = r* the init spanned exactly U*.

Changing a key changes every number that stream produces; the keys below are part of lorasim's
reproducibility contract (a run is defined by its seeds *and* these keys).

A *draw family* (``draws``, default 0) renames every stream at once: inside ``with draws(f)``, f ≥ 1, each
stream's spawn key gains f, so every problem, init and claim draws numbers unrelated to family 0's (and to any
other family's) for the same seeds. Family 0 is every stream as it always was. ``lorasim-verify draws=f``
reruns the claims on instances their pass rules were never tuned on.
"""
from __future__ import annotations

import contextlib
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


_family = 0  # the draw family of every stream made now (``draws``)


def is_family(family) -> bool:
    """Whether ``family`` names a draw family: an integer from 0 to 2**32 − 1."""
    return not isinstance(family, bool) and isinstance(family, (int, np.integer)) and 0 <= family < 2**32


def _check_family(family) -> int:
    if not is_family(family):
        raise ValueError(f"draws={family!r}: allowed an integer from 0 to 2**32 − 1")
    return int(family)


@contextlib.contextmanager
def draws(family: int):
    """Every stream made inside draws from family ``family`` (0: the default streams)."""
    global _family
    before, _family = _family, _check_family(family)
    try:
        yield
    finally:
        _family = before


def stream_seed(seed: int, key: str) -> int:
    """The 64-bit seed of stream (seed, key) in the current draw family."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: allowed an integer ≥ 0")
    if not (key in KEYS or key.startswith(PREFIXES)):
        raise ValueError(f"key={key!r}: allowed one of {', '.join(KEYS)}, theory/<claim>/<what> or bench/<what>")
    # family 0 keeps the spawn key it always had, so its streams are unchanged
    spawn = (_DOMAIN, *_key_words(key)) + ((_family,) if _family else ())
    seq = np.random.SeedSequence(entropy=int(seed), spawn_key=spawn)
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def generator(seed: int, key: str, device="cpu") -> torch.Generator:
    """A torch generator for stream (seed, key) on ``device`` (a CUDA generator draws other numbers
    than a CPU one from the same seed)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, key))


def numpy_rng(seed: int, key: str) -> np.random.Generator:
    """A numpy generator for stream (seed, key)."""
    return np.random.default_rng(stream_seed(seed, key))
