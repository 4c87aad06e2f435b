"""ppsi: online STFT phase reconstruction from magnitudes (tiny causal CNN + tridiagonal least
squares). The names below load on first use, so ``ppsi --help`` does not import torch."""

from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    "invert": "api", "Inverter": "inverter", "Stream": "inverter",
    "METHODS": "methods", "Method": "methods", "parse_method": "methods",
    "SHIPPED": "weights", "load_model": "weights",
    "ModelConfig": "config", "SolverConfig": "config", "StftConfig": "config",
    "TrainConfig": "config", "keep_freed_memory": "runtime",
}
__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'ppsi_cli' has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
