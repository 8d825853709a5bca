"""lorasim: runnable, measurable checks of the LoRA-One theory (Zhang, Liu, Chen, ICML 2025).

Data flow: problem → init → solver → metrics → tidy frame → plot or claim.
"""
from .config import ConfigError
from .inits import INITS, Init, make_init
from .metrics import principal_angles, sin_theta
from .problems import LinearTeacher, MatrixSensing, ReLUTeacher, make_problem
from .solvers import Solver, make_solver
from .engine import Trajectory, plateau, risk_below, train, train_batch
from . import kernels  # noqa: E402

__version__ = "0.5.0"

__all__ = ["ConfigError", "INITS", "Init", "make_init", "principal_angles", "sin_theta", "LinearTeacher",
           "MatrixSensing", "ReLUTeacher", "make_problem", "Solver", "make_solver", "Trajectory", "train", "train_batch", "risk_below", "plateau", "kernels", "__version__"]
