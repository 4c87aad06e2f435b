"""Process settings for fast CPU inference (they change no result), and the one way the
package compiles its CPU loops with numba.

glibc serves allocations above its mmap threshold (128 KB, raised up to 32 MB as blocks are freed)
with fresh pages from the kernel and trims the free top of its heap back to the kernel, so every
STFT, Griffin-Lim iteration or CNN tile of a long file (a 20 s spectrogram is 5 MB) pays page
faults on new memory, several times the FFT's own time on one thread. Keeping freed memory in
the process removes that (docs/experiments.md, "allocator").
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations up to this size come from the heap (glibc's largest mmap threshold on 64 bits).
MMAP_THRESHOLD = 32 << 20
#: Free heap top kept in the process before trimming.
TRIM_THRESHOLD = 1 << 30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (heap allocations up to 32 MB, up to 1 GB of free
    heap kept); returns whether the setting is in effect. Linux with glibc only; a user's own
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are left as they are. The command
    line applies it in every process it computes in; library users may call it once."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied


def numba_jit():
    """``numba.njit(cache=True)`` (compiled on the first call, cached on disk) when numba
    imports here, else None: without ``pip install "ppsi[fast]"``, or with a numba that fails to
    import (e.g. a NumPy newer than it supports), the callers keep their Python or LAPACK path."""
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True)


def compile_kernels(namespace: dict, helpers: tuple[str, ...], entries: tuple[str, ...]
                    ) -> tuple | None:
    """The functions ``entries`` of a module (``namespace``: its ``globals()``) compiled by
    :func:`numba_jit`, or None without numba. The ``helpers`` they call are compiled first and
    take their names' place in the module, where the compiled entries find them. Call it once
    per module and keep the result."""
    jit = numba_jit()
    if jit is None:
        return None
    for name in helpers:
        namespace[name] = jit(namespace[name])
    return tuple(jit(namespace[name]) for name in entries)
