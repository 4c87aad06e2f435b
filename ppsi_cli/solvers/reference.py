"""CPU reference solvers from SciPy/LAPACK: ``solve_banded`` (general) and ``?ptsv`` (Hermitian PD)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import lapack

from ._checks import broadcast, check_shapes


def _to_numpy(*ts: torch.Tensor):
    return [t.detach().resolve_conj().cpu().numpy() for t in ts]


def solve_reference(lower, diag, upper, rhs) -> torch.Tensor:
    """``scipy.linalg.solve_banded`` on each system of the batch."""
    k = check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    batch = diag.shape[:-1]
    n = int(np.prod(batch))  # not -1: K = 1 leaves the off-diagonals empty
    lo, d, up, b = (a.reshape(n, a.shape[-1]) for a in _to_numpy(lower, diag, upper, rhs))
    out = np.empty_like(b)
    ab = np.zeros((3, k), dtype=b.dtype)
    for i in range(b.shape[0]):
        ab[0, 1:] = up[i]
        ab[1] = d[i]
        ab[2, :-1] = lo[i]
        out[i] = scipy.linalg.solve_banded((1, 1), ab, b[i], check_finite=False)
    return torch.from_numpy(out).reshape(*batch, k).to(diag.device)


_PTSV = {np.dtype(np.float64): lapack.dptsv, np.dtype(np.float32): lapack.sptsv,
         np.dtype(np.complex128): lapack.zptsv, np.dtype(np.complex64): lapack.cptsv}


def lapack_ptsv(dtype: np.dtype):
    """SciPy's LAPACK ``?ptsv`` for right-hand sides of ``dtype``."""
    return _PTSV[np.dtype(dtype)]


def ptsv(d: np.ndarray, e: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One Hermitian positive-definite system: real diagonal ``d``, subdiagonal ``e``, rhs ``b``."""
    if d.shape[-1] == 1:  # SciPy's ?ptsv wrapper refuses an empty off-diagonal
        if not d[0] > 0:
            raise np.linalg.LinAlgError("?ptsv failed (info=1): matrix not positive definite")
        return b / d[0]
    fn = _PTSV[b.dtype]
    _, _, x, info = fn(d, e, b)
    if info != 0:
        raise np.linalg.LinAlgError(f"?ptsv failed (info={info}): matrix not positive definite")
    return x


def solve_lapack(lower, diag, upper, rhs) -> torch.Tensor:
    """LAPACK ``?ptsv`` on each system; assumes Hermitian PD (``upper`` is ignored)."""
    k = check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    batch = diag.shape[:-1]
    n = int(np.prod(batch))
    lo, d, b = (a.reshape(n, a.shape[-1]) for a in _to_numpy(lower, diag, rhs))
    d = np.ascontiguousarray(d.real)
    out = np.empty_like(b)
    for i in range(b.shape[0]):
        out[i] = ptsv(d[i], lo[i], b[i])
    return torch.from_numpy(out).reshape(*batch, k).to(diag.device)
