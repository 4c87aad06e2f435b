"""runtime.keep_freed_memory: glibc keeps freed blocks in the heap (checked with mallinfo2 in a
fresh interpreter, where a 20 MB block is otherwise mapped and unmapped); runtime.numba_jit."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
applied = None
if sys.argv[1] == "call":
    import ppsi_cli
    applied = ppsi_cli.keep_freed_memory()
block = bytearray(20 << 20)
del block
print(applied, libc.mallinfo2().fordblks >> 20)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


def _probe(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_freed_memory_stays_in_the_heap():
    assert _probe("none") == ("None", 0)  # glibc's default: the block went back to the kernel
    applied, free_mb = _probe("call")
    assert applied == "True" and free_mb >= 20


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_a_users_own_malloc_setting_is_left_alone():
    applied, free_mb = _probe("call", MALLOC_TRIM_THRESHOLD_="0")
    assert applied == "False" and free_mb == 0


def test_numba_jit_compiles_or_is_absent(monkeypatch) -> None:
    """A compiled function gives the Python function's result; a numba that does not import
    gives None (the callers' fallback)."""
    from ppsi_cli.runtime import numba_jit

    def cumulative(a):  # a loop numba compiles
        out = a.copy()
        for i in range(1, a.shape[0]):
            out[i] += out[i - 1]
        return out

    a = np.arange(10.0)
    jit = numba_jit()
    if jit is not None:
        assert (jit(cumulative)(a) == a.cumsum()).all()
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    assert numba_jit() is None


def _module(tmp_path, name: str):
    """A fresh module from a file (numba caches a function's code beside its source file)."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text("def double(x):\n"
                    "    return 2 * x\n"
                    "def entry(a):\n"
                    "    out = a.copy()\n"
                    "    for i in range(a.shape[0]):\n"
                    "        out[i] = double(a[i])\n"
                    "    return out\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compile_kernels_compiles_helpers_in_place(tmp_path, monkeypatch) -> None:
    """The helpers are compiled into the module's namespace first, where the compiled entry
    finds them; without numba, None and the module untouched."""
    from ppsi_cli.runtime import compile_kernels

    module = _module(tmp_path, "kernels_a")
    python_double = module.double
    a = np.arange(5.0)
    kernels = compile_kernels(vars(module), ("double",), ("entry",))
    if kernels is not None:
        assert module.double is not python_double  # compiled in its place
        assert (kernels[0](a) == 2 * a).all()
    module = _module(tmp_path, "kernels_b")
    before = dict(vars(module))
    monkeypatch.setitem(sys.modules, "numba", None)
    assert compile_kernels(vars(module), ("double",), ("entry",)) is None
    assert vars(module) == before
