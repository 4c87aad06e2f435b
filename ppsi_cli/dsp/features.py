"""Log-magnitude features for the network (causal, gain invariant)."""

from __future__ import annotations

import torch


def log_magnitude(mag: torch.Tensor, floor: float = 1e-5, eps: float = 1e-20) -> torch.Tensor:
    """Natural log of ``mag`` (..., F, T), floored per frame at ``floor`` x that frame's maximum.

    Each frame depends on itself only (causal). Centering for gain invariance is done by the
    model, relative to the newest frame it sees.
    """
    peak = mag.amax(dim=-2, keepdim=True).clamp_min(eps)
    return torch.log(torch.maximum(mag, peak * floor))
