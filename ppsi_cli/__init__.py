"""ppsi: online STFT phase reconstruction from magnitudes (tiny causal CNN + tridiagonal least squares)."""

__version__ = "0.1.0"

from .config import ModelConfig, SolverConfig, StftConfig, TrainConfig  # noqa: E402

__all__ = ["ModelConfig", "SolverConfig", "StftConfig", "TrainConfig", "__version__"]
