"""ppsi: online STFT phase reconstruction from magnitudes (tiny causal CNN + tridiagonal least squares)."""

__version__ = "0.1.0"

from .api import invert  # noqa: E402
from .config import ModelConfig, SolverConfig, StftConfig, TrainConfig  # noqa: E402
from .inverter import Inverter, Stream  # noqa: E402
from .methods import METHODS, Method, parse_method  # noqa: E402
from .weights import SHIPPED, load_model  # noqa: E402

__all__ = ["Inverter", "METHODS", "Method", "ModelConfig", "SHIPPED", "SolverConfig",
           "StftConfig", "Stream", "TrainConfig", "__version__", "invert", "load_model",
           "parse_method"]
