import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def small_linear():
    import lorasim

    return lorasim.LinearTeacher(d=32, k=24, r_star=2, n=512, kappa=2.0, seed=3)


@pytest.fixture
def cfg_of():
    """Compose the lorasim app's config with overrides, as the CLI would (hydra's compose API)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lorasim.app import conf_dir

    def make(*overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield make
    GlobalHydra.instance().clear()
