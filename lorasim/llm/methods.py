"""The fine-tuning methods compared in the LLM stage: each is a named way to wrap the base model and
build its optimizer, side by side (peft's tuners/lora style). Baselines go through peft itself.

lora           peft default init (lora_A Kaiming-uniform, lora_B = 0), AdamW
rslora         the same with s = α_L/√r (peft use_rslora)
lora_plus      lora with peft's create_loraplus_optimizer (lora_B's lr × ``lora_plus_ratio``)
dora           peft use_dora
pissa          peft init_lora_weights="pissa" (or "pissa_niter_K"): top-r SVD of W0, residual in the base
lora_ga        peft preprocess_loraga + init_lora_weights="lora_ga" (ArB2r, stable, γ = 16; peft's scaling)
lora_one       LoRA-One (lorasim.llm.init, official variant by default), AdamW
lora_one_prec  LoRA-One with the scaled AdamW of lorasim.llm.optim
full_ft        every parameter trained with AdamW

``rslora`` in the method applies to every LoRA method (the official recipe uses it throughout);
``lora`` and ``rslora`` differ only in that flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..config import fail
from .gradient import one_step_gradients, target_linear_names
from .init import VARIANTS, lora_one_model
from .optim import scaled_optimizer

METHODS = ("lora", "rslora", "lora_plus", "dora", "pissa", "lora_ga", "lora_one", "lora_one_prec", "full_ft")
LORA_ONE = ("lora_one", "lora_one_prec")  # the methods whose init is ours from one_step_gradients


@dataclass
class MethodConfig:
    name: str = "lora_one"
    r: int = 8
    lora_alpha: float = 16.0
    rslora: bool = True
    targets: object = "all-linear"
    lr: float = 2e-4
    weight_decay: float = 0.0
    gamma: float = 128.0  # LoRA-One's stable_gamma
    variant: str = "official"  # LoRA-One: official | readme | theory
    zeta: float = 1.0  # theory variant's ζ
    svd_q: int = 512
    svd_niter: int = 16
    damping: float = 1e-6  # scaled AdamW's λ (the official prec_reg)
    reg: Optional[float] = None  # deprecated 0.2 name of damping; still accepted
    order: str = "simultaneous"
    bias_correction: bool = True
    lora_plus_ratio: float = 16.0
    loraga_gamma: int = 16
    pissa_niter: int = 0  # 0: exact SVD

    def __post_init__(self):
        if self.reg is not None:
            self.damping, self.reg = self.reg, None
        checks = [("name", self.name in METHODS, "one of " + ", ".join(METHODS)),
                  ("r", isinstance(self.r, int) and self.r >= 1, "an integer ≥ 1"),
                  ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a number > 0"),
                  ("lora_alpha", isinstance(self.lora_alpha, (int, float)) and self.lora_alpha > 0, "a number > 0"),
                  ("gamma", isinstance(self.gamma, (int, float)) and self.gamma > 0, "a number > 0"),
                  ("variant", self.variant in VARIANTS, "one of " + ", ".join(VARIANTS)),
                  ("order", self.order in ("simultaneous", "gauss_seidel"), "simultaneous or gauss_seidel"),
                  ("damping", isinstance(self.damping, (int, float)) and self.damping >= 0, "a number ≥ 0"),
                  ("lora_plus_ratio", isinstance(self.lora_plus_ratio, (int, float)) and self.lora_plus_ratio > 0,
                   "a number > 0"),
                  ("pissa_niter", isinstance(self.pissa_niter, int) and self.pissa_niter >= 0, "an integer ≥ 0")]
        for name, ok, allowed in checks:
            if not ok:
                fail("method", name, getattr(self, name), allowed)


def _lora_config(method: MethodConfig, model, **kw):
    from peft import LoraConfig

    names = target_linear_names(model, method.targets)
    task = "SEQ_CLS" if getattr(model.config, "num_labels", None) and not hasattr(model, "lm_head") else None
    return LoraConfig(r=method.r, lora_alpha=method.lora_alpha, use_rslora=method.rslora or method.name == "rslora",
                      lora_dropout=0.0, target_modules=names, task_type=task, **kw)


def _adamw(params, method: MethodConfig):
    return torch.optim.AdamW(params, lr=method.lr, weight_decay=method.weight_decay)


def prepare(method: MethodConfig, model: torch.nn.Module, init_batches: list[dict],
            gradients: Optional[dict] = None):
    """(trainable model, optimizer) for ``method``. ``init_batches`` feed the one-step gradient of the
    gradient-based inits; ``gradients`` (from one_step_gradients) is reused when given."""
    from peft import get_peft_model

    name = method.name
    if name == "full_ft":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, _adamw(model.parameters(), method)
    if name in LORA_ONE:
        if gradients is None:
            gradients = one_step_gradients(model, init_batches, method.targets)
        peft_model = lora_one_model(model, gradients, method.r, method.lora_alpha, method.rslora, method.gamma,
                                    method.variant, method.zeta, method.svd_q, method.svd_niter,
                                    task_type=_lora_config(method, model).task_type)
        if name == "lora_one_prec":
            return peft_model, scaled_optimizer(peft_model, method.lr, damping=method.damping, order=method.order,
                                                bias_correction=method.bias_correction,
                                                weight_decay=method.weight_decay)
        return peft_model, _adamw(_trainable(peft_model), method)
    if name == "lora_ga":
        from peft import LoraGAConfig
        from peft.tuners.lora.loraga import preprocess_loraga

        config = _lora_config(method, model, init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig(
            direction="ArB2r", scale="stable", stable_gamma=method.loraga_gamma))

        def train_step():
            for batch in init_batches:
                model(**batch).loss.backward()

        preprocess_loraga(model, config, train_step)
        peft_model = get_peft_model(model, config)
        return peft_model, _adamw(_trainable(peft_model), method)
    init = {"pissa": "pissa" if method.pissa_niter == 0 else f"pissa_niter_{method.pissa_niter}"}.get(name, True)
    peft_model = get_peft_model(model, _lora_config(method, model, init_lora_weights=init, use_dora=name == "dora"))
    if name == "lora_plus":
        from peft.optimizers import create_loraplus_optimizer

        return peft_model, create_loraplus_optimizer(peft_model, torch.optim.AdamW, lr=method.lr,
                                                     loraplus_lr_ratio=method.lora_plus_ratio,
                                                     weight_decay=method.weight_decay)
    return peft_model, _adamw(_trainable(peft_model), method)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]
