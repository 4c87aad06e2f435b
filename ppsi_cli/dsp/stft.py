"""STFT / ISTFT for both framings of :class:`~ppsi_cli.config.StftConfig` (start-referenced and
``center=True``), X_t[k] = sum_n xp[tH + n] w[n] e^{-j 2 pi k n / N} over the padded signal xp.

The synthesis is one weighted overlap-add, :class:`OverlapAdd`, that divides each sample by the
sum of the squared windows that cover it: the steady-state sum inside the signal, the true
(partial) sum where frames are missing at its edges, as ``torch.istft`` does. ``istft`` is that
stream run over all frames at once, so streaming and whole-utterance synthesis agree; with
``length=len(x)``, ``istft(stft(x))`` returns ``x`` to float rounding.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..config import StftConfig


def window(cfg: StftConfig, dtype=torch.float32, device=None) -> torch.Tensor:
    """Periodic window of ``win_length`` samples, centred in ``n_fft`` with zeros (as torch and
    librosa place it); ``sqrt-hann`` is the square root of the periodic Hann window.

    Cached per (config, dtype, device): iterative methods call it twice per iteration. The
    tensor is shared, so callers never write into it."""
    return _window(cfg, dtype, torch.device(device or "cpu"))


@lru_cache(maxsize=64)
def _window(cfg: StftConfig, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    make = {"hann": torch.hann_window, "sqrt-hann": torch.hann_window,
            "hamming": torch.hamming_window, "blackman": torch.blackman_window}[cfg.window]
    w = make(cfg.win_length, periodic=True, dtype=torch.float64)
    if cfg.window == "sqrt-hann":
        w = w.sqrt()
    left = cfg.offset
    w = torch.nn.functional.pad(w, (left, cfg.n_fft - cfg.win_length - left))
    return w.to(dtype=dtype, device=device)


#: band counts of common mel front ends: a spectrogram with one of them is likely a mel
MEL_BANDS = (40, 64, 80, 96, 100, 128, 160)


def check_spectrogram(x: torch.Tensor, cfg: StftConfig, complex_ok: bool = False,
                      empty_ok: bool = False) -> None:
    """The one validator of spectrograms given to ppsi: shape (..., n_bins, T >= 1) (T = 0 too
    where ``empty_ok``: a stream's chunk), finite, real and non-negative (or complex where
    ``complex_ok``). Raises ValueError naming the problem."""
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
        if bins in MEL_BANDS:
            hint = " (a mel spectrogram? say so: --mel PRESET, or mel=... in the API)"
        raise ValueError(f"{name} has {bins} bins{hint}; expected {cfg.n_bins} "
                         f"(n_fft={cfg.n_fft})")
    if x.shape[-1] == 0 and not empty_ok:
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
    if cfg.center:
        return 1 + max(0, length + 2 * cfg.pad - cfg.n_fft) // cfg.hop_length
    return (cfg.win_length - cfg.hop_length + length - 1) // cfg.hop_length + 1


def default_length(frames: int, cfg: StftConfig) -> int:
    """Samples ``istft`` returns for ``frames`` frames when no length is given."""
    if cfg.center:  # as torch.istft: the frames' span less the padding at each end
        return max(0, cfg.hop_length * (frames - 1) + cfg.n_fft - 2 * cfg.pad)
    return max(0, (frames + 1) * cfg.hop_length - cfg.win_length)


def stft(x: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """Complex STFT of ``x`` (..., L) -> (..., n_fft // 2 + 1, T)."""
    return stft_frames(x, cfg).transpose(-1, -2)


def stft_frames(x: torch.Tensor, cfg: StftConfig) -> torch.Tensor:
    """:func:`stft` in frame-major layout, (..., T, n_fft // 2 + 1) contiguous: the layout the
    FFTs produce, kept by iterative methods so that no iteration copies a transpose."""
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    length = x.shape[-1]
    frames = n_frames(length, cfg)
    total = (frames - 1) * cfg.hop_length + cfg.n_fft
    right = max(0, total - cfg.pad - length)
    if cfg.center and cfg.pad_mode == "reflect":
        if length <= cfg.pad:
            raise ValueError(f"signal has {length} samples; reflect padding of {cfg.pad} needs "
                             "more (or constant padding: pad_mode='constant' in the API or in "
                             "an .npz's metadata)")
        lead = x.shape[:-1]
        xp = torch.nn.functional.pad(x.reshape(-1, 1, length), (cfg.pad, cfg.pad),
                                     mode="reflect").reshape(*lead, length + 2 * cfg.pad)
        xp = torch.nn.functional.pad(xp, (0, max(0, total - xp.shape[-1])))
    else:
        xp = torch.nn.functional.pad(x, (cfg.pad, right))
    segs = xp.unfold(-1, cfg.n_fft, cfg.hop_length)[..., :frames, :]  # (..., T, n_fft)
    return torch.fft.rfft(segs * window(cfg, x.dtype, x.device), dim=-1)


@lru_cache(maxsize=256)
def _envelope(cfg: StftConfig, first: int, last: int, start: int, stop: int) -> torch.Tensor:
    """Sum of squared windows of frames ``first..last`` over padded samples ``[start, stop)``,
    float64 (cached: every ISTFT of an iteration asks for the same; never written into)."""
    hop, size = cfg.hop_length, cfg.n_fft
    w2 = window(cfg, torch.float64) ** 2
    env = torch.zeros(stop - start, dtype=torch.float64)
    for t in range(max(first, (start - size) // hop), min(last, (stop - 1) // hop) + 1):
        lo, hi = max(start, t * hop), min(stop, t * hop + size)
        if lo < hi:
            env[lo - start:hi - start] += w2[lo - t * hop:hi - t * hop]
    return env


def _wsum_period(cfg: StftConfig, dtype, device) -> torch.Tensor:
    """Sum of squared windows in the fully overlapped region, one period of ``hop_length``."""
    hop, size = cfg.hop_length, cfg.n_fft
    n_hops = -(-size // hop)
    per = _envelope(cfg, 0, n_hops, n_hops * hop, (n_hops + 1) * hop)
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


def istft(spec: torch.Tensor, cfg: StftConfig, length: int | None = None,
          edge_floor: float = 0.0) -> torch.Tensor:
    """Inverse of :func:`stft`: complex (..., F, T) -> real (..., length) by weighted overlap-add
    (``length`` defaults to :func:`default_length`; more is padded with zeros; ``edge_floor``:
    :class:`OverlapAdd`'s)."""
    ola = OverlapAdd(cfg, edge_floor)
    y = torch.cat([ola.push(spec), ola.flush()], dim=-1)
    n = default_length(spec.shape[-1], cfg) if length is None else length
    if n <= y.shape[-1]:
        return y[..., :n]
    return torch.nn.functional.pad(y, (0, n - y.shape[-1]))


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Sum of frames (B, n, N) placed ``hop`` apart: (B, (n - 1) hop + N). When ``hop`` divides
    N, the R = N / hop slices of every frame are added as R shifted blocks of whole hops (a few
    vector additions, several times faster than ``fold``); otherwise ``fold``."""
    b, n, size = frames.shape
    total = (n - 1) * hop + size
    if size % hop:
        return torch.nn.functional.fold(frames.transpose(1, 2), (1, total), (1, size),
                                        stride=(1, hop)).reshape(b, total)
    r = size // hop
    parts = frames.reshape(b, n, r, hop)
    out = torch.zeros(b, n + r - 1, hop, dtype=frames.dtype, device=frames.device)
    for i in range(r):
        out[:, i:i + n] += parts[:, :, i]
    return out.reshape(b, total)


class OverlapAdd:
    """Streaming ISTFT: push complex frames (..., F, n) a chunk at a time, get the samples they
    make final (``n * hop_length`` of them, fewer inside the leading padding); :meth:`flush`
    returns the overlap still open after the last frame, divided by the windows that cover it.

    Any chunking gives the same samples as one push of all frames (to float rounding).

    ``edge_floor``: the window sum a sample is divided by is at least this share of the steady
    sum. 0 (the default) divides by the true sum: the exact inverse of :func:`stft`. Where only
    the tails of one or two windows cover a sample (the first samples when frames start at the
    signal, as torch's ``center=False`` is ``center=True, pad_length=0`` here, or samples past
    the default length), the true sum is near 0 and divides an estimated phase's inconsistency
    up to far above full scale; a floor of 0.25 bounds that gain below 1 (a taper there) and
    leaves every sample under a full set of windows exact.
    """

    def __init__(self, cfg: StftConfig, edge_floor: float = 0.0):
        self.cfg = cfg
        self.edge_floor = edge_floor
        self._carry: torch.Tensor | None = None  # overlap not yet final, (..., n_fft - hop)
        self._frames = 0  # frames pushed
        self._per: torch.Tensor | None = None
        self._head: torch.Tensor | None = None  # window sum over the first n_fft samples
        self._env: torch.Tensor | None = None  # _per repeated for the last push's frame count

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        cfg, hop = self.cfg, self.cfg.hop_length
        t = _frames_time(frames, cfg)  # (..., n, N)
        lead, (n, size) = t.shape[:-2], t.shape[-2:]
        total = (n - 1) * hop + size
        y = _overlap_add(t.reshape(-1, n, size), hop).reshape(*lead, total)
        if self._carry is None:
            self._per = _wsum_period(cfg, t.dtype, t.device)
            head = _envelope(cfg, 0, size, 0, size)
            floor = max(1e-8 * float(head.max()), self.edge_floor * float(self._per.max()))
            self._head = head.clamp_min(floor).to(t.dtype).to(t.device)
        else:
            y[..., :self._carry.shape[-1]] += self._carry
        start, done = self._frames * hop, n * hop
        self._frames += n
        self._carry = y[..., done:]
        if self._env is None or self._env.shape[-1] != n * hop:  # the same n push after push
            self._env = self._per.repeat(n)
        env = self._env
        if start < size:  # the first samples lie under fewer windows
            k = min(size - start, done)
            env = torch.cat([self._head[start:start + k], env[k:]])
        out = y[..., :done] / env
        return out[..., max(0, self.cfg.pad - start):]

    def flush(self) -> torch.Tensor:
        """The samples after the last frame's hop, which no later frame will overlap."""
        if self._carry is None:
            return torch.zeros(0)
        start = self._frames * self.cfg.hop_length
        stop = start + self._carry.shape[-1]
        env = _envelope(self.cfg, 0, self._frames - 1, start, stop)
        env = env.clamp_min(max(1e-8, self.edge_floor) * float(self._per.max()))
        env = env.to(self._carry.dtype)
        out, self._carry = self._carry / env.to(self._carry.device), self._carry[..., :0]
        return out[..., max(0, self.cfg.pad - start):]
