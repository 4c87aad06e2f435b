"""Dense baseline: build the full (K, K) matrices and call ``torch.linalg.solve`` (O(K^3))."""

from __future__ import annotations

import torch

from ._checks import broadcast, check_shapes


def solve_dense(lower, diag, upper, rhs) -> torch.Tensor:
    """Solve by materialising each tridiagonal matrix; for benchmarks only."""
    check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    mat = torch.diag_embed(diag) + torch.diag_embed(lower, -1) + torch.diag_embed(upper, 1)
    if mat.device.type != "cpu":
        return torch.linalg.solve(mat, rhs.unsqueeze(-1)).squeeze(-1)
    # On CPU, MKL's batched LU with several threads can fail on large batches ("Parameter 6 was
    # incorrect on entry to ?LASWP", torch 2.13): solve the systems one at a time.
    flat_m, flat_b = mat.reshape(-1, *mat.shape[-2:]), rhs.reshape(-1, rhs.shape[-1], 1)
    out = torch.stack([torch.linalg.solve(m, b) for m, b in zip(flat_m, flat_b)])
    return out.reshape(rhs.shape)
