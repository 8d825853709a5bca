"""The LLM validation stage: LoRA-One on real transformers through peft.

Data flow: models.py + data.py (offline model, task, batches; arith.py generates task=arith's
word problems and scores their answers) → gradient.py (one-step gradient of
the target linear layers) → svd.py (its top-r triplets; or sketch.py, from hooks, without forming
the gradient) → init.py (LoRA-One factors into a standard peft model) or methods.py (the baselines
through peft) with optim.py (the scaled AdamW/SGD) → train.py (the loop; angles.py for Figure 1(b))
→ app.py (``lorasim-llm``) → report.py (tables and figures of a sweep). bench.py
(``lorasim-llm-bench``) times every init against the plain passes.
"""
from .gradient import one_step_gradients, target_linear_names
from .init import VARIANTS, lora_one_factors, lora_one_model, lora_one_peft
from .sketch import sketched_top_r
from .svd import SVD_METHODS, top_r

__all__ = ["one_step_gradients", "target_linear_names", "VARIANTS", "lora_one_factors", "lora_one_model",
           "lora_one_peft", "sketched_top_r", "SVD_METHODS", "top_r"]
