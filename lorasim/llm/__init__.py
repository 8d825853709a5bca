"""The LLM validation stage: LoRA-One on real transformers through peft.

Data flow: models.py + data.py (offline model, task, batches) → gradient.py (one-step gradient of
the target linear layers) → init.py (LoRA-One factors into a standard peft model) or methods.py (the
baselines through peft) with optim.py (the scaled AdamW/SGD) → train.py (the loop; angles.py for
Figure 1(b)) → app.py (``lorasim-llm``) → report.py (tables and figures of a sweep).
"""
from .gradient import one_step_gradients, target_linear_names
from .init import VARIANTS, lora_one_factors, lora_one_model

__all__ = ["one_step_gradients", "target_linear_names", "VARIANTS", "lora_one_factors", "lora_one_model"]
