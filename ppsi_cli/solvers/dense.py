"""Dense baseline: build the full (K, K) matrices and call ``torch.linalg.solve`` (O(K^3))."""

from __future__ import annotations

import torch

from ._checks import broadcast, check_shapes


def solve_dense(lower, diag, upper, rhs) -> torch.Tensor:
    """Solve by materialising each tridiagonal matrix; for benchmarks only."""
    check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    mat = torch.diag_embed(diag) + torch.diag_embed(lower, -1) + torch.diag_embed(upper, 1)
    return torch.linalg.solve(mat, rhs.unsqueeze(-1)).squeeze(-1)
