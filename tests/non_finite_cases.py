"""Operands with one non-finite entry, and the entries of the fused pass's products it must reach
(tests/test_batch.py runs them through the interpreter, tests/test_cuda.py through the compiled kernel)."""
from __future__ import annotations

import numpy as np
import torch

# inf, the quiet NaN, and the NaNs whose rounding to tf32 carries into the sign bit (0x7FFFFFFF, 0xFFFFFFFF) or
# into inf (0x7F800001): a split that takes a NaN sum of its small terms as 0 leaves the carried ones finite
PATTERNS = (0x7F800000, 0x7FC00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7F800001)


def non_finite_cases(M0, R0, L0, at: dict):
    """Yield (pattern, where, M, R, L, bad_mr, bad_lm) for each pattern and each operand ``where`` in M, R, L: fresh
    copies with the pattern's float32 at ``at[where]``, and the masks of M R and Lᵀ M whose entries it enters.
    M[i, j] enters row i of M R and column j of Lᵀ M; R[·, c] enters column c of M R; L[·, c] row c of Lᵀ M."""
    for pattern in PATTERNS:
        value = float(np.array([pattern], dtype=np.uint32).view(np.float32)[0])
        for where in ("M", "R", "L"):
            M, R, L = M0.clone(), R0.clone(), L0.clone()
            {"M": M, "R": R, "L": L}[where][at[where]] = value
            bad_mr = torch.zeros(M.shape[0], R.shape[1], dtype=torch.bool, device=M.device)
            bad_lm = torch.zeros(L.shape[1], M.shape[1], dtype=torch.bool, device=M.device)
            i, j = at[where]
            if where == "M":
                bad_mr[i], bad_lm[:, j] = True, True
            elif where == "R":
                bad_mr[:, j] = True
            else:
                bad_lm[j] = True
            yield pattern, where, M, R, L, bad_mr, bad_lm
