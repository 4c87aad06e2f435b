"""Weighted least-squares phase integration, online frame by frame (Masuyama et al.,
IEEE/ACM TASLP 2023; the online form of Fernandez et al., arXiv 2505.24498).

For frame t, with magnitudes a (normalised by the frame's peak, floored), predicted time and
frequency phase differences TPD/FPD and the previous reconstructed frame, solve for z in C^K

    min  sum_k lam_k |z_k - xhat_k|^2 + sum_{k<K-1} gam_k |z_{k+1} - u_k z_k|^2
    xhat_k = a_t[k] exp(j(angle(Z_{t-1}[k]) + TPD_t[k])),  u_k = a_t[k+1]/a_t[k] exp(j FPD_t[k])
    lam_k = (a_t[k] a_{t-1}[k])^p,  gam_k = g (a_t[k] a_t[k+1])^p

whose normal equations (Lam + D^H Gam D) z = Lam xhat are Hermitian, tridiagonal and positive
definite. The frame's phase is angle(z). The matrix depends only on magnitudes and FPD, so all
frames' matrices are built at once; only the right-hand side needs the previous frame.
The first frame, and any frame after digital silence, integrates FPD along frequency from 0.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import SolverConfig, StftConfig
from .dsp.phase import bpd_to_tpd
from .dsp.stft import check_spectrogram
from .solvers import SOLVERS, ldl, resolve
from .solvers.reference import lapack_ptsv, ptsv


def polar(r: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``r * exp(j theta)``: cos and sin run vectorised on CPU, several times faster than
    ``torch.polar`` there; without autograd, NumPy's cos and sin (about 3x torch's on one
    thread, within 2 ulp). Every path of the least squares builds its phasors here."""
    if theta.device.type == "cpu" and not (torch.is_grad_enabled() and theta.requires_grad):
        t = theta.detach().numpy()
        cos, sin = torch.from_numpy(np.cos(t)), torch.from_numpy(np.sin(t))
    else:
        cos, sin = torch.cos(theta), torch.sin(theta)
    return torch.complex(r * cos, r * sin)


def frame_systems(mag: torch.Tensor, fpd: torch.Tensor, cfg: SolverConfig):
    """Build the per-frame systems for magnitudes ``(..., K, T)`` and FPD ``(..., K-1, T)``.

    Returns ``(diag, lower, weight, silent, restart)``: ``diag`` (..., T, K) real,
    ``lower`` (..., T, K-1) complex (``A[k+1, k] = -gam_k u_k``; the upper diagonal is its
    conjugate), ``weight`` (..., T, K) complex with ``rhs_t = weight_t * unit phase of frame t-1``,
    and boolean (..., T) masks of silent frames and of frames that restart the recursion.

    The compiled CPU recursion (``solvers.ldl._recursion``) repeats this arithmetic frame by
    frame, operation for operation; ``tests/test_integrate.py`` holds the two equal.
    """
    real = mag.dtype
    cplx = torch.complex128 if real == torch.float64 else torch.complex64
    m = mag.transpose(-1, -2)  # (..., T, K)
    peak = m.amax(-1, keepdim=True)
    silent = peak[..., 0] <= cfg.silence_threshold
    scale = torch.where(peak > cfg.silence_threshold, peak, torch.ones_like(peak))
    a = (m / scale).clamp_min(cfg.mag_floor)
    prev = torch.nn.functional.pad(m[..., :-1, :], (0, 0, 1, 0)) / scale
    ap = prev.clamp_min(cfg.mag_floor)
    prev_silent = torch.nn.functional.pad(silent[..., :-1], (1, 0), value=True)
    restart = prev_silent & ~silent
    p, g = cfg.p, cfg.g
    lam = (a * ap) ** p
    a0, a1 = a[..., :-1], a[..., 1:]
    gam = g * (a0 * a1) ** p
    gam_u2 = gam * (a1 / a0) ** 2  # gam_k |u_k|^2
    diag = lam.clone()
    diag[..., :-1] += gam_u2
    diag[..., 1:] += gam
    if cfg.diag_load > 0:
        diag = diag * (1 + cfg.diag_load)
    f = fpd.transpose(-1, -2).to(real)
    lower = -polar(gam * a1 / a0, f)
    weight = (lam * a).to(cplx)
    return diag, lower, weight, silent, restart


def frequency_integration(fpd: torch.Tensor) -> torch.Tensor:
    """Phase (..., K) from FPD (..., K-1) by cumulative sum from phi[0] = 0."""
    return torch.nn.functional.pad(torch.cumsum(fpd, dim=-1), (1, 0))


class PhaseIntegrator:
    """Online least squares over chunks of frames, the state carried from chunk to chunk.

    ``push(mag (..., K, n), bpd (..., K, n), fpd (..., K-1, n)) -> (..., K, n)`` complex; any
    chunking of the frames gives the same result as one push of them all (``n`` may be 1: frame
    by frame). The caller validates the magnitudes (:func:`~ppsi_cli.dsp.stft.check_spectrogram`).
    """

    def __init__(self, stft: StftConfig, solver: SolverConfig | None = None,
                 device: torch.device | str = "cpu"):
        self.stft = stft
        self.cfg = solver or SolverConfig()
        self.solver_name = resolve(self.cfg.solver, device, hermitian=True)
        self._solve = SOLVERS[self.solver_name]
        self._prev_mag: torch.Tensor | None = None  # last frame pushed (..., K)
        self._unit: torch.Tensor | None = None  # its unit phasors (..., K)

    def push(self, mag: torch.Tensor, bpd: torch.Tensor, fpd: torch.Tensor) -> torch.Tensor:
        k, n = mag.shape[-2:]
        assert bpd.shape[-2:] == (k, n) and fpd.shape[-2:] == (k - 1, n), (bpd.shape, fpd.shape)
        fpd = fpd.to(mag.dtype)
        tpd = bpd_to_tpd(bpd.to(mag.dtype), self.stft)
        if self.solver_name == "ldl":  # CPU with numba: systems and recursion in one call
            out = self._recursion_compiled(mag, fpd, tpd)
            self._prev_mag = mag[..., -1]
            return out
        if self._prev_mag is None:
            mags, fpds = mag, fpd
        else:  # the previous frame enters the weights lam and the silence test
            mags = torch.cat([self._prev_mag.unsqueeze(-1), mag], dim=-1)
            fpds = torch.nn.functional.pad(fpd, (1, 0))
        diag, lower, weight, silent, restart = frame_systems(mags, fpds, self.cfg)
        first = mags.shape[-1] - n
        diag, lower, weight = diag[..., first:, :], lower[..., first:, :], weight[..., first:, :]
        silent, restart = silent[..., first:], restart[..., first:]
        wrot = polar(weight.real.contiguous(), tpd.transpose(-1, -2))  # weight is real-valued
        mag_t, fpd_t = mag.transpose(-1, -2), fpd.transpose(-1, -2)
        if self.solver_name == "lapack":  # CPU without numba: LAPACK per frame from NumPy
            out = self._recursion_lapack(mag_t, fpd_t, diag, lower, wrot, silent, restart)
        else:
            out = torch.stack([self._step(mag_t[..., i, :], fpd_t[..., i, :], diag[..., i, :],
                                          lower[..., i, :], wrot[..., i, :], silent[..., i],
                                          restart[..., i]) for i in range(n)], dim=-1)
        self._prev_mag = mag[..., -1]
        return out

    def _recursion_compiled(self, mag, fpd, tpd):
        """Each item's frames in one compiled call (:func:`ppsi_cli.solvers.ldl._recursion`),
        which also builds the frames' systems: the trigonometry runs here, vectorised."""
        lead, (k, n) = mag.shape[:-2], mag.shape[-2:]
        m, f, t = (x.reshape(-1, x.shape[-2], n).transpose(-1, -2).contiguous().numpy()
                   for x in (mag, fpd, tpd))
        real = m.dtype
        cplx = np.complex128 if real == np.float64 else np.complex64
        c = self.cfg
        par = np.array([c.p, c.g, c.mag_floor, c.silence_threshold,
                        1 + c.diag_load if c.diag_load > 0 else 0], dtype=real)
        mode = {1.0: 1, 2.0: 2, 3.0: 3, 0.5: 4}.get(float(c.p), 0)
        has_prev = self._prev_mag is not None
        prev = (self._prev_mag.reshape(-1, k).numpy() if has_prev
                else np.zeros((m.shape[0], k), real))
        has_unit = self._unit is not None
        units = (self._unit.reshape(-1, k).numpy() if has_unit
                 else np.zeros((m.shape[0], k), cplx))
        trig = (np.cos(f), np.sin(f), np.cos(t), np.sin(t))
        compiled = ldl.kernels()[1]

        def item(i):
            z, u, bad = compiled(m[i], f[i], *(a[i] for a in trig), prev[i], has_prev, par,
                                 mode, units[i], has_unit)
            if bad:
                raise ldl.not_positive_definite(f"frame {bad - 1}")
            return z, u

        return self._stacked([item(i) for i in range(m.shape[0])], lead)

    def _recursion_lapack(self, mag_t, fpd_t, diag, lower, wrot, silent, restart):
        """Each item's frames in one NumPy loop over LAPACK ``?ptsv``."""
        lead, (n, k) = mag_t.shape[:-2], mag_t.shape[-2:]
        flat = [a.reshape(-1, *a.shape[-2:]).contiguous().numpy() for a in (
            mag_t, fpd_t, diag, lower.resolve_conj(), wrot)]
        masks = [m.reshape(-1, n).numpy() for m in (silent, restart)]
        units = (self._unit.reshape(-1, k).numpy() if self._unit is not None
                 else [None] * flat[0].shape[0])
        return self._stacked([_recursion_numpy(*(a[i] for a in flat), *(m[i] for m in masks),
                                               units[i]) for i in range(flat[0].shape[0])], lead)

    def _stacked(self, items, lead):
        """Each item's (frames (n, K), last unit (K)) -> (..., K, n); the units are kept."""
        outs, last = zip(*items)
        n, k = outs[0].shape
        self._unit = torch.from_numpy(np.stack(last)).reshape(*lead, k)
        out = outs[0][None] if len(outs) == 1 else np.stack(outs)
        return torch.from_numpy(out).reshape(*lead, n, k).transpose(-1, -2)

    def _step(self, mag, fpd, diag, lower, wrot, silent, restart):
        """One frame: solve where the recursion continues, integrate FPD where it restarts.

        ``wrot`` is ``lam * a * exp(j TPD)``: the right-hand side is ``wrot * unit_{t-1}``.
        """
        if self._unit is None:
            unit = polar(torch.ones_like(mag), frequency_integration(fpd))
        else:
            z = self._solve_frame(diag, lower, wrot * self._unit)
            unit = z / z.abs().clamp_min(torch.finfo(mag.dtype).tiny)
            if restart.any():
                fresh = polar(torch.ones_like(mag), frequency_integration(fpd))
                unit = torch.where(restart.unsqueeze(-1), fresh, unit)
        if silent.any():
            unit = torch.where(silent.unsqueeze(-1), torch.zeros_like(unit), unit)
        self._unit = unit
        return mag * unit

    def _solve_frame(self, diag, lower, rhs):
        return self._solve(lower, diag.to(rhs.dtype), lower.conj(), rhs)


def integrate(mag: torch.Tensor, bpd: torch.Tensor, fpd: torch.Tensor, stft: StftConfig,
              solver: SolverConfig | None = None) -> torch.Tensor:
    """Complex STFT (..., K, T) from magnitudes (..., K, T), BPD (..., K, T), FPD (..., K-1, T).

    Runs the online recursion over all frames; the result equals pushing the frames one by one
    through :class:`PhaseIntegrator`. Works in the dtype of ``mag`` (float32 or float64).
    """
    check_spectrogram(mag, stft)
    k, t = mag.shape[-2:]
    if bpd.shape[-2:] != (k, t) or fpd.shape[-2:] != (k - 1, t):
        raise ValueError(f"phase differences must be BPD {(k, t)} and FPD {(k - 1, t)} per "
                         f"item, got {tuple(bpd.shape)} and {tuple(fpd.shape)}")
    for name, d in (("BPD", bpd), ("FPD", fpd)):
        if not torch.isfinite(d).all():
            raise ValueError(f"{name} contains NaN or Inf values")
    return PhaseIntegrator(stft, solver, mag.device).push(mag, bpd, fpd)


def _recursion_numpy(mag, fpd, diag, lower, wrot, silent, restart, unit=None):
    """The frame recursion of :meth:`PhaseIntegrator._step` for one item, (T, K) arrays in
    NumPy with LAPACK ``?ptsv``: the same arithmetic without per-frame torch overhead.
    ``unit``: phasors of the frame before (None at the start). Returns (frames, last unit)."""
    n_t, k = mag.shape
    out = np.empty((n_t, k), dtype=wrot.dtype)
    tiny = np.finfo(mag.dtype).tiny
    solve = lapack_ptsv(wrot.dtype) if k > 1 else None
    for t in range(n_t):
        if unit is None or restart[t]:
            phase = np.concatenate([np.zeros(1, fpd.dtype), np.cumsum(fpd[t])])
            unit = (np.cos(phase) + 1j * np.sin(phase)).astype(wrot.dtype)
        elif solve is None:
            unit = ptsv(diag[t], lower[t], wrot[t] * unit)
            unit = unit / np.maximum(np.abs(unit), tiny)
        else:
            _, _, z, info = solve(diag[t], lower[t], wrot[t] * unit, overwrite_b=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"?ptsv failed at frame {t} (info={info}): "
                                            "matrix not positive definite")
            unit = z / np.maximum(np.abs(z), tiny)
        if silent[t]:
            unit = np.zeros_like(unit)
        np.multiply(mag[t], unit, out=out[t])
    return out, unit
