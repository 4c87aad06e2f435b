"""STFT / ISTFT with frames referenced to their start (X_t[k] = sum_n x[tH+n] w[n] e^{-j2pi kn/N}).

Padding rule: ``pad = win_length - hop_length`` zeros before the signal and at least as many after
it, so every sample of the signal lies under a full set of overlapping windows and
``istft(stft(x), length=len(x))`` returns ``x`` to float rounding. A signal of L samples has
``n_frames(L) = floor((pad + L - 1) / hop) + 1`` frames; without a length, ``istft`` returns
``(T + 1) * hop - win_length`` samples (everything fully overlapped).
"""

from __future__ import annotations

import torch

from ..config import StftConfig


def window(cfg: StftConfig, dtype=torch.float32, device=None) -> torch.Tensor:
    """Periodic analysis/synthesis window of ``win_length``, zero-padded at the end to ``n_fft``."""
    fn = {"hann": torch.hann_window, "hamming": torch.hamming_window,
          "blackman": torch.blackman_window}[cfg.window]
    w = fn(cfg.win_length, periodic=True, dtype=torch.float64)
    if cfg.n_fft > cfg.win_length:
        w = torch.nn.functional.pad(w, (0, cfg.n_fft - cfg.win_length))
    return w.to(dtype=dtype, device=device)


def check_spectrogram(x: torch.Tensor, cfg: StftConfig, complex_ok: bool = False) -> None:
    """The one validator of spectrograms given to ppsi: shape (..., n_bins, T >= 1), finite,
    real and non-negative (or complex where ``complex_ok``). Raises ValueError naming the
    problem."""
    name = "spectrogram" if x.is_complex() else "magnitude"
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., freq, time), got {tuple(x.shape)}")
    if x.is_complex() and not complex_ok:
        raise ValueError("magnitude is complex; pass real magnitudes (abs of the STFT)")
    if not (x.is_complex() or x.is_floating_point()):
        raise ValueError(f"{name} has dtype {x.dtype}; expected floating point")
    bins = x.shape[-2]
    if bins != cfg.n_bins:
        hint = f" (n_fft={2 * (bins - 1)}?)" if bins > 1 else ""
        raise ValueError(f"{name} has {bins} bins{hint}; expected {cfg.n_bins} "
                         f"(n_fft={cfg.n_fft})")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has zero frames")
    if not torch.isfinite(x).all():
        bad = "NaN" if torch.isnan(x).any() else "Inf"
        raise ValueError(f"{name} contains {bad} values")
    if not x.is_complex() and (x < 0).any():
        raise ValueError(f"magnitude contains negative values (min {x.min().item():.3g}); "
                         "expected a linear magnitude")


def n_frames(length: int, cfg: StftConfig) -> int:
    """Number of frames the STFT of ``length`` samples has."""
    if length < 1:
        raise ValueError(f"signal has {length} samples; need at least 1")
    return (cfg.pad + length - 1) // cfg.hop_length + 1


def default_length(frames: int, cfg: StftConfig) -> int:
    """Samples ``istft`` returns for ``frames`` frames when no length is given."""
    return max(0, (frames + 1) * cfg.hop_length - cfg.win_length)


def stft(x: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Complex STFT of ``x`` (..., L) -> (..., n_fft // 2 + 1, T)."""
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    length = x.shape[-1]
    frames = n_frames(length, cfg)
    total = (frames - 1) * cfg.hop_length + cfg.n_fft
    xp = torch.nn.functional.pad(x, (cfg.pad, total - cfg.pad - length))
    segs = xp.unfold(-1, cfg.n_fft, cfg.hop_length)  # (..., T, n_fft)
    spec = torch.fft.rfft(segs * window(cfg, x.dtype, x.device), dim=-1)
    return spec.transpose(-1, -2)


def _wsum_period(cfg: StftConfig, dtype, device) -> torch.Tensor:
    """Sum of squared windows in the fully overlapped region, one period of ``hop_length``."""
    w2 = window(cfg, torch.float64) ** 2
    n_hops = -(-cfg.n_fft // cfg.hop_length)
    w2 = torch.nn.functional.pad(w2, (0, n_hops * cfg.hop_length - cfg.n_fft))
    per = w2.reshape(n_hops, cfg.hop_length).sum(0)
    if per.min() < 1e-8 * per.max():
        raise ValueError(
            f"window {cfg.window!r} with win_length={cfg.win_length}, hop_length={cfg.hop_length} "
            "does not overlap enough to be inverted")
    return per.to(dtype=dtype, device=device)


def _frames_time(spec: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Windowed time frames (..., T, n_fft) of a complex STFT (..., F, T)."""
    if spec.shape[-2] != cfg.n_bins:
        raise ValueError(
            f"spectrogram has {spec.shape[-2]} bins; expected {cfg.n_bins} (n_fft={cfg.n_fft})")
    frames = torch.fft.irfft(spec.transpose(-1, -2), n=cfg.n_fft, dim=-1)
    return frames * window(cfg, frames.dtype, frames.device)


def istft(spec: torch.Tensor, cfg: StftConfig, length: int | None = None) -> torch.Tensor:
    """Inverse of :func:`stft`: complex (..., F, T) -> real (..., length) by weighted overlap-add."""
    frames = _frames_time(spec, cfg)  # (..., T, N)
    lead, (n_t, n) = frames.shape[:-2], frames.shape[-2:]
    hop = cfg.hop_length
    total = (n_t - 1) * hop + n
    flat = frames.reshape(-1, n_t, n).transpose(1, 2)  # (B, N, T)
    y = torch.nn.functional.fold(flat, (1, total), (1, n), stride=(1, hop)).reshape(*lead, total)
    w2 = (window(cfg, frames.dtype, frames.device) ** 2).reshape(1, n, 1).expand(1, n, n_t)
    wsum = torch.nn.functional.fold(w2, (1, total), (1, n), stride=(1, hop)).reshape(total)
    # Inside the signal the window sum is the periodic steady-state one; use it everywhere it is
    # reached so that streaming and whole-utterance synthesis agree bit for bit.
    per = _wsum_period(cfg, frames.dtype, frames.device)
    steady = per.repeat(-(-total // hop))[:total]
    wsum = torch.where(wsum >= steady * (1 - 1e-9), steady, wsum.clamp_min(1e-8 * steady.max()))
    y = y / wsum
    if length is None:
        length = default_length(n_t, cfg)
    end = cfg.pad + length
    if end > total:
        y = torch.nn.functional.pad(y, (0, end - total))
    return y[..., cfg.pad:end]


class OverlapAdd:
    """Streaming ISTFT: push complex frames (..., F, n) a chunk at a time, get the samples they
    make final (``n * hop_length`` of them, fewer inside the leading padding).

    The concatenation of all pushes equals ``istft(frames, cfg)`` with its default length, for
    any chunking (to float rounding).
    """

    def __init__(self, cfg: StftConfig):
        self.cfg = cfg
        self._carry: torch.Tensor | None = None  # overlap not yet final, (..., n_fft - hop)
        self._pos = 0  # padded-domain index of the carry's first sample
        self._per: torch.Tensor | None = None

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        cfg, hop = self.cfg, self.cfg.hop_length
        t = _frames_time(frames, cfg)  # (..., n, N)
        lead, (n, size) = t.shape[:-2], t.shape[-2:]
        total = (n - 1) * hop + size
        y = torch.nn.functional.fold(t.reshape(-1, n, size).transpose(1, 2), (1, total),
                                     (1, size), stride=(1, hop)).reshape(*lead, total)
        if self._carry is None:
            self._per = _wsum_period(cfg, t.dtype, t.device)
        else:
            y[..., :self._carry.shape[-1]] += self._carry
        done = n * hop
        self._carry = y[..., done:]
        out = y[..., :done] / self._per.repeat(n)
        start, self._pos = self._pos, self._pos + done
        return out[..., max(0, cfg.pad - start):]
