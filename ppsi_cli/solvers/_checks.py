"""Shape checks shared by the solvers, and whether the Triton kernel can run."""

from __future__ import annotations

import importlib.util
import os

import torch


def triton_available() -> bool:
    """True when the kernel can run here (CUDA + triton, or triton's CPU interpreter with
    ``TRITON_INTERPRET=1``), found without importing triton (a slow, large import)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()


def check_shapes(lower: torch.Tensor, diag: torch.Tensor, upper: torch.Tensor,
                 rhs: torch.Tensor) -> int:
    """Validate a batch of tridiagonal systems; return K."""
    k = diag.shape[-1]
    if k < 1:
        raise ValueError("tridiagonal systems need at least one unknown")
    if lower.shape[-1] != k - 1 or upper.shape[-1] != k - 1:
        raise ValueError(
            f"off-diagonals must have K-1={k - 1} entries, got lower {tuple(lower.shape)}, "
            f"upper {tuple(upper.shape)}")
    if rhs.shape[-1] != k:
        raise ValueError(f"rhs has {rhs.shape[-1]} entries; the systems have K={k}")
    return k


def broadcast(lower, diag, upper, rhs):
    """Broadcast the leading (batch) dims of all four tensors and a common dtype."""
    batch = torch.broadcast_shapes(lower.shape[:-1], diag.shape[:-1], upper.shape[:-1],
                                   rhs.shape[:-1])
    dtype = diag.dtype
    for t in (lower, upper, rhs):
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t.to(dtype).expand(*batch, t.shape[-1]) for t in (lower, diag, upper, rhs))
