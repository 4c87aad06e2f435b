"""Classical phase retrieval: (fast) Griffin-Lim, RTISI(-LA), PGHI and RTPGHI.

The offline methods give the complex STFT (..., F, T) of magnitudes (..., F, T)
(:func:`griffin_lim_stft`, :func:`pghi_stft`); the online ones are frame sources that take one
magnitude frame at a time and return the frames they commit (:class:`RtisiLaStream`, RTISI being
look-ahead 0, and :class:`RtpghiStream`). Waveforms come from :class:`ppsi_cli.inverter.Inverter`
(``method="griffin-lim"`` etc.), which validates the input once and overlap-adds.

Measured on arctic_a0007 / arctic_a0009 (Hann 1024, hop 256, 16 kHz; WB-PESQ):
fast Griffin-Lim 100 it. 4.07 / 4.16, 32 it. 3.80 / 3.73; RTISI-LA (LA 3, 5 sweeps) 3.61 / 3.77;
RTISI 2.79 / 2.56; PGHI 3.50 / 3.70; RTPGHI 3.27 / 3.48; PGHI then 32 it. fast GL 4.18 / 4.11.
"""

from __future__ import annotations

from .griffin_lim import griffin_lim_stft
from .pghi import RtpghiStream, gamma, pghi_stft, phase_gradients
from .rtisi import RtisiLaStream, default_lookahead

__all__ = ["RtisiLaStream", "RtpghiStream", "default_lookahead", "gamma", "griffin_lim_stft",
           "pghi_stft", "phase_gradients"]
