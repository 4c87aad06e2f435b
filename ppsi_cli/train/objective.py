"""Training targets and the von Mises loss (Fernandez et al., arXiv 2505.24498).

Targets are the true BPD (rad per hop, baseband) and FPD (rad per bin) of the clean STFT. The
loss is the weighted mean ``-sum w cos(pred - target) / sum w`` over valid bins, so a perfect
prediction scores exactly -1. BPD is undefined at frame 0 and after digital silence, FPD has K-1
bins, frames of digital silence carry no phase. Weights: ``none`` (every valid bin counts the
same, as in the paper) or ``magnitude`` (each bin weighs by the geometric mean of the two
magnitudes its difference joins, relative to the frame peak: the bins that carry the sound count,
the noise floor's random phase hardly does) or ``power`` (the product of the two magnitudes, the
same weighting as the least squares with p = 1).
"""

from __future__ import annotations

import torch

from ..config import LOSS_WEIGHTS, MelConfig, SolverConfig, StftConfig
from ..dsp.features import log_magnitude
from ..dsp.mel import mel_spectrogram, mel_to_magnitude
from ..dsp.phase import bpd, bpd_to_tpd, fpd
from ..dsp.stft import stft
from ..integrate import frame_systems, polar
from ..solvers.thomas import solve_thomas

SILENCE = 1e-10


def network_magnitude(spec: torch.Tensor, cfg: StftConfig,
                      mel: MelConfig | None = None) -> torch.Tensor:
    """The magnitudes the network and the least squares see at inference: ``|spec|``, or for a
    mel network the NNLS magnitudes of the mel of ``|spec|`` (:mod:`ppsi_cli.dsp.mel`)."""
    mag = spec.abs()
    if mel is None:
        return mag
    return mel_to_magnitude(mel_spectrogram(mag, mel, cfg), mel, cfg)


def phase_targets(audio: torch.Tensor, cfg: StftConfig, weighting: str = "none",
                  mel: MelConfig | None = None):
    """From audio (B, L): ``(logmag (B, K, T), bpd (B, K, T), fpd (B, K-1, T), w_bpd, w_fpd)``
    with loss weights of the same shapes as the targets (0 where a target is undefined). The
    input ``logmag`` is of :func:`network_magnitude` (for a mel network, of the NNLS
    magnitudes); targets and weights are of the true STFT."""
    if weighting not in LOSS_WEIGHTS:
        raise ValueError(f"loss weighting must be one of {LOSS_WEIGHTS}, got {weighting!r}")
    spec = stft(audio, cfg)
    mag = spec.abs()
    peak = mag.amax(dim=-2, keepdim=True)
    ok = peak > SILENCE * mag.amax(dim=(-2, -1), keepdim=True).clamp_min(SILENCE)  # (B, 1, T)
    prev_ok = torch.nn.functional.pad(ok[..., :-1], (1, 0), value=False)
    if weighting in ("magnitude", "power"):
        a = mag / peak.clamp_min(SILENCE)
        a_prev = torch.nn.functional.pad(mag[..., :-1], (1, 0)) / peak.clamp_min(SILENCE)
        w_b, w_f = a * a_prev, a[..., 1:, :] * a[..., :-1, :]
        if weighting == "magnitude":
            w_b, w_f = w_b.sqrt(), w_f.sqrt()
        w_b, w_f = w_b * (ok & prev_ok), w_f * ok
    else:
        w_b = (ok & prev_ok).to(mag.dtype).expand_as(mag)
        w_f = ok.to(mag.dtype).expand(-1, mag.shape[-2] - 1, -1)
    return (log_magnitude(network_magnitude(spec, cfg, mel)), bpd(spec, cfg), fpd(spec), w_b,
            w_f)


def von_mises_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``-sum(w cos(pred - target)) / sum(w)``; ``weight`` broadcasts to ``pred``."""
    weight = weight.to(pred.dtype).expand_as(pred)
    return -(torch.cos(pred - target) * weight).sum() / weight.sum().clamp_min(1e-12)


def _over_halves(out: torch.Tensor, strided: bool, loss, delay: int = 0) -> torch.Tensor:
    """``loss(bpd_out, fpd_out, frames)`` of network output ``out`` (B, 2 or 4, K, T), where
    ``frames`` slices the target columns the outputs predict.

    Default models predict frame t at column t; delayed ones (``delay`` d) frame t - d, so
    columns d.. are scored against frames ..T-d. Strided models also predict frame t-1-d at
    column t (channels 0, 1; channels 2, 3 are frame t-d); both halves count equally.
    """
    n_t = out.shape[-1]
    if not strided:
        return loss(out[:, 0, :, delay:], out[:, 1, :-1, delay:], slice(0, n_t - delay))
    cur = loss(out[:, 2, :, delay:], out[:, 3, :-1, delay:], slice(0, n_t - delay))
    prev = loss(out[:, 0, :, 1 + delay:], out[:, 1, :-1, 1 + delay:], slice(0, n_t - 1 - delay))
    return 0.5 * (cur + prev)


def model_loss(out: torch.Tensor, b: torch.Tensor, f: torch.Tensor, w_b: torch.Tensor,
               w_f: torch.Tensor, strided: bool, fpd_weight: float = 0.5,
               delay: int = 0) -> torch.Tensor:
    """Von Mises loss ``(1 - fpd_weight) * L_BPD + fpd_weight * L_FPD`` of network output
    ``out`` (B, 2 or 4, K, T) against targets and their weights (strided: both halves)."""
    def pair(bo, fo, t):
        return ((1 - fpd_weight) * von_mises_loss(bo, b[..., t], w_b[..., t])
                + fpd_weight * von_mises_loss(fo, f[..., t], w_f[..., t]))

    return _over_halves(out, strided, pair, delay)


def least_squares_loss(b_pred: torch.Tensor, f_pred: torch.Tensor, spec: torch.Tensor,
                       stft_cfg: StftConfig, solver: SolverConfig,
                       mag: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher-forced least-squares phase loss: what the predictions are for.

    For every frame t >= 1, the least-squares system of
    :mod:`ppsi_cli.integrate` is built from the predicted BPD ``b_pred``
    (B, K, T) and FPD ``f_pred`` (B, K-1, T) with the TRUE previous frame of ``spec`` (B, K, T)
    as the anchor, and solved for all frames at once by the differentiable Thomas algorithm. The
    loss is ``-sum w cos(angle z - phi_t) / sum w`` with w the frame-relative magnitude: -1 when
    the least squares returns the true phase. Frame 0 and frames next to digital silence do not
    count. ``mag`` (default ``|spec|``) weighs the system, as at inference (NNLS magnitudes for
    a mel network).
    """
    mag = spec.abs() if mag is None else mag
    diag, lower, weight, silent, _ = frame_systems(mag, f_pred, solver)  # (B, T, K)
    true_unit = (spec / mag.clamp_min(SILENCE)).transpose(-1, -2)  # (B, T, K)
    prev_unit = torch.nn.functional.pad(true_unit[..., :-1, :], (0, 0, 1, 0))
    tpd = bpd_to_tpd(b_pred, stft_cfg).transpose(-1, -2)
    rhs = polar(weight.real, tpd) * prev_unit
    z = solve_thomas(lower, diag.to(rhs.dtype), lower.conj(), rhs)
    cos = (z * true_unit.conj()).real / z.abs().clamp_min(1e-20)
    prev_silent = torch.nn.functional.pad(silent[..., :-1], (1, 0), value=True)
    valid = ~(silent | prev_silent)  # (B, T): frame 0 never counts
    a = mag.transpose(-1, -2) / mag.amax(dim=-2).unsqueeze(-1).clamp_min(SILENCE)
    w = a * valid.unsqueeze(-1)
    return -(cos * w).sum() / w.sum().clamp_min(1e-12)


def model_least_squares_loss(out: torch.Tensor, spec: torch.Tensor, stft_cfg: StftConfig,
                             solver: SolverConfig, strided: bool,
                             mag: torch.Tensor | None = None, delay: int = 0) -> torch.Tensor:
    """:func:`least_squares_loss` of network output ``out`` (B, 2 or 4, K, T) (strided: both
    halves)."""
    mag = spec.abs() if mag is None else mag
    return _over_halves(out, strided, lambda bo, fo, t: least_squares_loss(
        bo, fo, spec[..., t], stft_cfg, solver, mag[..., t]), delay)
