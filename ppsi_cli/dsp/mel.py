"""Mel spectrograms: the front ends of TTS models (:data:`~ppsi_cli.config.MEL_PRESETS`) and
their inversion to linear magnitudes by non-negative least squares.

The filters are librosa's construction (``librosa.filters.mel``; Slaney, Auditory Toolbox TR
1998) on either mel scale: ``n_mels + 2`` points equally spaced in mel between ``f_min`` and
``f_max``, a triangle from each point to the next but one, evaluated at the bin frequencies
``k sr / n_fft``; Slaney normalisation divides each by half its width in Hz. With the HTK scale
and no norm this is ``torchaudio.functional.melscale_fbanks``; tests/test_mel.py checks both to
float rounding.

Inversion (:func:`mel_to_magnitude`): undo the log, then per frame the non-negative
``s = |X| ** power`` closest to the mel in least squares, ``min ||F s - m||^2, s >= 0``, started
at the clipped pseudo-inverse solution (as ``librosa.feature.inverse.mel_to_stft``) and refined
by :data:`NNLS_ITERS` steps of accelerated projected gradient (FISTA; Beck & Teboulle, SIAM J.
Imaging Sci. 2009) in torch, batched over frames on CPU or GPU. Frames are independent, so it
runs causally, a chunk at a time.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..config import MelConfig, StftConfig

#: FISTA steps after the pseudo-inverse start: on speech the mel of the result then matches the
#: input to 0.1 % per frame at the median (tests/test_mel.py states the bound it checks)
NNLS_ITERS = 32


def hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


@functools.lru_cache(maxsize=16)
def _filters(mel: MelConfig, sample_rate: int, n_fft: int) -> torch.Tensor:
    if mel.upper(sample_rate) > sample_rate / 2 + 1e-9:
        raise ValueError(f"mel f_max {mel.upper(sample_rate):g} Hz lies above the Nyquist "
                         f"frequency of {sample_rate} Hz")
    points = mel_to_hz(np.linspace(hz_to_mel(mel.f_min, mel.mel_scale),
                                   hz_to_mel(mel.upper(sample_rate), mel.mel_scale),
                                   mel.n_mels + 2), mel.mel_scale)
    freqs = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    width = np.diff(points)
    ramps = points[:, None] - freqs[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling))
    if mel.mel_norm == "slaney":
        fb *= (2.0 / (points[2:] - points[:-2]))[:, None]
    return torch.from_numpy(fb)  # float64; callers copy it with .to()


def mel_filters(mel: MelConfig, stft: StftConfig, dtype=torch.float32,
                device=None) -> torch.Tensor:
    """The filter bank ``(n_mels, n_fft // 2 + 1)``: mel = filters @ |X| ** power."""
    return _filters(mel, stft.sample_rate, stft.n_fft).to(dtype=dtype, device=device)


def _db_factor(mel: MelConfig) -> float:
    return 10.0 if mel.power == 2 else 20.0


def mel_spectrogram(mag: torch.Tensor, mel: MelConfig, stft: StftConfig) -> torch.Tensor:
    """The front end on linear magnitudes ``(..., K, T)``: ``(..., n_mels, T)`` in ``mel.log``."""
    fb = mel_filters(mel, stft, mag.dtype, mag.device)
    m = torch.matmul(fb, mag ** mel.power if mel.power != 1 else mag)
    if mel.log == "none":
        return m
    m = m.clamp_min(mel.clamp)
    if mel.log == "ln":
        return torch.log(m)
    if mel.log == "log10":
        return torch.log10(m)
    return _db_factor(mel) * torch.log10(m)


def check_mel(x: torch.Tensor, mel: MelConfig, stft: StftConfig, empty_ok: bool = False
              ) -> None:
    """The one validator of mel input: shape ``(..., n_mels, T >= 1)`` (T = 0 too where
    ``empty_ok``), real, finite, and non-negative unless it is a log-mel. Raises ValueError
    naming the problem."""
    if x.ndim < 2:
        raise ValueError(f"mel spectrogram must have shape (..., bands, time), got "
                         f"{tuple(x.shape)}")
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"mel spectrogram has dtype {x.dtype}; expected real floating point")
    bands = x.shape[-2]
    if bands != mel.n_mels:
        what = (f" ({bands} bins: a linear spectrogram of n_fft={stft.n_fft}? then pass it "
                "without mel settings)" if bands == stft.n_bins else "")
        raise ValueError(f"mel spectrogram has {bands} bands; the mel settings say "
                         f"n_mels={mel.n_mels}{what}")
    if x.shape[-1] == 0 and not empty_ok:
        raise ValueError("mel spectrogram has zero frames")
    if not torch.isfinite(x).all():
        raise ValueError(f"mel spectrogram contains {'NaN' if torch.isnan(x).any() else 'Inf'} "
                         "values")
    if mel.log == "none" and (x < 0).any():
        raise ValueError(f"mel spectrogram has negative values (min {x.min().item():.3g}): a "
                         "log-mel? say which log (log=ln | log10 | db)")


def mel_values(x: torch.Tensor, mel: MelConfig) -> torch.Tensor:
    """Linear mel values (of ``|X| ** power``) from ``x`` in ``mel.log``; ValueError if undoing
    the log overflows (a linear mel declared as a log-mel)."""
    if mel.log == "none":
        return x
    base = {"ln": math.e, "log10": 10.0, "db": 10.0 ** (1.0 / _db_factor(mel))}[mel.log]
    m = torch.pow(torch.tensor(base, dtype=x.dtype, device=x.device), x)
    if not torch.isfinite(m).all():
        raise ValueError(f"mel spectrogram: undoing log={mel.log} overflows (max "
                         f"{x.max().item():.3g}): a linear mel given as a log-mel? (log=none)")
    return m


@functools.lru_cache(maxsize=16)
def _nnls_operators(mel: MelConfig, sample_rate: int, n_fft: int):
    fb = _filters(mel, sample_rate, n_fft)
    pinv = torch.linalg.pinv(fb)
    lipschitz = float(torch.linalg.eigvalsh(fb @ fb.T).max())
    return fb, pinv, lipschitz


@functools.lru_cache(maxsize=16)
def _sparse_filters(mel: MelConfig, sample_rate: int, n_fft: int, dtype: torch.dtype):
    """``F / L`` and ``F^T`` as CPU CSR matrices. The filters are triangles: about 2 % of ``F``
    is non-zero (727 of 41,040 entries for HiFi-GAN's), and on one CPU thread the sparse
    products take a tenth (``F y``) and a quarter (``F^T z``) of the dense ones' time
    (docs/experiments.md, 2026-12-02)."""
    import warnings

    fb64, _, lipschitz = _nnls_operators(mel, sample_rate, n_fft)
    fb = fb64.to(dtype)
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return (fb / lipschitz).to_sparse_csr(), fb.T.contiguous().to_sparse_csr()


def nnls(m: torch.Tensor, mel: MelConfig, stft: StftConfig,
         iters: int = NNLS_ITERS) -> torch.Tensor:
    """Non-negative ``s (..., K, T)`` minimising ``||F s - m||^2`` frame by frame, for linear
    mel values ``m (..., n_mels, T)`` (see the module docstring). On CPU the two products of an
    iteration use the filters' sparsity; frames are independent, so the items of a batch run
    as more columns."""
    fb64, pinv64, lipschitz = _nnls_operators(mel, stft.sample_rate, stft.n_fft)
    lead, (n_mels, n_t) = m.shape[:-2], m.shape[-2:]
    cols = m.reshape(-1, n_mels, n_t).transpose(0, 1).reshape(n_mels, -1)  # (n_mels, B T)
    if m.device.type == "cpu":
        fb_l, fbt = _sparse_filters(mel, stft.sample_rate, stft.n_fft, m.dtype)
    else:
        fb = fb64.to(m.dtype).to(m.device)
        fb_l, fbt = fb / lipschitz, fb.T.contiguous()
    s = torch.matmul(pinv64.to(m.dtype).to(m.device), cols).clamp_min(0)
    target = torch.matmul(fbt, cols) / lipschitz
    y, t = s, 1.0
    for _ in range(iters):
        step = y - torch.matmul(fbt, torch.matmul(fb_l, y)) + target
        s_next = step.clamp_min(0)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = s_next + ((t - 1.0) / t_next) * (s_next - s)
        s, t = s_next, t_next
    k = s.shape[0]
    return s.reshape(k, -1, n_t).transpose(0, 1).reshape(*lead, k, n_t)


def mel_to_magnitude(x: torch.Tensor, mel: MelConfig, stft: StftConfig,
                     check: bool = True) -> torch.Tensor:
    """Linear magnitudes ``(..., K, T)`` of a mel spectrogram ``x (..., n_mels, T)`` given in
    ``mel``'s scale: validated (unless ``check`` is False: done already), log undone, NNLS,
    ``power``-th root."""
    if check:
        check_mel(x, mel, stft)
    s = nnls(mel_values(x, mel), mel, stft)
    return s.sqrt() if mel.power == 2 else s
