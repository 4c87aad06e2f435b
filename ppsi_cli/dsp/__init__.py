"""Signal processing: STFT/ISTFT pair, phase differences, log-magnitude features."""

from .features import log_magnitude
from .phase import bpd, bpd_to_tpd, fpd, tpd, wrap
from .stft import OverlapAdd, istft, n_frames, stft, window

__all__ = [
    "OverlapAdd", "bpd", "bpd_to_tpd", "fpd", "istft", "log_magnitude", "n_frames", "stft",
    "tpd", "window", "wrap",
]
