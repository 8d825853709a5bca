"""The LLM validation stage: LoRA-One on real transformers through peft (issue 6, in progress).

Data flow: model + init batches → one-step gradient of the target linear layers (gradient.py)
→ LoRA-One factors per layer (init.py) → a standard peft model.
"""
from .gradient import one_step_gradients, target_linear_names
from .init import VARIANTS, lora_one_factors, lora_one_model

__all__ = ["one_step_gradients", "target_linear_names", "VARIANTS", "lora_one_factors", "lora_one_model"]
