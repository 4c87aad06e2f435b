"""Benchmarks: time every tridiagonal solver on random Hermitian positive-definite systems.

``bench_solvers`` returns one plain dict per (solver, batch size); the CLI renders them
(``ppsi bench solvers``). Times are per single system (total time / systems solved), so a batched
solver's advantage shows up directly; ``vs_dense`` and ``vs_reference`` say how many times faster
than the dense baseline and the SciPy reference, both measured in the same run.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch

from .solvers import SOLVERS, resolve

#: Solvers in the order they are reported.
BENCH_SOLVERS = ("reference", "lapack", "thomas", "triton", "dense")
#: Dense solves build (batch, K, K) matrices: K = 513 complex128 is 4 MB per system.
DENSE_MAX_BATCH = 16


def random_systems(batch: int, k: int, dtype: torch.dtype = torch.complex128,
                   device: torch.device | str = "cpu", seed: int = 0):
    """``batch`` random Hermitian positive-definite tridiagonal systems of size ``k``.

    Built like the phase least squares (SPEC §5), A = Lam + D^H Gam D with D[i, i] = -u_i,
    D[i, i+1] = 1, random positive weights and ratios |u| in [0.5, 2]. Returns
    ``(lower (B, K-1), diag (B, K), upper (B, K-1), rhs (B, K))`` with ``upper = conj(lower)``;
    ``diag`` has ``dtype`` (real values) so every solver sees one dtype.
    """
    g = torch.Generator().manual_seed(seed)
    wide = torch.float64

    def rand(n: int) -> torch.Tensor:
        return torch.rand(batch, n, generator=g, dtype=wide)

    lam, gam, u = 0.05 + rand(k), 10 * rand(k - 1), 0.5 + 1.5 * rand(k - 1)
    if dtype.is_complex:
        u = u * torch.exp(2j * math.pi * rand(k - 1))
    diag = lam.clone()
    diag[:, :-1] += gam * u.abs() ** 2
    diag[:, 1:] += gam
    lower = -gam * u
    rhs = torch.randn(batch, k, generator=g, dtype=wide)
    if dtype.is_complex:
        rhs = torch.complex(rhs, torch.randn(batch, k, generator=g, dtype=wide))
    lower, diag, rhs = (t.to(dtype=dtype, device=device) for t in (lower, diag, rhs))
    return lower, diag, lower.conj().resolve_conj(), rhs


def available_solvers(device: torch.device | str = "cpu") -> list[str]:
    """The benchmarked solvers that can run on ``device`` (triton only on CUDA with triton)."""
    names = []
    for name in BENCH_SOLVERS:
        try:
            resolve(name, device)
        except ValueError:
            continue
        names.append(name)
    return names


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, min_time: float = 0.2,
              repeats: int | None = None) -> tuple[float, int]:
    """Seconds per call of ``fn`` after one warm-up call, and the number of timed calls.

    With ``repeats`` the call is timed exactly that many times; otherwise it is repeated until
    the timed total reaches ``min_time`` seconds (at least once).
    """
    fn()
    _sync(device)
    done, total = 0, 0.0
    while True:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        total += time.perf_counter() - t0
        done += 1
        if (repeats is not None and done >= repeats) or (repeats is None and total >= min_time):
            return total / done, done


def bench_solvers(device: torch.device | str = "cpu", k: int = 513,
                  batches: Iterable[int] = (1, 64, 1024), dtype: torch.dtype = torch.complex128,
                  repeats: int | None = None, min_time: float = 0.2, threads: int | None = 1,
                  solvers: Iterable[str] | None = None, dense_max_batch: int = DENSE_MAX_BATCH,
                  seed: int = 0,
                  on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Time each solver on ``batch`` random Hermitian PD systems of size ``k``, per batch size.

    Returns one dict per (solver, batch): ``solver``, ``batch``, ``seconds_per_solve`` (time of
    one call / systems in it), ``vs_dense`` and ``vs_reference`` (how many times faster than those
    at the same batch size; NaN when that solver was not run), ``systems_timed``, ``repeats``,
    ``device``, ``dtype``, ``k``, ``threads`` and a ``note`` ("" or why the number is special).
    The dense baseline is timed on at most ``dense_max_batch`` systems (its memory grows as
    batch x K^2), and its per-solve time is used for larger batches. ``threads`` sets torch's
    intra-op threads for the run (restored afterwards; None leaves them as they are).
    ``on_result`` is called with each dict as soon as it is measured (for progress).
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {str(device)!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    batches = list(batches)
    if not batches or min(batches) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {batches}")
    if dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        raise ValueError(f"dtype must be float32, float64, complex64 or complex128, got {dtype}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if dense_max_batch < 1:
        raise ValueError(f"dense_max_batch must be >= 1, got {dense_max_batch}")
    names = available_solvers(device)
    if solvers is not None:
        wanted = list(solvers)
        unknown = [s for s in wanted if s not in SOLVERS]
        if unknown:
            raise ValueError(f"unknown solver(s) {unknown}; choose from {list(BENCH_SOLVERS)}")
        missing = [s for s in wanted if s not in names]
        if missing:
            raise ValueError(f"solver(s) {missing} cannot run on {device}")
        names = [n for n in names if n in wanted]

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        rows: list[dict] = []
        cache: dict[tuple[str, int], tuple[float, int]] = {}
        for batch in batches:
            systems = random_systems(batch, k, dtype, device, seed=seed)
            per_solve: dict[str, float] = {}
            group = []
            for name in names:
                n = min(batch, dense_max_batch) if name == "dense" else batch
                if (name, n) not in cache:  # dense at 64 and 1024 is the same sub-batch
                    sub = tuple(t[:n] for t in systems)
                    fn = SOLVERS[name]
                    cache[(name, n)] = time_call(lambda: fn(*sub), device, min_time, repeats)
                seconds, reps = cache[(name, n)]
                per_solve[name] = seconds / n
                note = ""
                if n < batch:
                    note = f"timed on {n} of {batch} systems"
                elif name in ("reference", "lapack") and device.type == "cuda":
                    note = "runs on CPU, one system at a time; includes the transfers"
                group.append(dict(solver=name, batch=batch, seconds_per_solve=seconds / n,
                                  systems_timed=n, repeats=reps, device=str(device),
                                  dtype=str(dtype).removeprefix("torch."), k=k,
                                  threads=torch.get_num_threads(), note=note))
            for row in group:
                s = row["seconds_per_solve"]
                row["vs_dense"] = per_solve["dense"] / s if "dense" in per_solve else math.nan
                row["vs_reference"] = (per_solve["reference"] / s if "reference" in per_solve
                                       else math.nan)
                rows.append(row)
                if on_result is not None:
                    on_result(row)
        return rows
    finally:
        torch.set_num_threads(old_threads)
