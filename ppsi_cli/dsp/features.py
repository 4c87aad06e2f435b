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


def floor_frame(mag: torch.Tensor, floor: float = 1e-5, eps: float = 1e-20) -> torch.Tensor:
    """The silent frame that follows ``mag`` (..., F): constant at the floor :func:`log_magnitude`
    gives ``mag``, so its log-magnitude is the minimum of ``mag``'s. A strided model sees it as
    the look-ahead after a signal's last frame."""
    peak = mag.amax(dim=-1, keepdim=True).clamp_min(eps)
    return torch.maximum(mag.amin(dim=-1, keepdim=True), peak * floor).expand_as(mag)
