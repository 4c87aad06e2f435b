"""ppsi: online STFT phase reconstruction from magnitudes (tiny causal CNN + tridiagonal least squares)."""

__version__ = "0.1.0"

from .api import StreamingInverter, invert, load_model  # noqa: E402
from .config import ModelConfig, SolverConfig, StftConfig, TrainConfig  # noqa: E402

__all__ = ["ModelConfig", "SolverConfig", "StftConfig", "StreamingInverter", "TrainConfig",
           "__version__", "invert", "load_model"]
