"""Thomas algorithm (LU without pivoting) in pure torch: batched, CPU/CUDA, real/complex, autograd.

Stable without pivoting for diagonally dominant and Hermitian positive-definite tridiagonal
matrices, which is what the phase least squares produces. O(K) sequential steps, each a vector
operation over the whole batch, so it pays off for large batches (many frames or files at once).
"""

from __future__ import annotations

import torch

from ._checks import broadcast, check_shapes


def solve_thomas(lower, diag, upper, rhs) -> torch.Tensor:
    """Solve ``(..., K)`` tridiagonal systems by forward elimination and back substitution."""
    k = check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    # Move K to the front so each step indexes a contiguous (batch,) slice.
    a, b, c, d = (t.movedim(-1, 0) for t in (lower, diag, upper, rhs))
    cp, dp = [None] * k, [None] * k
    m = b[0]
    dp[0] = d[0] / m
    if k > 1:
        cp[0] = c[0] / m
    for i in range(1, k):
        m = b[i] - a[i - 1] * cp[i - 1]
        if i < k - 1:
            cp[i] = c[i] / m
        dp[i] = (d[i] - a[i - 1] * dp[i - 1]) / m
    x = [None] * k
    x[k - 1] = dp[k - 1]
    for i in range(k - 2, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]
    return torch.stack(x, dim=-1)
