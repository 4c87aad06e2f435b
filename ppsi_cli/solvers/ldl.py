"""LDL^H solve of Hermitian positive-definite tridiagonal systems, compiled by numba.

The arithmetic of LAPACK ``?pttrf`` / ``?pttrs`` (A = L D L^H, L unit lower bidiagonal; Golub &
Van Loan, Matrix Computations, 4.3.6), with the factorisation fused into the forward
substitution and each pivot inverted once. Two compiled entry points use it:

- :func:`solve_ldl`, the registry's ``ldl`` solver (a batch of systems);
- ``_recursion``, the CPU frame recursion of :class:`~ppsi_cli.integrate.PhaseIntegrator`:
  a whole item's frames in one call, each frame's system built in the loop with the arithmetic
  of ``integrate.frame_systems`` (the same float32 results), then solved. LAPACK from NumPy
  (``integrate._recursion_numpy``) took 18 µs per 513-bin frame, this solve 8; building the
  systems here instead of in torch took the least squares from 0.0013 to 0.0010 s per audio s
  and a one-frame push from about 450 to 190 µs (docs/experiments.md, 2026-12-02).

numba is optional (``pip install "ppsi[fast]"``); without it :func:`kernels` is None and the
``auto`` solver on CPU stays ``lapack``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._checks import broadcast, check_shapes


def numba_available() -> bool:
    """Whether numba imports here (imported on the first call; an install that fails to import,
    e.g. with a NumPy newer than it supports, counts as absent)."""
    return kernels() is not None


def _solve_in_place(d, lower, b, inv, er, ei):  # pragma: no cover (compiled by numba)
    """``b <- A^{-1} b`` for one system: real diagonal ``d`` (K), complex subdiagonal ``lower``
    (K-1; the superdiagonal is its conjugate), complex ``b`` (K). ``inv``, ``er``, ``ei`` (K,
    real) are work arrays. Returns 0, or i >= 1 when the i-th pivot is not positive (``?pttrf``'s
    info: A is not positive definite)."""
    k = d.shape[0]
    piv = d[0]
    pr = b[0].real
    pi = b[0].imag
    for i in range(k - 1):  # L = unit lower bidiagonal with l_i = lower_i / d_i, then L y = b
        if not piv > 0:
            return i + 1
        iv = 1 / piv
        inv[i] = iv
        lr = lower[i].real
        li = lower[i].imag
        f = lr * iv
        g = li * iv
        er[i] = f
        ei[i] = g
        piv = d[i + 1] - f * lr - g * li
        qr = b[i + 1].real - (pr * f - pi * g)
        qi = b[i + 1].imag - (pr * g + pi * f)
        pr = qr
        pi = qi
        b[i + 1] = complex(pr, pi)
    if not piv > 0:
        return k
    iv = 1 / piv
    xr = pr * iv
    xi = pi * iv
    b[k - 1] = complex(xr, xi)
    for i in range(k - 2, -1, -1):  # D L^H x = y
        yr = b[i].real * inv[i] - (xr * er[i] + xi * ei[i])
        yi = b[i].imag * inv[i] - (xi * er[i] - xr * ei[i])
        xr = yr
        xi = yi
        b[i] = complex(xr, xi)
    return 0


def _solve_batch(d, lower, b):  # pragma: no cover (compiled by numba)
    """:func:`_solve_in_place` over systems (n, K) -> (solutions, 0 or 1 + the first failing
    system's index)."""
    n, k = b.shape
    out = b.copy()
    inv = np.empty(k, d.dtype)
    er = np.empty(k, d.dtype)
    ei = np.empty(k, d.dtype)
    for s in range(n):
        if _solve_in_place(d[s], lower[s], out[s], inv, er, ei):
            return out, s + 1
    return out, 0


def _power(x, p, mode):  # pragma: no cover (compiled by numba)
    """``x ** p`` as torch computes it in float32 (exponents 1, 2, 3, 0.5 exactly; ``mode``
    says which, 0 for any other)."""
    if mode == 1:
        return x
    if mode == 2:
        return x * x
    if mode == 3:
        return x * x * x
    if mode == 4:
        return np.sqrt(x)
    return x ** p


def _recursion(mag, fpd, cos_f, sin_f, cos_t, sin_t, prev, has_prev, par, mode, unit,
               has_unit):  # pragma: no cover (compiled by numba)
    """The frame recursion of :class:`~ppsi_cli.integrate.PhaseIntegrator` for one item, with
    each frame's system built here: the arithmetic of ``integrate.frame_systems`` (same
    operations, same order: the same float32 results), then the LDL^H solve, in one pass
    over the frame's bins.

    (T, K) arrays ``mag`` and ``cos_t``/``sin_t`` (of the TPD), (T, K-1) ``fpd`` and
    ``cos_f``/``sin_f``; ``prev``: the frame before (used where ``has_prev``); ``par`` =
    (p, g, mag_floor, silence_threshold, 1 + diag_load or 0) in the dtype of ``mag``;
    ``mode``: :func:`_power`'s. ``unit``: phasors of the frame before (used where
    ``has_unit``). Returns (frames, last unit, 0 or 1 + the frame whose system is not positive
    definite)."""
    n_t, k = mag.shape
    p, g, floor, thr, load = par[0], par[1], par[2], par[3], par[4]
    one = mag.dtype.type(1)
    out = np.empty((n_t, k), unit.dtype)
    tiny = np.finfo(mag.dtype).tiny
    inv = np.empty(k, mag.dtype)
    er = np.empty(k, mag.dtype)
    ei = np.empty(k, mag.dtype)
    a = np.empty(k, mag.dtype)
    d = np.empty(k, mag.dtype)
    lo = np.empty(max(k - 1, 0), unit.dtype)
    gam = np.empty(max(k - 1, 0), mag.dtype)
    u = unit.copy()
    last = prev.copy()
    prev_silent = True
    if has_prev:
        prev_silent = not last.max() > thr
    for t in range(n_t):
        peak = mag[t].max()
        silent = not peak > thr
        scale = peak if peak > thr else one
        for i in range(k):  # a, and lam (in d) with the frame before
            a[i] = max(mag[t, i] / scale, floor)
            ap = max((last[i] if has_prev or t else mag.dtype.type(0)) / scale, floor)
            d[i] = _power(a[i] * ap, p, mode)
        if not has_unit or (prev_silent and not silent):  # integrate FPD from phase 0
            ph = fpd[t, 0] * 0 if k > 1 else mag[t, 0] * 0
            u[0] = 1
            for i in range(k - 1):
                ph = ph + fpd[t, i]
                u[i + 1] = complex(np.cos(ph), np.sin(ph))
            has_unit = True
        else:
            for i in range(k):  # the right-hand side lam a exp(j TPD) u_{t-1}
                w = d[i] * a[i]
                u[i] = complex(w * cos_t[t, i], w * sin_t[t, i]) * u[i]
            for i in range(k - 1):  # frequency terms gam_k: diagonal and subdiagonal
                gam[i] = g * _power(a[i] * a[i + 1], p, mode)
                r = a[i + 1] / a[i]
                d[i] = d[i] + gam[i] * (r * r)
                r = gam[i] * a[i + 1] / a[i]
                lo[i] = complex(-(r * cos_f[t, i]), -(r * sin_f[t, i]))
            for i in range(1, k):
                d[i] = d[i] + gam[i - 1]
            if load > 0:
                for i in range(k):
                    d[i] = d[i] * load
            if _solve_in_place(d, lo, u, inv, er, ei):
                return out, u, t + 1
            for i in range(k):
                u[i] = u[i] * (1 / max(abs(u[i]), tiny))
        if silent:
            u[:] = 0
        for i in range(k):
            out[t, i] = mag[t, i] * u[i]
            last[i] = mag[t, i]
        prev_silent = silent
    return out, u, 0


_KERNELS: list = []


def kernels() -> tuple | None:
    """(:func:`_solve_batch`, :func:`_recursion`) compiled by numba (cached on disk), or None
    without numba (:func:`~ppsi_cli.runtime.compile_kernels`)."""
    if not _KERNELS:
        from ..runtime import compile_kernels

        _KERNELS.append(compile_kernels(globals(), ("_solve_in_place", "_power"),
                                        ("_solve_batch", "_recursion")))
    return _KERNELS[0]


def not_positive_definite(where: str) -> np.linalg.LinAlgError:
    """The error of a failed solve, as LAPACK's path raises it (``where``: system or frame)."""
    return np.linalg.LinAlgError(f"LDL^H solve failed at {where}: matrix not positive definite")


def solve_ldl(lower, diag, upper, rhs) -> torch.Tensor:
    """Compiled LDL^H solve of each system; assumes Hermitian PD (``upper`` is ignored, the
    diagonal's real part is used). Needs numba."""
    compiled = kernels()
    if compiled is None:
        raise RuntimeError('solver ldl needs numba: pip install "ppsi[fast]"')
    k = check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    batch, dtype = diag.shape[:-1], rhs.dtype
    n = batch.numel()
    cplx = torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64
    d = diag.detach().real.reshape(n, k).cpu().contiguous().numpy()
    lo = lower.detach().to(cplx).resolve_conj().reshape(n, k - 1).cpu().contiguous().numpy()
    b = rhs.detach().to(cplx).resolve_conj().reshape(n, k).cpu().contiguous().numpy()
    out, bad = compiled[0](d, lo, b)
    if bad:
        raise not_positive_definite(f"system {bad - 1}")
    x = torch.from_numpy(out)
    return (x if dtype.is_complex else x.real).to(dtype).reshape(*batch, k).to(diag.device)
