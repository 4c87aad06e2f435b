"""Classical phase-retrieval baselines: (fast) Griffin-Lim, RTISI(-LA), PGHI and RTPGHI.

Every entry of :data:`BASELINES` is ``fn(mag, cfg, **options) -> waveform``: magnitudes
(..., F, T) and a :class:`~ppsi_cli.config.StftConfig` in, waveforms (..., L) out, with
L = ``length`` if given, else the ISTFT default (T + 1) * hop_length - win_length. The ``*_stft``
functions return the complex STFT instead (turn it into a waveform with
:func:`ppsi_cli.dsp.stft.istft`); the online methods also come as streams that take one frame
at a time.

Measured on arctic_a0007 / arctic_a0009 (Hann 1024, hop 256, 16 kHz; WB-PESQ):
fast Griffin-Lim 100 it. 4.07 / 4.16, 32 it. 3.80 / 3.73; RTISI-LA (LA 3, 5 sweeps) 3.61 / 3.77;
RTISI 2.79 / 2.56; PGHI 3.50 / 3.70; RTPGHI 3.27 / 3.48; PGHI then 32 it. fast GL 4.18 / 4.11.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..config import StftConfig
from .griffin_lim import griffin_lim, griffin_lim_stft
from .pghi import Chunk, RtpghiStream, gamma, pghi, pghi_stft, phase_gradients, rtpghi, rtpghi_stft
from .rtisi import RtisiLaStream, default_lookahead, rtisi, rtisi_la, rtisi_la_stft

Baseline = Callable[..., torch.Tensor]

BASELINES: dict[str, Baseline] = {
    "rtisi-la": rtisi_la,
    "rtisi": rtisi,
    "griffin-lim": griffin_lim,
    "pghi": pghi,
    "rtpghi": rtpghi,
}


def invert(method: str, mag: torch.Tensor, cfg: StftConfig, **options) -> torch.Tensor:
    """Waveform (..., L) from magnitudes (..., F, T) with the baseline named ``method``."""
    try:
        fn = BASELINES[method]
    except KeyError:
        known = sorted(BASELINES)
        raise ValueError(f"unknown baseline {method!r}; choose one of {known}") from None
    return fn(mag, cfg, **options)


__all__ = [
    "BASELINES", "Baseline", "Chunk", "RtisiLaStream", "RtpghiStream", "default_lookahead",
    "gamma", "griffin_lim", "griffin_lim_stft", "invert", "pghi", "pghi_stft", "phase_gradients",
    "rtisi", "rtisi_la", "rtisi_la_stft", "rtpghi", "rtpghi_stft",
]
