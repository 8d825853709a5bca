"""lorasim: runnable, measurable checks of the LoRA-One theory (Zhang, Liu, Chen, ICML 2025).

Data flow: problem → init → solver → metrics → tidy frame → plot or claim.
"""
from .config import ConfigError
from .inits import INITS, Init, make_init
from .metrics import principal_angles, sin_theta
from .problems import LinearTeacher, MatrixSensing, ReLUTeacher, make_problem
from .solvers import Solver
from .train import Trajectory, train
from .batch import train_batch  # noqa: E402  (after train: it builds on it)
from . import kernels  # noqa: E402

__version__ = "0.2.0"

__all__ = ["ConfigError", "INITS", "Init", "make_init", "principal_angles", "sin_theta", "LinearTeacher",
           "MatrixSensing", "ReLUTeacher", "make_problem", "Solver", "Trajectory", "train", "train_batch", "kernels", "__version__"]
