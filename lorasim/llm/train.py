"""One LLM fine-tuning run: model → task → one-step gradient → method (init + optimizer) → steps,
logging a tidy curve (train loss, eval loss and accuracy) and, optionally, Figure 1(b)'s angles.

The training loop is a plain loop (the optimizers are plain torch optimizers, so the HF Trainer
works too; see tests). Batches are the training pool in a seed-dependent order, cycled; with
``train_on=init`` every step is full-batch GD on the init examples, the loss whose gradient at W0 is
G (the theory's regime, experiment alignment_theory). The one-step
gradient uses the pool's first ``init_batches × init_batch_size`` examples in micro-batches of
``init_batch_size``, as the official code takes the first bsz·iters training examples (SPEC §6.2;
defaults bsz = 1, iters = 8), whatever the training batch size.
"""
from __future__ import annotations

import copy
import math
import resource
import time
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from .. import streams
from ..config import Config, checked, fail
from ..engine import diverged
from . import arith
from .angles import GradientSubspaces
from .data import Batcher, load_task
from .gradient import one_step_gradients
from .methods import MethodConfig, forms_gradient, init_estimate, prepare
from .models import load_model

PRECISIONS = ("fp32", "bf16")
# A curve row's evaluation columns (NaN where the step was not evaluated): validation (where
# learning rates are chosen) and test (reported). Before validation existed they were eval_loss and
# eval_acc, measured on what is now the test split.
UNEVALUATED = {"val_loss": math.nan, "val_acc": math.nan, "test_loss": math.nan, "test_acc": math.nan}
TRAIN_ON = ("pool", "init")  # each step's batch: the next batch of the pool, or all the init examples
LR_SCHEDULES = ("linear", "constant")


@dataclass
class LLMRunConfig(Config):
    steps: int = checked(20, "int", 0)  # 0: evaluate the model as prepared, no step (method=lora: zero-shot)
    batch_size: int = checked(8, "int", 1)
    eval_batch_size: int = checked(32, "int", 1)  # the evaluation loss's forward passes
    generate_batch_size: int = checked(0, "int", 0)  # a generative task's greedy answers; 0: all splits at once
    accuracy_steps: Optional[list] = None  # generative tasks: accuracy only at these evaluations (null: all)
    init_batches: int = checked(8, "int", 1)  # the one-step gradient's micro-batches (official: iters = 8)
    init_batch_size: int = checked(1, "int", 1)  # examples per init micro-batch (official: bsz = 1)
    warmup_steps: int = checked(0, "int", 0)
    log_every: int = checked(5, "int", 1)
    eval_every: int = checked(10, "int", 1)
    angle_every: int = checked(0, "int", 0)  # 0: no angles (unless angle_steps)
    angle_steps: Optional[list] = None  # and/or angles at exactly these steps (Figure 1(b)'s early phase)
    train_on: str = checked("pool", "choice", TRAIN_ON)  # init: full-batch steps on the init examples (R1's GD)
    lr_schedule: str = checked("linear", "choice", LR_SCHEDULES)  # constant: the theory's fixed step size
    device: str = checked("cpu", "device")
    precision: str = checked("fp32", "choice", PRECISIONS)  # bf16: autocast on CUDA; weights and adapters stay fp32
    where: ClassVar[str] = "run"

    def __post_init__(self):
        super().__post_init__()
        steps = self.angle_steps
        if steps is not None:
            if not (isinstance(steps, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool)
                                                             and 0 <= t <= self.steps for t in steps)):
                fail(self.where, "angle_steps", steps, f"null or a list of integers in [0, steps={self.steps}]")
            self.angle_steps = sorted(set(steps))
        acc = self.accuracy_steps
        if acc is not None:
            # Generation is an evaluation's dear part; a listed step that is no evaluation would be silently
            # skipped, so it is refused.
            evaluated = lambda t: t % self.eval_every == 0 or t == self.steps  # noqa: E731
            if not (isinstance(acc, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           and 0 <= t <= self.steps and evaluated(t) for t in acc)):
                fail(self.where, "accuracy_steps", acc, f"null or a list of evaluated steps (multiples of eval_every="
                     f"{self.eval_every}, or steps={self.steps})")
            self.accuracy_steps = sorted(set(acc))

    def accuracy_at(self, step: int) -> bool:
        return self.accuracy_steps is None or step in self.accuracy_steps

    def logs_angles(self) -> bool:
        return bool(self.angle_every or self.angle_steps)

    def angles_at(self, step: int) -> bool:
        return (bool(self.angle_every) and (step % self.angle_every == 0 or step == self.steps)) or (
            step in (self.angle_steps or ()))


def check_combination(method: MethodConfig, run_cfg: LLMRunConfig) -> None:
    """Settings that are valid alone but not together; checked before anything is loaded."""
    if run_cfg.logs_angles() and method.name == "lora_ga" and method.loraga_variant == "peft":
        name = "angle_every" if run_cfg.angle_every else "angle_steps"
        fail("run", name, getattr(run_cfg, name),
             "0 for method lora_ga with loraga_variant=peft (peft keeps its gradient internal)")


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _schedule(optimizer, run_cfg: LLMRunConfig):
    """Linear warm-up, then linear decay to zero (the HF default the official recipe uses) or, with
    ``lr_schedule=constant``, the lr itself."""
    def factor(step):
        if step < run_cfg.warmup_steps:
            return (step + 1) / (run_cfg.warmup_steps + 1)
        if run_cfg.lr_schedule == "constant":
            return 1.0
        return max(0.0, (run_cfg.steps - step) / max(1, run_cfg.steps - run_cfg.warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model, batcher: Batcher, examples, run_cfg: LLMRunConfig, accuracy: bool = True) -> tuple[float, float]:
    """(mean loss over response tokens or examples, accuracy) on ``examples``. On a generative task
    the loss is on the reference responses and the accuracy is the exact match of greedy answers,
    generated from a merged copy of the model (``accuracy=False``: not generated, NaN)."""
    return evaluate_splits(model, batcher, [examples], run_cfg, accuracy)[0]


@torch.no_grad()
def evaluate_splits(model, batcher: Batcher, splits, run_cfg: LLMRunConfig, accuracy: bool = True) -> list:
    """``evaluate`` for each split, with a generative task's answers for all splits in one generation
    (split by ``generate_batch_size`` only): decoding is launch-bound, so one batch of every split
    costs what one split's does."""
    was = model.training
    model.eval()
    out = []
    for examples in splits:
        loss, correct = _loss_and_correct(model, batcher, examples, run_cfg)
        out.append([loss, correct])
    if batcher.generative:
        hits = _generated_hits(model, batcher, [e for examples in splits for e in examples], run_cfg) if accuracy \
            else None
        start = 0
        for row, examples in zip(out, splits):
            row[1] = sum(hits[start: start + len(examples)]) if accuracy else math.nan
            start += len(examples)
    model.train(was)
    return [(loss, correct / len(examples)) for (loss, correct), examples in zip(out, splits)]


def _loss_and_correct(model, batcher: Batcher, examples, run_cfg: LLMRunConfig) -> tuple[float, int]:
    """(mean loss, correct predictions: 0 on a generative task) over ``examples``, in eval batches."""
    loss_sum, weight, correct = 0.0, 0, 0
    for i in range(0, len(examples), run_cfg.eval_batch_size):
        chunk = examples[i: i + run_cfg.eval_batch_size]
        batch = _to(batcher(chunk), run_cfg.device)
        with _autocast(run_cfg):
            out = model(**batch)
        n = int((batch["labels"] != -100).sum()) if batcher.kind == "causal" else len(batch["labels"])
        loss_sum += float(out.loss) * n
        weight += n
        if batcher.generative:
            continue
        truth = batch["labels"] if batcher.kind == "classify" else torch.tensor(
            [e.label for e in chunk], device=run_cfg.device)
        correct += int((batcher.predict(batch, out.logits.float()) == truth).sum())
    return loss_sum / weight, correct


def _generated_hits(model, batcher: Batcher, examples, run_cfg: LLMRunConfig) -> list[bool]:
    merged = for_generation(model)
    size = run_cfg.generate_batch_size or len(examples)
    hits = []
    for i in range(0, len(examples), size):
        chunk = examples[i: i + size]
        hits += [arith.exact_match(text, e.label) for text, e in zip(generate(merged, batcher, chunk, run_cfg), chunk)]
    return hits


def for_generation(model):
    """A peft model's adapters merged into a copy of it, the model itself untouched; any other model as
    it is. Greedy decoding is launch-bound (on the H200, 45 ms a token at any batch size for SmolLM2
    with rank-8 adapters on every linear layer); the merged copy has no adapter kernels in its loop.
    Its logits differ from the adapted model's by round-off only (tests)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    merged = copy.deepcopy(model).merge_and_unload()
    merged.eval()
    return merged


@torch.no_grad()
def generate(model, batcher: Batcher, examples, run_cfg: LLMRunConfig) -> list[str]:
    """Greedy answers to ``examples``' prompts (one left-padded batch; each row stops at eos, all at
    ``batcher.max_new_tokens``), as text."""
    from transformers import GenerationConfig

    prompts = _to(batcher.prompts(examples), run_cfg.device)
    tok = batcher.tok
    # Every setting given, so the model's own generation defaults (sampling, lengths) play no part.
    config = GenerationConfig(do_sample=False, max_new_tokens=batcher.max_new_tokens, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, num_beams=1)
    with _autocast(run_cfg):
        ids = model.generate(**prompts, generation_config=config)
    return batcher.decode(ids[:, prompts["input_ids"].shape[1]:])


def _autocast(run_cfg: LLMRunConfig):
    if run_cfg.precision == "bf16" and run_cfg.device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _peak_memory_mb(device: str) -> tuple[float, str]:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_max_rss"


def run(model_name: str, task_cfg: dict, method: MethodConfig, run_cfg: LLMRunConfig, seed: int = 0,
        cache_dir: Optional[str] = None, progress=None) -> dict:
    """Train once; returns {"curve": rows, "angles": rows, "summary": dict}."""
    check_combination(method, run_cfg)
    # The global RNG serves what draws from it inside peft and torch (adapter inits, dropout); the
    # model, the data split and the batch order have streams of their own (lorasim.streams).
    torch.manual_seed(streams.stream_seed(seed, "llm/adapters"))
    task_cfg = dict(task_cfg)
    shaping = {k: task_cfg.pop(k) for k in ("max_text_tokens", "new_tokens_margin") if k in task_cfg}
    task = load_task(**task_cfg)
    model, tok, kind = load_model(model_name, seed=seed, num_labels=len(task.labels), cache_dir=cache_dir)
    batcher = Batcher(task, tok, kind, **shaping)
    model.to(run_cfg.device)
    if run_cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(run_cfg.device)
    n_init = run_cfg.init_batches * run_cfg.init_batch_size
    if len(task.train) < max(n_init, run_cfg.batch_size):
        pool = "n_train" if task.generative else "train_per_class"
        fail("task", pool, task_cfg.get(pool), f"a pool of at least {max(n_init, run_cfg.batch_size)} examples")
    init_batches = [_to(batcher(task.train[i: i + run_cfg.init_batch_size]), run_cfg.device)
                    for i in range(0, n_init, run_cfg.init_batch_size)]
    formed = forms_gradient(method)  # the init forms the one-step gradient
    gradients = None
    if run_cfg.logs_angles() and not formed:  # the angles' reference; not part of this method's init cost
        gradients = one_step_gradients(model, init_batches, method.targets, **init_estimate(method))
    _sync(run_cfg.device)
    start = time.perf_counter()
    if formed:
        gradients = one_step_gradients(model, init_batches, method.targets, **init_estimate(method))
    model, optimizer = prepare(method, model, init_batches, gradients if formed else None)
    _sync(run_cfg.device)
    init_seconds = time.perf_counter() - start
    subspaces = GradientSubspaces(gradients, method.r, run_cfg.device) if run_cfg.logs_angles() else None
    del gradients
    scheduler = _schedule(optimizer, run_cfg)
    order = torch.randperm(len(task.train), generator=streams.generator(seed, "llm/batch_order")).tolist()
    curve, angles, window, status, loss0 = [], [], [], "ok", None

    def log(step):
        row = {"step": step, "train_loss": sum(window) / len(window) if window else math.nan,
               "scheduled_lr": scheduler.get_last_lr()[0], **UNEVALUATED}
        if step % run_cfg.eval_every == 0 or step == run_cfg.steps:
            (row["val_loss"], row["val_acc"]), (row["test_loss"], row["test_acc"]) = evaluate_splits(
                model, batcher, [task.validation, task.test], run_cfg, run_cfg.accuracy_at(step))
        curve.append(row)
        window.clear()
        if progress:
            progress(row)

    def log_angles(step):
        angles.extend({"step": step, **a} for a in subspaces.angles(model))

    model.train()
    log(0)
    if subspaces is not None:
        log_angles(0)
    for step in range(1, run_cfg.steps + 1):
        if run_cfg.train_on == "init":  # full batch: the mean over the init micro-batches, G's own loss
            micro, loss_fn = init_batches, init_estimate(method)["loss_fn"]
        else:
            pos = ((step - 1) * run_cfg.batch_size) % len(order)
            idx = (order + order)[pos: pos + run_cfg.batch_size]
            micro, loss_fn = [_to(batcher([task.train[i] for i in idx]), run_cfg.device)], None
        loss_value = 0.0
        for batch in micro:  # each micro-batch's graph is freed by its backward
            with _autocast(run_cfg):
                out = model(**batch)
                loss = (loss_fn(out, batch) if loss_fn is not None else out.loss) / len(micro)
            del out
            loss.backward()
            loss_value += float(loss.detach())
        loss0 = loss_value if loss0 is None else loss0
        if diverged(loss_value, loss0):  # before the step: a diverged run's parameters stay finite
            status = "diverged"
            curve.append({"step": step, "train_loss": loss_value, "scheduled_lr": scheduler.get_last_lr()[0],
                          **UNEVALUATED})
            break
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss_value)
        if step % run_cfg.log_every == 0 or step % run_cfg.eval_every == 0 or step == run_cfg.steps:
            log(step)
        if subspaces is not None and run_cfg.angles_at(step):
            log_angles(step)
    peak, peak_kind = _peak_memory_mb(run_cfg.device)
    final = curve[-1]
    summary = {"status": status, "lr": method.lr, "init_seconds": init_seconds, "peak_memory_mb": peak,
               "peak_memory_kind": peak_kind,
               "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "final_train_loss": final["train_loss"],
               **{f"final_{k}": final[k] for k in UNEVALUATED},
               "initial_val_acc": curve[0]["val_acc"], "initial_test_acc": curve[0]["test_acc"],
               "steps_done": final["step"], "val_examples": len(task.validation), "test_examples": len(task.test)}
    return {"curve": curve, "angles": angles, "summary": summary, "model": model}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
