import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def small_linear():
    import lorasim

    return lorasim.LinearTeacher(d=32, k=24, r_star=2, n=512, kappa=2.0, seed=3)
