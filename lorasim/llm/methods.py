"""The fine-tuning methods compared in the LLM stage: each is a named way to wrap the base model and
build its optimizer, side by side (peft's tuners/lora style). Baselines go through peft itself.

lora           peft default init (lora_A Kaiming-uniform, lora_B = 0), AdamW, s = α_L/r (vanilla)
rslora         the same with s = α_L/√r (peft use_rslora)
lora_plus      lora with peft's create_loraplus_optimizer (lora_B's lr × ``lora_plus_ratio``, weight decay kept)
dora           peft use_dora
pissa          peft init_lora_weights="pissa" (or "pissa_niter_K"): top-r SVD of W0, residual in the base
lora_ga        peft preprocess_loraga + init_lora_weights="lora_ga" (ArB2r, stable, γ = 16; peft's scaling);
               ``loraga_variant=reference`` is the reference code's (lorasim.llm.init.lora_ga_reference_peft:
               unit vectors, the stable factor on both; preset lora_ga_reference)
lora_one       LoRA-One (lorasim.llm.init, official variant by default), AdamW
lora_one_prec  LoRA-One with the scaled AdamW of lorasim.llm.optim: by default the official AdamWr
               (Gauss–Seidel, no bias correction, λ = 1e-6, SPEC §6.3 b); the preset
               lora_one_prec_riemannian is peft's create_riemannian_optimizer (simultaneous, pinv,
               λ = 1e-2, bias-corrected AdamW, §6.3 c)
full_ft        every parameter trained with AdamW

The theory's regime (SPEC R1: small init, plain GD) is three settings on top: ``init_scale`` (lora_A
~ N(0, (init_scale × Kaiming std)²), lora_B = 0, for the Kaiming-init methods), ``optimizer=sgd``,
and ``lr_scale=sigma1`` (layer l's pair at lr/(s·σ1(G_l)): one normalised step size for all layers).

``rslora`` (s = α_L/√r, the official recipe's throughout) is on for every LoRA method but ``lora``,
which is vanilla α_L/r; ``lora`` and ``rslora`` are the two scalings, and asking either for the
other's is refused. Another method takes ``rslora=false`` when asked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..config import Config, checked, fail
from .gradient import ACCUMULATE, INIT_MODES, backward_each, one_step_gradients, per_example_loss, target_linear_names
from .init import VARIANTS, lora_ga_reference_peft, lora_one_peft
from .sketch import sketched_top_r
from .svd import DEFAULT_SVD, SVD_METHODS, top_r
from .optim import scaled_optimizer

METHODS = ("lora", "rslora", "lora_plus", "dora", "pissa", "lora_ga", "lora_one", "lora_one_prec", "full_ft")
LORA_ONE = ("lora_one", "lora_one_prec")  # the methods whose init is ours from one_step_gradients
KAIMING_INITS = ("lora", "rslora", "lora_plus", "dora")  # lora_A Kaiming-uniform, lora_B = 0
PLAIN_OPTIMIZER = ("lora", "rslora", "dora", "pissa", "lora_ga", "lora_one")  # one base rule over param groups


@dataclass
class MethodConfig(Config):
    name: str = checked("lora_one", "choice", METHODS)
    r: int = checked(8, "int", 1)
    lora_alpha: float = checked(16.0, "num", 0, lo_open=True)
    rslora: Optional[bool] = checked(None, "bool")  # None: the method's own (lora: α/r; every other: α/√r)
    targets: object = "all-linear"  # "all-linear" or a list of name suffixes (checked against the model)
    lr: float = checked(2e-4, "num", 0, lo_open=True)
    weight_decay: float = checked(0.0, "num", 0)
    gamma: float = checked(128.0, "num", 0, lo_open=True)  # LoRA-One's stable_gamma
    variant: str = checked("official", "choice", VARIANTS)  # LoRA-One: official | readme | theory
    zeta: float = checked(1.0, "num", 0, lo_open=True)  # theory variant's ζ
    svd: str = checked(DEFAULT_SVD, "choice", (*SVD_METHODS, "sketch"))  # LoRA-One's factorisation (svd.py, sketch.py)
    svd_q: int = checked(512, "int", 1)  # official's sketch size
    svd_niter: int = checked(16, "int", 0)  # official's and randomized's power iterations
    svd_oversample: int = checked(8, "int", 0)  # randomized: q = r + svd_oversample
    sketch_q: int = checked(0, "int", 0)  # sketch: columns of each sketch (single pass: co-range rows 2q); 0: 4r
    sketch_passes: int = checked(4, "choice", (1, 2, 4, 6, 8))  # sketch: 1, or 2(t+1) with t power iterations
    accumulate_on: str = checked("auto", "choice", ACCUMULATE)  # where the one-step gradient is summed
    init_mode: str = checked("eval", "choice", INIT_MODES)  # the model's mode in the gradient's passes
    init_averaging: str = checked("per_token", "choice", ("per_token", "per_example"))  # each init batch's loss
    damping: float = checked(1e-6, "num", 0)  # scaled AdamW's λ (the official prec_reg)
    reg: Optional[float] = checked(None, "renamed", "damping")  # deprecated (0.2 name of damping)
    order: str = checked("gauss_seidel", "choice", ("simultaneous", "gauss_seidel"))  # official AdamWr
    inverse: str = checked("inv", "choice", ("inv", "pinv"))  # (Gram + λI)⁻¹ by inv (official) or pinv (peft)
    bias_correction: bool = checked(False, "bool")  # the official AdamWr's correct_bias=False
    lora_plus_ratio: float = checked(16.0, "num", 0, lo_open=True)
    loraga_gamma: int = checked(16, "int", 1)
    loraga_variant: str = checked("peft", "choice", ("peft", "reference"))  # SPEC §6.4's two LoRA-GAs
    label: Optional[str] = None  # the name reports and plots give this configuration (default: name)
    init_scale: Optional[float] = checked(None, "num", 0, lo_open=True)  # KAIMING_INITS: lora_A ~ N(0, (this·Kaiming std)²)
    optimizer: str = checked("adamw", "choice", ("adamw", "sgd"))  # the base rule (lora_one_prec: under the preconditioner)
    lr_scale: str = checked("none", "choice", ("none", "sigma1"))  # sigma1: layer l's pair takes lr/(s·σ1(G_l))
    pissa_niter: int = checked(0, "int", 0)  # 0: exact SVD
    where: ClassVar[str] = "method"

    def __post_init__(self):
        super().__post_init__()
        if self.init_scale is not None and self.name not in KAIMING_INITS:
            fail(self.where, "init_scale", self.init_scale, f"null for method {self.name} (a scale of the Kaiming "
                 f"init of {', '.join(KAIMING_INITS)})")
        if self.lr_scale != "none" and self.name not in PLAIN_OPTIMIZER:
            fail(self.where, "lr_scale", self.lr_scale, f"none for method {self.name} (per-layer rates for "
                 f"{', '.join(PLAIN_OPTIMIZER)})")
        if self.label is not None and not (isinstance(self.label, str) and self.label):
            fail(self.where, "label", self.label, "null or a non-empty string")
        own = {"lora": False, "rslora": True}.get(self.name)
        if own is not None and self.rslora not in (None, own):
            fail(self.where, "rslora", self.rslora, f"{str(own).lower()} or null for method {self.name} "
                 f"(the other scaling is method {'rslora' if own is False else 'lora'})")

    @property
    def use_rslora(self) -> bool:
        """s = α_L/√r (True) or α_L/r: ``rslora`` when set, else the method's own."""
        return self.name != "lora" if self.rslora is None else self.rslora


def _lora_config(method: MethodConfig, model, **kw):
    from peft import LoraConfig

    names = target_linear_names(model, method.targets)
    task = "SEQ_CLS" if getattr(model.config, "num_labels", None) and not hasattr(model, "lm_head") else None
    return LoraConfig(r=method.r, lora_alpha=method.lora_alpha, use_rslora=method.use_rslora,
                      lora_dropout=0.0, target_modules=names, task_type=task, **kw)


def _base_class(method: MethodConfig):
    return torch.optim.AdamW if method.optimizer == "adamw" else torch.optim.SGD


def _base_rule(params, method: MethodConfig):
    """The base rule (AdamW or SGD) over ``params``, a list of tensors or of param groups."""
    return _base_class(method)(params, lr=method.lr, weight_decay=method.weight_decay)


def _optimizer(peft_model, method: MethodConfig, gradients: Optional[dict]):
    """``_base_rule`` over the trainable parameters; with ``lr_scale=sigma1``, each adapted layer's pair in
    a group of its own at lr / (s·σ1(G_l)) (σ1 in float64), so that every layer takes the same step
    relative to its gradient's scale (the theory's η·s·σ1 per layer); other parameters keep lr."""
    params = _trainable(peft_model)
    if method.lr_scale == "none":
        return _base_rule(params, method)
    groups, paired = [], set()
    for name, mod in peft_model.base_model.model.named_modules():
        if not (hasattr(mod, "lora_A") and "default" in mod.lora_A):
            continue
        sigma1 = float(torch.linalg.matrix_norm(gradients[name].detach().cpu().double(), ord=2))  # LAPACK: see angles.py
        pair = [mod.lora_A["default"].weight, mod.lora_B["default"].weight]
        groups.append({"params": pair, "lr": method.lr / (mod.scaling["default"] * sigma1)})
        paired.update(pair)
    rest = [p for p in params if p not in paired]
    return _base_rule(groups + ([{"params": rest}] if rest else []), method)


def _small_init(peft_model, scale: float) -> None:
    """lora_A ~ N(0, (scale·σ_K)²) from the global RNG (seeded per run), σ_K = 1/√(3·in) the std of
    peft's Kaiming-uniform(a = √5) lora_A; lora_B stays 0: the theory's small random init."""
    with torch.no_grad():
        for mod in peft_model.modules():
            if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                w = mod.lora_A["default"].weight
                w.normal_(0.0, scale / math.sqrt(3 * w.shape[1]))


def prepare(method: MethodConfig, model: torch.nn.Module, init_batches: list[dict],
            gradients: Optional[dict] = None):
    """(trainable model, optimizer) for ``method``. ``init_batches`` feed the one-step gradient of the
    gradient-based inits; ``gradients`` (from one_step_gradients) is reused when given."""
    from peft import get_peft_model

    name = method.name
    if name == "full_ft":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, _base_rule(model.parameters(), method)
    if gradients is None and method.lr_scale == "sigma1":  # the per-layer rates need every layer's σ1(G)
        gradients = one_step_gradients(model, init_batches, method.targets, **init_estimate(method))
    if name in LORA_ONE:
        peft_model = lora_one_peft(model, lora_one_spectra(method, model, init_batches, gradients), method.r,
                                   method.lora_alpha, method.use_rslora, method.gamma, method.variant, method.zeta,
                                   task_type=_lora_config(method, model).task_type)
        if name == "lora_one_prec":
            return peft_model, scaled_optimizer(peft_model, method.lr, base=method.optimizer, damping=method.damping,
                                                order=method.order, inverse=method.inverse,
                                                bias_correction=method.bias_correction,
                                                weight_decay=method.weight_decay)
        return peft_model, _optimizer(peft_model, method, gradients)
    if name == "lora_ga" and method.loraga_variant == "reference":
        if gradients is None:
            gradients = one_step_gradients(model, init_batches, method.targets, **init_estimate(method))
        peft_model = lora_ga_reference_peft(model, gradients, method.r, method.lora_alpha, method.use_rslora,
                                            method.loraga_gamma, task_type=_lora_config(method, model).task_type)
        return peft_model, _optimizer(peft_model, method, gradients)
    if name == "lora_ga":
        from peft import LoraGAConfig
        from peft.tuners.lora.loraga import preprocess_loraga

        config = _lora_config(method, model, init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig(
            direction="ArB2r", scale="stable", stable_gamma=method.loraga_gamma))

        def train_step():  # peft reads the weights' .grad; the passes are the other inits' (backward_each)
            was_training = model.training
            model.train(method.init_mode == "train")
            try:
                backward_each(model, init_batches, init_estimate(method)["loss_fn"])
            finally:
                model.train(was_training)

        preprocess_loraga(model, config, train_step)
        peft_model = get_peft_model(model, config)
        return peft_model, _optimizer(peft_model, method, gradients)
    init = {"pissa": "pissa" if method.pissa_niter == 0 else f"pissa_niter_{method.pissa_niter}"}.get(name, True)
    peft_model = get_peft_model(model, _lora_config(method, model, init_lora_weights=init, use_dora=name == "dora"))
    if method.init_scale is not None:
        _small_init(peft_model, method.init_scale)
    if name == "lora_plus":
        from peft.optimizers import create_loraplus_optimizer

        return peft_model, create_loraplus_optimizer(peft_model, _base_class(method), lr=method.lr,
                                                     loraplus_lr_ratio=method.lora_plus_ratio,
                                                     loraplus_weight_decay=method.weight_decay)
    return peft_model, _optimizer(peft_model, method, gradients)


def init_estimate(method: MethodConfig) -> dict:
    """one_step_gradients' keyword arguments for how ``method`` estimates the one-step gradient:
    where it is summed, the model's mode, and each init batch's loss (None: the model's own,
    transformers' per-token mean; per_example: lorasim.llm.gradient.per_example_loss)."""
    return {"accumulate_on": method.accumulate_on, "mode": method.init_mode,
            "loss_fn": per_example_loss if method.init_averaging == "per_example" else None}


def forms_gradient(method: MethodConfig) -> bool:
    """Whether ``method``'s init starts from lorasim's one-step gradient (so a caller that needs it
    anyway, for the angles, can pass it to ``prepare`` instead of having it formed twice)."""
    return ((method.name in LORA_ONE and method.svd != "sketch") or method.lr_scale == "sigma1"
            or (method.name == "lora_ga" and method.loraga_variant == "reference"))


def lora_one_spectra(method: MethodConfig, model: torch.nn.Module, init_batches: list[dict],
                     gradients: Optional[dict] = None) -> dict[str, tuple]:
    """Each target layer's top-r (U, S, V) of −G as ``method`` says: from the one-step gradients
    (``gradients`` when given, else summed where ``method.accumulate_on`` says), or from the sketch."""
    if method.svd == "sketch":
        estimate = init_estimate(method)
        return sketched_top_r(model, init_batches, method.r, method.sketch_q or 4 * method.r, method.sketch_passes,
                              method.targets, loss_fn=estimate["loss_fn"], mode=estimate["mode"])
    if gradients is None:
        gradients = one_step_gradients(model, init_batches, method.targets, **init_estimate(method))
    device = next(model.parameters()).device  # offloaded sums are factorised on the model's device, not the host
    return top_r(gradients, method.r, method.svd, method.svd_q, method.svd_niter, method.svd_oversample, device=device)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]
