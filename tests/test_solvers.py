"""Every tridiagonal solver against SciPy ``solve_banded`` (the reference twin), batching, autograd,
CPU vs CUDA, and the Triton kernel through Triton's CPU interpreter."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ppsi_cli import SolverConfig, StftConfig
from ppsi_cli.dsp import stft
from ppsi_cli.dsp.phase import fpd
from ppsi_cli.integrate import frame_systems
from ppsi_cli import solvers
from ppsi_cli.solvers import SOLVERS, resolve, solve_reference, solve_thomas, triton_available
from ppsi_cli.solvers.ldl import numba_available

NAMES = [n for n in SOLVERS if (n != "triton" or triton_available())
         and (n != "ldl" or numba_available())]
TOL = {torch.float64: 1e-9, torch.complex128: 1e-9, torch.float32: 1e-4, torch.complex64: 1e-4}
WIDE = {torch.float32: torch.float64, torch.complex64: torch.complex128}


def random_hpd(batch: tuple[int, ...], k: int, dtype: torch.dtype, seed: int = 0):
    """Random Hermitian positive-definite tridiagonal systems shaped like the phase least squares:
    A = Lam + D^H Gam D with D[i, i] = -u_i, D[i, i+1] = 1. Returns (lower, diag, upper, rhs),
    built in double precision and then cast to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    cplx = dtype.is_complex

    def rand(*shape):
        return torch.rand(*batch, *shape, generator=g, dtype=torch.float64)

    lam = 0.05 + rand(k)
    gam = 10 * rand(k - 1)
    u = (0.5 + 1.5 * rand(k - 1))
    if cplx:
        u = u * torch.exp(1j * 2 * np.pi * rand(k - 1))
    else:
        u = u * torch.where(rand(k - 1) < 0.5, -1.0, 1.0)
    diag = lam.clone()
    diag[..., :-1] += gam * u.abs() ** 2
    diag[..., 1:] += gam
    lower = -gam * u
    rhs = torch.randn(*batch, k, generator=g, dtype=torch.float64)
    if cplx:
        rhs = torch.complex(rhs, torch.randn(*batch, k, generator=g, dtype=torch.float64))
    lower, diag, rhs = lower.to(dtype), diag.to(dtype), rhs.to(dtype)
    return lower, diag, lower.conj(), rhs


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-system relative error ||x - ref|| / ||ref|| over the last dim."""
    x = x.to(ref.dtype)
    return (x - ref).norm(dim=-1) / ref.norm(dim=-1)


def reference_solution(lower, diag, upper, rhs) -> torch.Tensor:
    """SciPy solve_banded in double precision on exactly these (possibly float32) systems."""
    return solve_reference(*(t.cpu().to(WIDE.get(t.dtype, t.dtype))
                             for t in (lower, diag, upper, rhs)))


def check_solver(name: str, systems, dtype: torch.dtype) -> float:
    out = SOLVERS[name](*systems)
    assert out.dtype == systems[3].dtype and out.shape == systems[3].shape
    err = rel_err(out.cpu(), reference_solution(*systems)).max().item()
    assert err <= TOL[dtype], f"{name} {dtype}: relative error {err:.3g} > {TOL[dtype]:g}"
    return err


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64, torch.complex64,
                                   torch.float32], ids=str)
@pytest.mark.parametrize("k", [1, 2, 7, 513])
def test_random_hpd_systems_match_reference(name: str, dtype: torch.dtype, k: int) -> None:
    batch = (4,) if name == "dense" and k == 513 else (16,)
    check_solver(name, random_hpd(batch, k, dtype, seed=k), dtype)


@pytest.fixture(scope="module")
def speech_systems(speech):
    """Oracle-FPD systems of selected frames of real speech: the first frame, the 4 quietest
    frames, an onset (largest frame-to-frame energy rise), the loudest frame, the last frame,
    and one frame scaled down by 1e-8 (near digital silence but above the silence threshold).
    Returns (frames, mag (K, F), fpd (K-1, F), rhs phase (K, F))."""
    x, _ = speech
    spec = stft(x, StftConfig())
    mag = spec.abs()
    energy = mag.pow(2).sum(0)
    quiet = torch.argsort(energy)[:4].tolist()
    onset = int(torch.argmax(energy[1:] / energy[:-1].clamp_min(1e-30))) + 1
    loud = int(torch.argmax(energy))
    frames = [0, *quiet, onset, loud, spec.shape[-1] - 1]
    sel = spec[:, frames]
    sel = torch.cat([sel, sel[:, 6:7] * 1e-8], dim=-1)  # the loudest frame, nearly silent
    assert sel.abs().amax(0).min() > SolverConfig().silence_threshold  # none is skipped
    return frames, sel.abs(), fpd(sel), sel / sel.abs().clamp_min(1e-300)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("real", [torch.float64, torch.float32], ids=str)
def test_speech_frame_systems_match_reference(name: str, real: torch.dtype,
                                              speech_systems) -> None:
    _, mag, f, unit = speech_systems
    diag, lower, weight, silent, _ = frame_systems(mag.to(real), f.to(real), SolverConfig())
    assert not silent.any()
    rhs = weight * unit.transpose(0, 1).to(weight.dtype)  # oracle right-hand side
    systems = (lower, diag.to(lower.dtype), lower.conj(), rhs)
    check_solver(name, systems, lower.dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [(1,), (3,), (2, 3)], ids=str)
def test_batched_equals_one_by_one(name: str, batch: tuple[int, ...]) -> None:
    dtype = torch.complex128
    lower, diag, upper, rhs = random_hpd(batch, 33, dtype, seed=7)
    out = SOLVERS[name](lower, diag, upper, rhs)
    assert out.shape == (*batch, 33)
    for idx in np.ndindex(*batch):
        one = SOLVERS[name](lower[idx], diag[idx], upper[idx], rhs[idx])  # unbatched (K,)
        assert one.shape == (33,)
        assert rel_err(out[idx], one).item() <= 1e-13


@pytest.mark.parametrize("name", NAMES)
def test_shared_matrix_broadcasts_over_right_hand_sides(name: str) -> None:
    lower, diag, upper, rhs = random_hpd((3,), 9, torch.complex128, seed=3)
    out = SOLVERS[name](lower[0], diag[0], upper[0], rhs)
    for i in range(3):
        assert rel_err(out[i], solve_reference(lower[0], diag[0], upper[0], rhs[i])) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64], ids=str)
def test_thomas_gradcheck(dtype: torch.dtype) -> None:
    lower, diag, upper, rhs = random_hpd((2,), 5, dtype, seed=11)
    upper = upper + 0.1  # a general (non-Hermitian) but well-conditioned matrix
    inputs = tuple(t.detach().clone().requires_grad_(True) for t in (lower, diag, upper, rhs))
    assert torch.autograd.gradcheck(solve_thomas, inputs, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_shapes_raise(name: str) -> None:
    lower, diag, upper, rhs = random_hpd((2,), 8, torch.complex128)
    with pytest.raises(ValueError, match=r"off-diagonals must have K-1=7 entries"):
        SOLVERS[name](lower[..., :-1], diag, upper, rhs)
    with pytest.raises(ValueError, match=r"off-diagonals must have K-1=7 entries"):
        SOLVERS[name](lower, diag, upper[..., :-1], rhs)
    with pytest.raises(ValueError, match=r"rhs has 9 entries; the systems have K=8"):
        SOLVERS[name](lower, diag, upper, torch.nn.functional.pad(rhs, (0, 1)))


@pytest.mark.parametrize("name", [n for n in ("lapack", "ldl") if n in NAMES])
def test_cholesky_solvers_refuse_an_indefinite_matrix(name: str) -> None:
    lower, diag, upper, rhs = random_hpd((3,), 6, torch.float64)
    diag[1, 3] = -diag[1, 3]  # the second system's fourth pivot is negative
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        SOLVERS[name](lower, diag, upper, rhs)


def test_resolve(monkeypatch) -> None:
    assert resolve("auto", "cpu") == "reference"
    # the compiled LDL^H where numba is installed, else LAPACK
    assert resolve("auto", "cpu", hermitian=True) == ("ldl" if numba_available() else "lapack")
    monkeypatch.setattr(solvers, "numba_available", lambda: False)
    assert resolve("auto", "cpu", hermitian=True) == "lapack"
    with pytest.raises(ValueError, match="'ldl' needs numba"):
        resolve("ldl", "cpu")
    assert resolve("thomas", "cpu") == "thomas"
    with pytest.raises(ValueError, match="unknown solver 'nope'"):
        resolve("nope", "cpu")
    with pytest.raises(ValueError, match="'triton' needs a CUDA device"):
        resolve("triton", "cpu")


def test_a_numba_that_fails_to_import_counts_as_absent(monkeypatch) -> None:
    """numba installed but not importable (e.g. a NumPy newer than it supports): the CPU least
    squares falls back to LAPACK instead of failing."""
    from ppsi_cli.solvers import ldl

    monkeypatch.setattr(ldl, "_KERNELS", [])
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    assert not ldl.numba_available() and ldl.kernels() is None
    assert resolve("auto", "cpu", hermitian=True) == "lapack"
    with pytest.raises(ValueError, match="'ldl' needs numba"):
        resolve("ldl", "cpu")


@pytest.mark.requires_cuda
@pytest.mark.parametrize("name", ["thomas", "triton"])
@pytest.mark.parametrize("dtype", [torch.complex128, torch.float64, torch.complex64,
                                   torch.float32], ids=str)
def test_cuda_matches_cpu(name: str, dtype: torch.dtype) -> None:
    if name == "triton" and not triton_available():
        pytest.skip("triton is not installed")
    systems = random_hpd((257,), 513, dtype, seed=5)
    out = SOLVERS[name](*(t.cuda() for t in systems))
    assert out.device.type == "cuda" and out.dtype == dtype
    cpu = solve_thomas(*systems)
    assert rel_err(out.cpu(), cpu.to(WIDE.get(dtype, dtype))).max() <= TOL[dtype]
    check_solver(name, tuple(t.cuda() for t in systems), dtype)


_INTERPRETED = textwrap.dedent("""
    import torch
    from ppsi_cli.solvers import solve_triton, triton_available
    from tests.test_solvers import random_hpd, reference_solution, rel_err
    assert triton_available()
    for dtype, tol in ((torch.complex64, 1e-4), (torch.float64, 1e-9), (torch.complex128, 1e-9),
                       (torch.float32, 1e-4)):
        lo, d, up, b = random_hpd((5,), 33, dtype, seed=1)
        x = solve_triton(lo, d, up, b)
        assert x.dtype == dtype and x.shape == (5, 33)
        err = rel_err(x, reference_solution(lo, d, up, b)).max().item()
        assert err <= tol, (dtype, err)
        one = solve_triton(lo[:, :0], d[:, :1], up[:, :0], b[:, :1])  # K = 1
        assert torch.allclose(one, b[:, :1] / d[:, :1])
        print(dtype, err)
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_kernel_in_interpreter(repo_root: Path) -> None:
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(repo_root),
                                                        os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _INTERPRETED], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("torch.") == 4
