"""RTISI and RTISI-LA: real-time iterative spectrogram inversion with look-ahead.

Zhu, Beauregard & Wyse, "Real-time signal estimation from modified short-time Fourier transform
magnitude spectra" (IEEE TASLP 15, 2007); RTISI (Beauregard, Zhu & Wyse 2005) is look-ahead 0.

A buffer holds the time-domain frames (synthesis-windowed) that overlap the ``lookahead + 1``
uncommitted frames. Per new magnitude frame, ``n_iter`` sweeps run over the uncommitted frames,
newest to oldest: partial overlap-add at the frame -> analysis window -> FFT -> impose the
magnitude -> IFFT -> synthesis window. The newest frame has no successors yet, so its partial
reconstruction fades out towards its end; it is analysed with an asymmetric window, the sum of the
synthesis windows of the frames that overlap it (before its first estimate exists, without its own
window). Then the oldest uncommitted frame is committed. Latency: ``lookahead`` frames plus the
STFT's own frame.

Where the partial reconstruction is exactly silent (first frame, onset after digital silence),
the phase falls back to that of an impulse at the window centre, so a frame after silence is
never synthesised silent (a known failure of a public implementation, whose zero phase puts the
energy at the frame edges, where the window is 0). Optional momentum applies the fast
Griffin-Lim update per frame (Perraudin et al. 2013).
"""

from __future__ import annotations

import math

import torch

from ..config import StftConfig
from ..dsp.stft import OverlapAdd, _wsum_period, istft, window
from .griffin_lim import _check_mag
from .pghi import Chunk

FALLBACK = 1e-9  # weight of the centred-impulse phase, relative to the frame's peak magnitude


def default_lookahead(cfg: StftConfig) -> int:
    """ceil(win_length / hop_length) - 1 frames (3 for 1024 / 256)."""
    return -(-cfg.win_length // cfg.hop_length) - 1


class RtisiLaStream:
    """Online RTISI-LA: push one magnitude frame (..., F), get the frames it commits.

    Each push returns a :class:`Chunk` with the committed complex frame (none during the first
    ``lookahead`` pushes) and the waveform samples it makes final; :meth:`flush` commits the last
    ``lookahead`` frames. The concatenated samples equal :func:`rtisi_la` with the ISTFT's default
    length. Leading dimensions (a batch) are kept.
    """

    def __init__(self, cfg: StftConfig, lookahead: int | None = None, n_iter: int = 5,
                 momentum: float = 0.0):
        lookahead = default_lookahead(cfg) if lookahead is None else lookahead
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.cfg, self.lookahead, self.n_iter, self.momentum = cfg, lookahead, n_iter, momentum
        self._back = default_lookahead(cfg)  # committed frames that overlap an uncommitted one
        self._ola = OverlapAdd(cfg)
        self._pushed = 0  # frames shifted in (flush adds silent ones)
        self._end: int | None = None  # padded-domain end of the signal, known at flush
        self._lead: tuple[int, ...] | None = None

    def _setup(self, mag: torch.Tensor) -> None:
        cfg, n, hop = self.cfg, self.cfg.n_fft, self.cfg.hop_length
        dtype, dev = mag.dtype, mag.device
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self._lead = tuple(mag.shape[:-1])
        b, la1 = math.prod(self._lead), self.lookahead + 1
        self._frames = torch.zeros(b, self._back + la1, n, dtype=dtype, device=dev)
        self._mags = torch.zeros(b, la1, cfg.n_bins, dtype=dtype, device=dev)
        self._specs = torch.zeros(b, la1, cfg.n_bins, dtype=cdtype, device=dev)
        self._prev = torch.zeros(b, la1, cfg.n_bins, dtype=cdtype, device=dev)  # momentum
        self._win = window(cfg, dtype, dev)
        # overlap-add -> signal: the steady window-square sum (frames start on the hop grid)
        self._norm = _wsum_period(cfg, dtype, dev).repeat(-(-n // hop))[:n]
        # asymmetric analysis windows of the newest frame: the synthesis windows of the frames
        # overlapping it from the past, without (first sweep) and with its own
        w64 = window(cfg, torch.float64)
        past = torch.zeros(n, dtype=torch.float64)
        for d in range(1, self._back + 1):
            past[: n - d * hop] += w64[d * hop:]
        both = past + w64
        self._asym_first = (past / both.max()).to(dtype=dtype, device=dev)
        self._asym = (both / both.max()).to(dtype=dtype, device=dev)
        k = torch.arange(cfg.n_bins, dtype=torch.float64)
        centre = torch.polar(torch.ones_like(k), -math.pi * k * cfg.win_length / n)
        self._centre = centre.to(dtype=cdtype, device=dev)

    def _signal(self) -> torch.Tensor:
        """Overlap-add (not yet normalised) of the buffer, (B, (S - 1) * hop + N)."""
        fr = self._frames
        b, s, n = fr.shape
        hop = self.cfg.hop_length
        total = (s - 1) * hop + n
        y = torch.nn.functional.fold(fr.transpose(1, 2), (1, total), (1, n), stride=(1, hop))
        return y.reshape(b, total)

    def _update(self, sig: torch.Tensor, slot: int, ana: torch.Tensor, first: bool) -> None:
        """One projection of the uncommitted frame in buffer ``slot``, in place."""
        cfg, n, hop = self.cfg, self.cfg.n_fft, self.cfg.hop_length
        u = slot - self._back
        start = slot * hop
        seg = sig[:, start:start + n] / self._norm
        # samples outside the signal (the padding) are known zeros
        pos = (self._pushed - self._frames.shape[1] + slot) * hop  # padded index of the frame
        lo = min(max(cfg.pad - pos, 0), n)
        hi = n if self._end is None else min(max(self._end - pos, 0), n)
        if lo > 0 or hi < n:
            seg = torch.nn.functional.pad(seg[:, lo:hi], (lo, n - hi))
        mag = self._mags[:, u]
        spec = torch.fft.rfft(seg * ana, dim=-1)
        spec = spec + (FALLBACK * mag.amax(-1, keepdim=True)) * self._centre
        z = torch.polar(mag, torch.angle(spec))
        if self.momentum:
            proj = z
            if not first:
                z = proj + self.momentum * (proj - self._prev[:, u])
            self._prev[:, u] = proj
        new = self._win * torch.fft.irfft(z, n=n, dim=-1)
        sig[:, start:start + n] += new - self._frames[:, slot]
        self._frames[:, slot] = new
        self._specs[:, u] = z

    def _step(self, mag: torch.Tensor) -> Chunk:
        """Shift in ``mag`` (B, F), iterate, commit the oldest uncommitted frame."""
        self._frames = torch.roll(self._frames, -1, dims=1)
        self._frames[:, -1] = 0
        for buf in (self._mags, self._specs, self._prev):
            buf[:] = torch.roll(buf, -1, dims=1)
            buf[:, -1] = 0
        self._mags[:, -1] = mag
        self._pushed += 1
        sig = self._signal()
        newest = self._frames.shape[1] - 1
        for it in range(self.n_iter):
            self._update(sig, newest, self._asym_first if it == 0 else self._asym, it == 0)
            for slot in range(newest - 1, self._back - 1, -1):
                self._update(sig, slot, self._win, False)
        index = self._pushed - 1 - self.lookahead  # frame to commit
        if index < 0 or (self._end is not None and index * self.cfg.hop_length >= self._end):
            return self._empty()
        z = self._specs[:, 0].clone()  # the buffers are updated in place
        if self.momentum:  # the committed frame has the given magnitude; keep it in the buffer
            z = torch.polar(self._mags[:, 0], torch.angle(z))
            self._frames[:, self._back] = self._win * torch.fft.irfft(z, n=self.cfg.n_fft, dim=-1)
        frame = z.reshape(*self._lead, -1)
        return Chunk(self._ola.push(frame), frame.unsqueeze(-1))

    def _empty(self) -> Chunk:
        lead = self._lead or ()
        f = self._specs.new_zeros(*lead, self.cfg.n_bins, 0)
        return Chunk(self._mags.new_zeros(*lead, 0), f)

    def push(self, mag: torch.Tensor) -> Chunk:
        """Add magnitude frame (..., F); return the committed frame and the final samples."""
        if self._end is not None:
            raise RuntimeError("stream was flushed; start a new one")
        if mag.shape[-1] != self.cfg.n_bins:
            raise ValueError(f"frame has {mag.shape[-1]} bins; expected {self.cfg.n_bins} "
                             f"(n_fft={self.cfg.n_fft})")
        if torch.is_complex(mag):
            raise ValueError("magnitude must be real; pass spec.abs()")
        mag = mag if torch.is_floating_point(mag) else mag.to(torch.float32)
        if self._lead is None:
            self._setup(mag)
        elif tuple(mag.shape[:-1]) != self._lead:
            raise ValueError(f"frame has leading shape {tuple(mag.shape[:-1])}; the stream "
                             f"started with {self._lead}")
        return self._step(mag.reshape(-1, self.cfg.n_bins))

    def flush(self) -> Chunk:
        """Commit the remaining look-ahead frames: the signal ends after the last frame pushed."""
        if self._end is not None:
            raise RuntimeError("stream was already flushed")
        if self._lead is None:
            self._end = 0
            return Chunk(torch.zeros(0), torch.zeros(self.cfg.n_bins, 0, dtype=torch.complex64))
        self._end = self._pushed * self.cfg.hop_length
        silent = self._mags.new_zeros(self._mags.shape[0], self.cfg.n_bins)
        chunks = [self._step(silent) for _ in range(self.lookahead)] or [self._empty()]
        return Chunk(torch.cat([c.samples for c in chunks], -1),
                     torch.cat([c.frames for c in chunks], -1))


def rtisi_la_stft(mag: torch.Tensor, cfg: StftConfig, lookahead: int | None = None,
                  n_iter: int = 5, momentum: float = 0.0) -> torch.Tensor:
    """RTISI-LA complex STFT (..., F, T) from magnitudes (..., F, T), run as the stream does."""
    _check_mag(mag, cfg)
    stream = RtisiLaStream(cfg, lookahead, n_iter, momentum)
    frames = [stream.push(mag[..., t]).frames for t in range(mag.shape[-1])]
    return torch.cat(frames + [stream.flush().frames], dim=-1)


def rtisi_la(mag: torch.Tensor, cfg: StftConfig, lookahead: int | None = None, n_iter: int = 5,
             momentum: float = 0.0, length: int | None = None) -> torch.Tensor:
    """RTISI-LA waveform (..., L) from magnitudes (..., F, T); see :class:`RtisiLaStream`.

    ``lookahead`` defaults to ceil(win_length / hop_length) - 1; ``n_iter`` sweeps per frame.
    """
    return istft(rtisi_la_stft(mag, cfg, lookahead, n_iter, momentum), cfg, length)


def rtisi(mag: torch.Tensor, cfg: StftConfig, n_iter: int = 5, momentum: float = 0.0,
          length: int | None = None) -> torch.Tensor:
    """RTISI: :func:`rtisi_la` without look-ahead."""
    return rtisi_la(mag, cfg, 0, n_iter, momentum, length)
