"""Batched tridiagonal solvers behind one interface.

Every solver takes the three diagonals and the right-hand sides of a batch of systems,
``lower (..., K-1)``, ``diag (..., K)``, ``upper (..., K-1)``, ``rhs (..., K)`` as torch tensors
(real or complex, any leading batch dims), and returns the solutions ``(..., K)`` on the input's
device and dtype. ``lower[..., i] = A[i+1, i]``, ``upper[..., i] = A[i, i+1]``.

- ``reference``: SciPy ``solve_banded`` one system at a time (the ground truth).
- ``lapack``: LAPACK ``?ptsv`` (Hermitian positive-definite only; ``upper`` is taken as
  ``conj(lower)``): the fastest per-frame path on CPU.
- ``ldl``: the same factorisation compiled by numba (:mod:`ppsi_cli.solvers.ldl`; Hermitian
  positive-definite only): the CPU default for the phase least squares when numba is installed.
- ``thomas``: Thomas algorithm in pure torch, batched, CPU/CUDA, real/complex, differentiable.
- ``triton``: custom GPU kernel, one launch for the whole batch (needs CUDA and triton).
- ``dense``: ``torch.linalg.solve`` on the full matrices; the slow baseline for benchmarks.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._checks import triton_available
from .dense import solve_dense
from .ldl import numba_available, solve_ldl
from .reference import solve_lapack, solve_reference
from .thomas import solve_thomas

def solve_triton(lower, diag, upper, rhs, block: int = 128) -> torch.Tensor:
    """The Triton kernel (:mod:`ppsi_cli.solvers.kernel`), imported on first use."""
    from .kernel import solve_triton as kernel

    return kernel(lower, diag, upper, rhs, block)


Solver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

SOLVERS: dict[str, Solver] = {
    "reference": solve_reference,
    "lapack": solve_lapack,
    "ldl": solve_ldl,
    "thomas": solve_thomas,
    "triton": solve_triton,
    "dense": solve_dense,
}


def resolve(name: str, device: torch.device | str = "cpu", hermitian: bool = False) -> str:
    """Pick a concrete solver name for ``auto`` on ``device``; validate other names."""
    device = torch.device(device)
    if name == "auto":
        if device.type == "cuda":
            return "triton" if triton_available() else "thomas"
        if not hermitian:
            return "reference"
        return "ldl" if numba_available() else "lapack"
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {['auto', *SOLVERS]}")
    if name == "ldl" and not numba_available():
        raise ValueError('solver \'ldl\' needs numba: pip install "ppsi[fast]"')
    if name == "triton" and not (device.type == "cuda" and triton_available()):
        raise ValueError("solver 'triton' needs a CUDA device and the triton package")
    return name


__all__ = ["SOLVERS", "resolve", "solve_dense", "solve_lapack", "solve_ldl",
           "solve_reference", "solve_thomas", "solve_triton", "triton_available"]
