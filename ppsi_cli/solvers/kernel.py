"""Custom Triton kernel: the Thomas algorithm for a whole batch of tridiagonal systems, one launch.

Each lane of a program owns one system and sweeps its K unknowns sequentially (forward
elimination, then back substitution) with the carried values in registers; the diagonals are laid
out ``(K, B)`` so that the lanes of a warp read consecutive addresses at every step. Complex
systems are split into real and imaginary planes (Triton has no complex type).

The module imports without CUDA or triton; ``solve_triton`` then raises a clear error. With
``TRITON_INTERPRET=1`` set before import, the same kernel runs on CPU tensors through Triton's
interpreter, which is how the tests check it on machines without a GPU.
"""

from __future__ import annotations


import torch

from ._checks import broadcast, check_shapes, triton_available

try:  # triton ships with CUDA builds of torch; absent on CPU-only installs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None



if triton is not None:

    @triton.jit
    def _cdiv(ar, ai, br, bi, IS_COMPLEX: tl.constexpr):
        if IS_COMPLEX:
            den = br * br + bi * bi
            return (ar * br + ai * bi) / den, (ai * br - ar * bi) / den
        else:
            return ar / br, ai

    @triton.jit
    def _cmul(ar, ai, br, bi, IS_COMPLEX: tl.constexpr):
        if IS_COMPLEX:
            return ar * br - ai * bi, ar * bi + ai * br
        else:
            return ar * br, ai

    @triton.jit
    def _thomas_kernel(lo_r, lo_i, d_r, d_i, up_r, up_i, b_r, b_i, cp_r, cp_i, x_r, x_i,
                       B, K, BLOCK: tl.constexpr, IS_COMPLEX: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < B
        zero = tl.zeros([BLOCK], dtype=x_r.dtype.element_ty)
        # i = 0
        mr = tl.load(d_r + offs, mask=mask, other=1.0)
        mi = zero
        if IS_COMPLEX:
            mi = tl.load(d_i + offs, mask=mask, other=0.0)
        br = tl.load(b_r + offs, mask=mask, other=0.0)
        bi = zero
        if IS_COMPLEX:
            bi = tl.load(b_i + offs, mask=mask, other=0.0)
        dpr, dpi = _cdiv(br, bi, mr, mi, IS_COMPLEX)
        tl.store(x_r + offs, dpr, mask=mask)
        if IS_COMPLEX:
            tl.store(x_i + offs, dpi, mask=mask)
        cpr = zero
        cpi = zero
        if K > 1:
            ur = tl.load(up_r + offs, mask=mask, other=0.0)
            ui = zero
            if IS_COMPLEX:
                ui = tl.load(up_i + offs, mask=mask, other=0.0)
            cpr, cpi = _cdiv(ur, ui, mr, mi, IS_COMPLEX)
            tl.store(cp_r + offs, cpr, mask=mask)
            if IS_COMPLEX:
                tl.store(cp_i + offs, cpi, mask=mask)
        # forward elimination
        for i in range(1, K):
            o = i * B + offs
            om = (i - 1) * B + offs
            ar = tl.load(lo_r + om, mask=mask, other=0.0)
            ai = zero
            if IS_COMPLEX:
                ai = tl.load(lo_i + om, mask=mask, other=0.0)
            mr = tl.load(d_r + o, mask=mask, other=1.0)
            mi = zero
            if IS_COMPLEX:
                mi = tl.load(d_i + o, mask=mask, other=0.0)
            pr, pi = _cmul(ar, ai, cpr, cpi, IS_COMPLEX)
            mr = mr - pr
            mi = mi - pi
            br = tl.load(b_r + o, mask=mask, other=0.0)
            bi = zero
            if IS_COMPLEX:
                bi = tl.load(b_i + o, mask=mask, other=0.0)
            pr, pi = _cmul(ar, ai, dpr, dpi, IS_COMPLEX)
            dpr, dpi = _cdiv(br - pr, bi - pi, mr, mi, IS_COMPLEX)
            tl.store(x_r + o, dpr, mask=mask)
            if IS_COMPLEX:
                tl.store(x_i + o, dpi, mask=mask)
            if i < K - 1:
                ur = tl.load(up_r + o, mask=mask, other=0.0)
                ui = zero
                if IS_COMPLEX:
                    ui = tl.load(up_i + o, mask=mask, other=0.0)
                cpr, cpi = _cdiv(ur, ui, mr, mi, IS_COMPLEX)
                tl.store(cp_r + o, cpr, mask=mask)
                if IS_COMPLEX:
                    tl.store(cp_i + o, cpi, mask=mask)
        # back substitution: x_i = d'_i - c'_i x_{i+1}; x holds d' on entry
        xr = dpr
        xi = dpi
        for j in range(0, K - 1):
            i = K - 2 - j
            o = i * B + offs
            cr = tl.load(cp_r + o, mask=mask, other=0.0)
            ci = zero
            if IS_COMPLEX:
                ci = tl.load(cp_i + o, mask=mask, other=0.0)
            pr, pi = _cmul(cr, ci, xr, xi, IS_COMPLEX)
            xr = tl.load(x_r + o, mask=mask, other=0.0) - pr
            tl.store(x_r + o, xr, mask=mask)
            if IS_COMPLEX:
                xi = tl.load(x_i + o, mask=mask, other=0.0) - pi
                tl.store(x_i + o, xi, mask=mask)


def _planes(t: torch.Tensor, is_complex: bool):
    """(K, B) contiguous real and imaginary planes of a (B, K) tensor."""
    t = t.transpose(0, 1)
    if is_complex:
        return t.real.contiguous(), t.imag.contiguous()
    t = t.contiguous()
    return t, t  # imaginary plane unused for real systems


def solve_triton(lower, diag, upper, rhs, block: int = 128) -> torch.Tensor:
    """Batched Thomas solve in one Triton launch (not differentiable)."""
    if not triton_available():
        raise RuntimeError("the triton solver needs CUDA and the triton package "
                           "(or TRITON_INTERPRET=1 for the CPU interpreter)")
    k = check_shapes(lower, diag, upper, rhs)
    lower, diag, upper, rhs = broadcast(lower, diag, upper, rhs)
    batch = diag.shape[:-1]
    is_complex = diag.is_complex()
    n = batch.numel()  # not reshape(-1, ...): K = 1 leaves the off-diagonals empty
    flat = [t.detach().reshape(n, t.shape[-1]) for t in (lower, diag, upper, rhs)]
    real_dtype = flat[1].real.dtype if is_complex else flat[1].dtype
    lo, d, up, b = (_planes(t, is_complex) for t in flat)
    x_r = torch.empty(k, n, dtype=real_dtype, device=diag.device)
    x_i = torch.empty_like(x_r) if is_complex else x_r
    cp_r = torch.empty(max(k - 1, 1), n, dtype=real_dtype, device=diag.device)
    cp_i = torch.empty_like(cp_r) if is_complex else cp_r
    grid = (triton.cdiv(n, block),)
    _thomas_kernel[grid](lo[0], lo[1], d[0], d[1], up[0], up[1], b[0], b[1], cp_r, cp_i,
                         x_r, x_i, n, k, BLOCK=block, IS_COMPLEX=is_complex)
    x = torch.complex(x_r, x_i) if is_complex else x_r
    return x.transpose(0, 1).reshape(*batch, k)
