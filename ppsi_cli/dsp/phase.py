"""Phase differences of a complex STFT (Masuyama et al., TASLP 2023), all wrapped to (-pi, pi].

Shapes follow ``(..., freq, time)``. TPD/BPD are backward differences along time (rad per hop),
defined for frames t >= 1 and set to 0 at t = 0; FPD is the difference along frequency (rad per
bin), K - 1 values per frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..config import StftConfig


def wrap(a: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return math.pi - torch.remainder(math.pi - a, 2 * math.pi)


def _phase(spec: torch.Tensor) -> torch.Tensor:
    return torch.angle(spec) if torch.is_complex(spec) else spec


@lru_cache(maxsize=64)
def bin_advance(cfg: StftConfig, dtype=torch.float32, device=None) -> torch.Tensor:
    """Phase advance 2 pi k H / N of a stationary sinusoid at each bin centre, (F, 1) (cached:
    a stream asks for it at every push; never written into)."""
    k = torch.arange(cfg.n_bins, dtype=torch.float64)
    return (2 * math.pi * k * cfg.hop_length / cfg.n_fft).remainder(2 * math.pi).to(
        dtype=dtype, device=device).unsqueeze(-1)


def tpd(spec: torch.Tensor) -> torch.Tensor:
    """Time phase difference W(phi_t - phi_{t-1}), (..., F, T); frame 0 is 0."""
    phi = _phase(spec)
    d = wrap(phi[..., 1:] - phi[..., :-1])
    return torch.nn.functional.pad(d, (1, 0))


def bpd(spec: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Baseband phase difference W(TPD - 2 pi k H / N), (..., F, T); frame 0 is 0."""
    d = wrap(tpd(spec) - bin_advance(cfg, _phase(spec).dtype, spec.device))
    d[..., 0] = 0
    return d


def bpd_to_tpd(b: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Inverse of :func:`bpd`: TPD = W(BPD + 2 pi k H / N)."""
    return wrap(b + bin_advance(cfg, b.dtype, b.device))


def fpd(spec: torch.Tensor) -> torch.Tensor:
    """Frequency phase difference W(phi[k+1] - phi[k]), (..., F - 1, T)."""
    phi = _phase(spec)
    return wrap(phi[..., 1:, :] - phi[..., :-1, :])
