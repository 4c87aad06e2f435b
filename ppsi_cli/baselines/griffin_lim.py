"""Griffin-Lim and fast Griffin-Lim (Griffin & Lim 1984; Perraudin, Balazs & Søndergaard 2013).

Offline, batched over leading dimensions, pure torch (runs wherever ``mag`` lives). The two
projections are the magnitude constraint ``A exp(j angle(c))`` and the consistency projection
``stft(istft(c))`` of :mod:`ppsi_cli.dsp.stft` (an exact inverse pair, so the latter is the
orthogonal projection onto STFTs of signals that are zero in the padding).

Fast Griffin-Lim, with ``t_n = P_A(P_C(c_{n-1}))`` and ``c_n = t_n + momentum (t_n - t_{n-1})``;
``momentum = 0`` is plain Griffin-Lim. Warm start: ``c_0 = t_0 = A exp(j init_phase)``, i.e. the
"previous" state of the momentum is the magnitude projection of the initial estimate (not zeros),
and the initial phase is applied once. A consistent initial estimate (the true phase) is therefore
a fixed point: the output keeps oracle quality.
"""

from __future__ import annotations

import math

import torch

from ..config import StftConfig
from ..dsp.stft import default_length, istft, n_frames, stft_frames


def _with_phase(mag: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``mag * exp(j angle(c))`` (angle 0 where ``c`` is 0), as ``sgn(c) * mag``: no angle and
    polar (atan2, cos, sin), a fraction of the time."""
    out = torch.sgn(c).mul_(mag)
    silent = c == 0
    return torch.where(silent, mag.to(c.dtype), out) if silent.any() else out


def griffin_lim_stft(mag: torch.Tensor, cfg: StftConfig, n_iter: int = 32,
                     momentum: float = 0.99, init_phase: torch.Tensor | None = None,
                     length: int | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast Griffin-Lim on magnitudes (..., F, T); returns the complex STFT (..., F, T).

    ``init_phase`` (..., F, T) in radians (or a complex STFT whose phase is used; a bin where it
    is exactly 0 starts at 0) warm-starts the iteration; without it the phase is uniform in
    [-pi, pi) from ``generator`` (seed it for reproducible output). ``length`` (samples), when
    it has the same number of frames, makes the consistency projection also zero the samples
    after the signal. ``n_iter = 0`` returns the initial estimate.
    """
    assert mag.is_floating_point() and n_iter >= 0 and 0 <= momentum <= 1, (n_iter, momentum)
    n_t = mag.shape[-1]
    if init_phase is None:
        phase = torch.rand(mag.shape, generator=generator, dtype=mag.dtype, device=mag.device)
        phase = (2 * phase - 1) * math.pi
    else:
        if init_phase.shape[-2:] != mag.shape[-2:]:
            raise ValueError(f"init_phase has shape {tuple(init_phase.shape)}; expected "
                             f"(..., {mag.shape[-2]}, {n_t}) like the magnitude")
        phase = init_phase.to(device=mag.device)
    proj_len = length if length is not None and n_frames(length, cfg) == n_t else \
        default_length(n_t, cfg)
    # The iteration runs in frame-major layout (..., T, F), the one the FFTs read and write, so
    # no iteration copies a transpose; ``.mT`` views give istft its (..., F, T) shape for free.
    mag = mag.mT.contiguous()
    phase = phase.expand(*mag.shape[:-2], *phase.shape[-2:]).mT
    if phase.is_complex():  # its unit phasors, without the angle / polar round trip (3 against
        # 13-19 ms per 20 s, docs/experiments.md); a bin where it is exactly 0 starts at 0, as a
        # projection's 0 does below
        c = torch.sgn(phase.to(torch.complex128 if mag.dtype == torch.float64
                               else torch.complex64).contiguous()).mul_(mag)
    else:
        c = torch.polar(mag, phase.to(mag.dtype))
    t_prev = c
    for _ in range(n_iter):
        # P_A as sgn(.) * mag: a bin whose projection is exactly 0 (a frame of digital silence
        # where the target is not) gets 0 here rather than phase 0 until the next projection
        # moves it; the output below applies the rule. The check cost 10 % of an iteration.
        t = torch.sgn(stft_frames(istft(c.mT, cfg, proj_len), cfg)).mul_(mag)
        # t + momentum (t - t_prev), in one pass
        c = torch.lerp(t_prev, t, 1.0 + momentum) if momentum else t
        t_prev = t
    return _with_phase(mag, c).mT
