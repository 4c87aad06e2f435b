"""Speech quality metrics over 1-D float arrays: PESQ (WB/NB), (E)STOI, LSC, SI-SDR.

Every metric is a plain function ``fn(ref, est, sr) -> float`` (reference first, both at sample
rate ``sr`` in Hz). A value that cannot be computed raises :class:`MetricError` with a reason;
no metric ever returns a placeholder number (0, 1e-5, ...).

Length rule (:func:`align`): both signals are truncated to the shorter one. If the lengths
differ by more than ``MAX_LENGTH_MISMATCH`` (10 %) of the reference length, the pair is not
scored (an estimate that much shorter or longer is not the same utterance, or was cut).

Pair rule (:func:`check_pair`): after alignment the pair must last at least ``MIN_SECONDS``
(0.5 s; ESTOI needs 30 non-silent 25.6 ms frames, PESQ 0.25 s) and neither signal may be silent
(peak below ``SILENCE_PEAK`` = 1e-4, i.e. -80 dBFS).

Sample rates: PESQ is defined at 16 kHz (wide band, ITU-T P.862.2) and 8 kHz (narrow band,
P.862 + P.862.1 mapping); LSC is computed over the model's STFT (:class:`~ppsi_cli.StftConfig`
defaults, 16 kHz). Other rates are resampled with ``scipy.signal.resample_poly``; see
:func:`resample_notice`. (E)STOI resamples to 10 kHz internally (``pystoi``); SI-SDR runs at ``sr``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import StftConfig
from .io import resample

MAX_LENGTH_MISMATCH = 0.10
MIN_SECONDS = 0.5
SILENCE_PEAK = 1e-4
DB_LIMIT = 120.0  # |LSC| and |SI-SDR| are clamped to this many dB (identical signals stay finite)


class MetricError(Exception):
    """A metric cannot be computed for this pair; ``reason`` says why (one line)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _as_1d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (samples,), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise MetricError(f"{name} contains NaN or infinite samples")
    return x


def align(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Truncate ``ref`` and ``est`` to the shorter length (float64 copies).

    Raises MetricError if the lengths differ by more than ``MAX_LENGTH_MISMATCH`` of the
    reference length.
    """
    ref, est = _as_1d(ref, "reference"), _as_1d(est, "estimate")
    n_ref, n_est = len(ref), len(est)
    if n_ref == 0 or n_est == 0:
        raise MetricError(f"empty signal (reference {n_ref}, estimate {n_est} samples)")
    if abs(n_ref - n_est) > MAX_LENGTH_MISMATCH * n_ref:
        raise MetricError(
            f"length mismatch: reference {n_ref} samples, estimate {n_est} "
            f"(more than {MAX_LENGTH_MISMATCH:.0%} apart)")
    n = min(n_ref, n_est)
    return ref[:n], est[:n]


def check_pair(ref: np.ndarray, est: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`align` the pair, then refuse it if too short or if either side is silent."""
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    ref, est = align(ref, est)
    if len(ref) < MIN_SECONDS * sr:
        raise MetricError(f"too short: {len(ref) / sr:.3f} s, need at least {MIN_SECONDS} s")
    for name, x in (("reference", ref), ("estimate", est)):
        peak = float(np.max(np.abs(x)))
        if peak < SILENCE_PEAK:
            level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.0f}"
            raise MetricError(f"{name} is silent (peak {level} dBFS < -80 dBFS)")
    return ref, est


def _pesq(ref: np.ndarray, est: np.ndarray, sr: int, mode: str) -> float:
    from pesq import PesqError, pesq

    ref, est = check_pair(ref, est, sr)
    fs = 16000 if mode == "wb" else 8000
    if sr < fs:  # upsampled narrow-band audio has no wide band to judge
        raise MetricError(f"wide-band PESQ needs audio of at least {fs} Hz, this is {sr} Hz "
                          "(use pesq-nb)")
    ref, est = resample(ref, sr, fs), resample(est, sr, fs)
    try:
        return float(pesq(fs, ref, est, mode))
    except PesqError as e:
        msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise MetricError(f"PESQ: {msg}") from None


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Wide-band PESQ MOS-LQO (ITU-T P.862.2) at 16 kHz, range about 1.04 to 4.64."""
    return _pesq(ref, est, sr, "wb")


def pesq_nb(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Narrow-band PESQ MOS-LQO (ITU-T P.862 with the P.862.1 mapping) at 8 kHz."""
    return _pesq(ref, est, sr, "nb")


def _stoi(ref: np.ndarray, est: np.ndarray, sr: int, extended: bool) -> float:
    from pystoi import stoi as _pystoi

    ref, est = check_pair(ref, est, sr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_pystoi(ref, est, sr, extended=extended))
    for w in caught:  # pystoi warns and returns 1e-5 when too few frames are left
        if "Not enough STFT frames" in str(w.message):
            raise MetricError("too short for STOI: fewer than 30 non-silent frames")
    if not math.isfinite(value):
        raise MetricError(f"STOI is not finite ({value})")
    return value


def estoi(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Extended STOI (Jensen & Taal 2016), 0 to 1, via ``pystoi``."""
    return _stoi(ref, est, sr, extended=True)


def stoi(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """STOI (Taal et al. 2011), 0 to 1, via ``pystoi``."""
    return _stoi(ref, est, sr, extended=False)


def _clamp_db(value: float) -> float:
    return min(max(value, -DB_LIMIT), DB_LIMIT)


def lsc(ref: np.ndarray, est: np.ndarray, sr: int, cfg: StftConfig | None = None) -> float:
    """Log-spectral convergence in dB (lower is better).

    LSC = 20 log10( || |Y| - |X| ||_F / || |X| ||_F ), with X = STFT(ref), Y = STFT(est) the
    complex spectrograms of :func:`ppsi_cli.dsp.stft.stft` under ``cfg`` (default
    ``StftConfig()``: 16 kHz, n_fft = win_length = 1024, hop_length = 256, periodic Hann),
    computed in float64 over all frames of the aligned pair. Signals are resampled to
    ``cfg.sample_rate`` first. The value is clamped to [-120, 120] dB, so identical signals
    give exactly -120 dB.
    """
    import torch

    from .dsp.stft import stft as _stft

    cfg = cfg or StftConfig()
    ref, est = check_pair(ref, est, sr)
    ref, est = resample(ref, sr, cfg.sample_rate), resample(est, sr, cfg.sample_rate)
    x = _stft(torch.from_numpy(np.ascontiguousarray(ref)), cfg).abs().numpy()
    y = _stft(torch.from_numpy(np.ascontiguousarray(est)), cfg).abs().numpy()
    # numpy's pairwise sum does not depend on the thread count (same value for any --jobs)
    num = math.sqrt(float(np.sum((y - x) ** 2)))
    den = math.sqrt(float(np.sum(x ** 2)))
    if den == 0.0:
        raise MetricError("reference spectrogram is all zeros")
    if num == 0.0:
        return -DB_LIMIT
    return _clamp_db(20.0 * math.log10(num / den))


def si_sdr(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), higher is better.

    Both signals are made zero-mean; with a = <est, ref> / ||ref||^2,
    SI-SDR = 10 log10( ||a ref||^2 / ||a ref - est||^2 ), clamped to [-120, 120] dB.
    """
    ref, est = check_pair(ref, est, sr)
    ref, est = ref - ref.mean(), est - est.mean()
    energy = float(ref @ ref)
    if energy == 0.0:
        raise MetricError("reference is constant")
    target = (float(est @ ref) / energy) * ref
    noise = est - target
    t, n = float(target @ target), float(noise @ noise)
    if t == 0.0:  # nothing of the reference in the estimate (a constant one included): worst
        return -DB_LIMIT
    if n == 0.0:
        return DB_LIMIT
    return _clamp_db(10.0 * math.log10(t / n))


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(ref, est, sr)``, the rate it runs at (None: any), its unit."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, int], float]
    higher_is_better: bool
    unit: str = ""
    rate: int | None = None
    description: str = ""


METRICS: dict[str, Metric] = {
    m.name: m for m in (
        Metric("pesq", pesq_wb, True, "MOS", 16000, "wide-band PESQ, ITU-T P.862.2"),
        Metric("pesq-nb", pesq_nb, True, "MOS", 8000, "narrow-band PESQ, ITU-T P.862"),
        Metric("estoi", estoi, True, "", None, "extended STOI (pystoi)"),
        Metric("stoi", stoi, True, "", None, "STOI (pystoi)"),
        Metric("lsc", lsc, False, "dB", StftConfig().sample_rate,
               "log-spectral convergence over the model STFT"),
        Metric("si-sdr", si_sdr, True, "dB", None, "scale-invariant SDR"),
    )
}


def parse_metrics(spec: str) -> list[str]:
    """``"pesq, estoi,lsc"`` -> ``["pesq", "estoi", "lsc"]``; unknown names raise ValueError."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"no metric given; choose from {', '.join(METRICS)}")
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def resample_notice(name: str, sr: int) -> str | None:
    """The notice to show when metric ``name`` resamples audio at ``sr`` Hz, else None."""
    rate = METRICS[name].rate
    if rate is None or rate == sr:
        return None
    return f"{name}: audio resampled from {sr} Hz to {rate} Hz"
