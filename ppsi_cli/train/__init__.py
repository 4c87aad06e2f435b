"""Training: data pipeline, objective, the (distributed) loop."""

from .loop import TrainError, launch, run

__all__ = ["TrainError", "launch", "run"]
