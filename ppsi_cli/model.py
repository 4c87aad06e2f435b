"""The ~8k-parameter causal CNN that predicts phase differences from log-magnitudes
(Fernandez et al., Interspeech 2025, arXiv 2505.24498).

Input: log-magnitudes of the ``context`` newest frames as channels, convolved along frequency
(internally a Conv2d with kernels ``(1, k)`` over ``(time, freq)`` in channels-last memory layout
applies the same 1-D network to every frame at once; that layout is ~3x faster on CPU). Features
are centred by the mean over frequency of the newest frame, so a gain change of the input changes
nothing. A stem, ``blocks`` residual gated blocks ``h + conv_a(h) * sigmoid(conv_b(h))`` (block i
dilated by ``dilation_growth ** i`` along frequency) and a 1x1 head give, per frame, BPD (rad per
hop, baseband) and FPD (rad per bin).

Strided models see one frame more (frames <= t+1) and predict the differences of frames t and t+1
from that one forward pass: run every second frame, one hop of extra latency, half the CNN cost.
Delayed models (``ModelConfig.delay`` = d) are the same network whose pass at frame t predicts
frame t - d: they see d frames after the one they predict, at d hops of extra latency.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .dsp.features import floor_frame, log_magnitude


class GatedBlock(nn.Module):
    """Residual gated convolution along frequency: ``h + conv_a(h) * sigmoid(conv_b(h))``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        pad, dil = (0, dilation * (kernel_size // 2)), (1, dilation)
        self.conv_a = nn.Conv2d(channels, channels, (1, kernel_size), padding=pad, dilation=dil)
        self.conv_b = nn.Conv2d(channels, channels, (1, kernel_size), padding=pad, dilation=dil)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, g = self.conv_a(h), self.conv_b(h)
        if torch.is_grad_enabled() and g.requires_grad:
            return torch.addcmul(h, a, torch.sigmoid(g))
        return g.sigmoid_().mul_(a).add_(h)  # inference: in place, no temporaries


class PhaseDiffNet(nn.Module):
    """Causal CNN: log-magnitudes ``(B, F, T)`` -> phase differences.

    ``forward`` returns ``(B, outputs, F, T)`` where ``outputs`` is 2 (BPD, FPD of frame t) or, for
    strided models, 4 (BPD, FPD of frame t-1, then of frame t) for every input frame t. The FPD
    channels are defined on bins 0..F-2 (the last bin is unused).
    """

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        c, k = self.cfg.channels, self.cfg.kernel_size
        self.stem = nn.Conv2d(self.cfg.context, c, (1, k), padding=(0, k // 2))
        self.blocks = nn.Sequential(*[GatedBlock(c, k, d) for d in self.cfg.dilations])
        self.head = nn.Conv2d(c, self.n_outputs, 1)

    @property
    def n_outputs(self) -> int:
        return 4 if self.cfg.strided else 2

    def features(self, logmag: torch.Tensor, start: int = 0, step: int = 1) -> torch.Tensor:
        """Context stack ``(B, context, T', F)`` from ``(B, F, T)`` for the frames
        ``t = start, start + step, ...``: channel c holds frame t-c (frames before the start are
        the floor of frame t), centred on frame t's mean.

        The result is in channels-last memory layout, the one the convolutions run fastest in.
        """
        lm = logmag.transpose(-1, -2)  # (B, T, F)
        n_b, n_t, n_f = lm.shape
        n_out = len(range(start, n_t, step))
        cur = lm[:, start::step]
        centre = cur.mean(dim=-1, keepdim=True)
        out = lm.new_empty(n_b, n_out, n_f, self.cfg.context)  # channels-last storage
        for c in range(self.cfg.context):
            first = min(n_out, max(0, -(-(c - start) // step)))  # frames t < c: floor of frame t
            if first < n_out:
                src = lm[:, start + first * step - c::step][:, :n_out - first]
                torch.sub(src, centre[:, first:], out=out[:, first:, :, c])
            if first:
                out[:, :first, :, c] = cur[:, :first].amin(-1, keepdim=True) - centre[:, :first]
        return out.permute(0, 3, 1, 2)

    def forward_features(self, feats: torch.Tensor, tile_rows: int | None = None) -> torch.Tensor:
        """``(B, context, T, F)`` features -> ``(B, outputs, T, F)``.

        With ``tile_rows``, the network runs over tiles of about that many frames (all items
        together): every frame is independent once its features exist, so the result is the same,
        while a tile's intermediate activations stay in the CPU's cache.
        """
        n_b, _, n_t, n_f = feats.shape
        step = n_t if tile_rows is None else max(1, tile_rows // max(1, n_b))
        if step >= n_t:
            return self._forward(feats)
        out = feats.new_empty(n_b, n_t, n_f, self.n_outputs).permute(0, 3, 1, 2)
        for s in range(0, n_t, step):
            out[:, :, s:s + step] = self._forward(feats[:, :, s:s + step])
        return out

    def _forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(feats.contiguous(memory_format=torch.channels_last)))
        if torch.is_grad_enabled():
            return self.head(h)
        # inference: the 1x1 head as one matrix product over the channels-last rows, (outputs,
        # C) @ (C, rows): 3-4x faster than the convolution's generic path for 2-4 outputs
        n_b, c, n_t, n_f = h.shape
        w, b = self.head.weight.view(-1, c), self.head.bias
        rows = h.permute(0, 2, 3, 1).reshape(-1, c)
        out = torch.addmm(b.unsqueeze(-1), w, rows.t())
        return out.view(-1, n_b, n_t, n_f).transpose(0, 1)

    def forward(self, logmag: torch.Tensor) -> torch.Tensor:
        """``(B, F, T)`` log-magnitudes -> ``(B, outputs, F, T)``."""
        return self.forward_features(self.features(logmag)).transpose(-1, -2)

    def multiply_adds_per_frame(self, n_bins: int) -> int:
        """Multiply-accumulates of one forward pass over one frame of ``n_bins`` bins."""
        total = 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                total += m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        return total * n_bins


# Frames per CNN pass on CPU: 64 frames x 513 bins x 16 channels of float32 (2 MB) keep a pass's
# activations in cache; on one thread 64 was the fastest of 16..8192 (ppsi bench invert).
CPU_TILE_ROWS = 64


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class NetworkStream:
    """Phase differences chunk by chunk: ``push(mag (B, F, n))`` returns ``(mag, bpd, fpd)`` of
    the frames made ready, ``flush()`` those still waiting.

    Holds the log-magnitudes of the past ``context - 1`` frames, so any chunking gives the result
    of one call on the whole input (to rounding: a pass's rounding depends on its frame count).
    Online models make every frame ready at once; strided
    models make frames ready in pairs (frames t-1 and t from the pass at t; an odd last frame waits
    for its look-ahead, which :meth:`flush` makes the :func:`~ppsi_cli.dsp.features.floor_frame`
    of it). Causality: frame t uses frames <= t (+1 for strided models). With ``bins``, the CNN
    runs on the lowest ``bins`` bins only (its features centred as for the whole frame), and the
    phase differences it returns cover that band: (B, bins, n) and (B, bins - 1, n).
    """

    def __init__(self, net: PhaseDiffNet, bins: int | None = None):
        self.net = net
        self.bins = bins  # the CNN runs on bins [0, bins) only (None: all); outputs have that many
        self.dtype = next(net.parameters()).dtype
        self._past: torch.Tensor | None = None  # log-magnitudes (B, F, <= context - 1)
        self._pending: torch.Tensor | None = None  # strided: frame (B, F, 1) awaiting look-ahead
        self._held: torch.Tensor | None = None  # delayed: the last frames, awaiting theirs
        self._seen = 0  # delayed: outputs made so far (the first d predict no frame)

    @torch.no_grad()
    def push(self, mag: torch.Tensor, last: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames made ready by ``mag`` (B, F, n); ``last``: the input ends here, so frames that
        wait for their look-ahead get it in this same pass (as :meth:`flush` would give it)."""
        if self.net.cfg.delay:
            return self._push_delayed(mag, last)
        return self._push_now(mag, last)

    def _push_now(self, mag: torch.Tensor, last: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`push` without the delay: output j is that of the pass(es) up to frame j."""
        net = self.net
        if self._pending is not None:
            mag, self._pending = torch.cat([self._pending, mag], dim=-1), None
        if net.cfg.strided and mag.shape[-1] % 2:
            if last:
                look = floor_frame(mag[..., -1]).unsqueeze(-1)
                m, b, f = self._push_now(torch.cat([mag, look], dim=-1), False)
                return m[..., :-1], b[..., :-1], f[..., :-1]
            mag, self._pending = mag[..., :-1], mag[..., -1:]
        n_b, n_f, n_t = mag.shape
        if n_t == 0:
            return mag, *self._empty(mag, n_b, n_f)
        out = self._passes(mag, step=2 if net.cfg.strided else 1)
        if not net.cfg.strided:
            return mag, out[:, 0], out[:, 1, :-1]
        # one pass at every second frame t = 1, 3, ... sees frames <= t, fills frames t-1 and t
        b = torch.stack([out[:, 0], out[:, 2]], dim=-1).flatten(-2)
        f = torch.stack([out[:, 1], out[:, 3]], dim=-1).flatten(-2)[:, :-1]
        return mag, b, f

    def _empty(self, mag: torch.Tensor, n_b: int, n_f: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = n_f if self.bins is None else self.bins
        return mag.new_empty(n_b, k, 0), mag.new_empty(n_b, k - 1, 0)

    def _passes(self, mag: torch.Tensor, step: int = 1) -> torch.Tensor:
        """Network outputs ``(B, outputs, F, n / step)`` of the passes over the new frames ``mag``
        (every ``step``-th, the last of each group newest), with the past frames as context."""
        net = self.net
        logmag = log_magnitude(mag.to(self.dtype))
        h = 0
        if self._past is not None:
            h = self._past.shape[-1]
            logmag = torch.cat([self._past, logmag], dim=-1)
        keep = net.cfg.context - 1
        self._past = logmag[..., max(0, logmag.shape[-1] - keep):] if keep else logmag[..., :0]
        tile = CPU_TILE_ROWS if mag.device.type == "cpu" else None
        feats = net.features(logmag, start=h + step - 1, step=step)
        if self.bins is not None:  # centred on the whole frame's mean, then cut to the band
            feats = feats[..., :self.bins]
        return net.forward_features(feats, tile).transpose(-1, -2)

    @torch.no_grad()
    def _push_delayed(self, mag: torch.Tensor, last: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pass at frame s predicts frame s - d (strided: s - 1 - d and s - d): the frames not
        yet predicted are held until d more arrive (or, at the end, d silent frames,
        :func:`floor_frame` of the last one)."""
        d, n_b, n_f = self.net.cfg.delay, mag.shape[0], mag.shape[1]
        held = self._held if self._held is not None else mag[..., :0]
        joined = torch.cat([held, mag], dim=-1)
        if last and joined.shape[-1]:
            look = floor_frame(joined[..., -1]).unsqueeze(-1).expand(n_b, n_f, d)
            mag = torch.cat([mag, look.to(mag.dtype)], dim=-1)
        if mag.shape[-1] == 0:
            return mag, *self._empty(mag, n_b, n_f)
        _, b, f = self._push_now(mag, last)
        drop = max(0, d - self._seen)  # outputs before frame d predict no frame
        self._seen += b.shape[-1]
        b, f = b[..., drop:], f[..., drop:]
        ready = joined[..., :b.shape[-1]]
        self._held = None if last else joined[..., b.shape[-1]:]
        if last:
            self._seen, self._past = 0, None
        return ready, b, f

    def flush(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The frames still waiting for their look-ahead (strided, odd count; delayed, the last
        d), else None."""
        if self.net.cfg.delay:
            held = self._held
            if held is None or held.shape[-1] == 0:
                return None
            return self._push_delayed(held[..., :0], last=True)
        pending, self._pending = self._pending, None
        return None if pending is None else self.push(pending, last=True)


def predict(model: PhaseDiffNet, mag: torch.Tensor, bins: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase differences for magnitudes ``(..., F, T)``: ``(bpd (..., F, T), fpd (..., F-1, T))``,
    from one :class:`NetworkStream` push of the whole input (with ``bins``: of the lowest
    ``bins`` bins, the network run on them only)."""
    lead, (n_f, n_t) = mag.shape[:-2], mag.shape[-2:]
    _, b, f = NetworkStream(model, bins).push(mag.reshape(-1, n_f, n_t), last=True)
    return b.reshape(*lead, b.shape[-2], n_t), f.reshape(*lead, f.shape[-2], n_t)
