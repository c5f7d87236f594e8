"""GEMM for the "cpu" backend: NumPy's own BLAS, driven by the C++ helpers' thread pool.

``gemm(a, b, out)`` computes out = a @ b (or out += a @ b) like np.matmul, but through
``minicnn._C_cpu.gemm_*`` (csrc/cpu/blas.h): the product is cut into blocks handed out dynamically
to the helpers' threads, one single-threaded BLAS call per block. NumPy's matmul instead hands the
whole product to OpenBLAS's own threads, which busy-wait between calls and split the work
statically: on a loaded machine one descheduled thread holds up every GEMM (measured here: a conv
layer 3-4x slower with 2 threads than with 1). The thread count is the helpers'
(``numpy_backend.set_num_threads``).

NumPy has no C API for its BLAS, so the CBLAS ``?gemm`` functions are looked up in the BLAS library
NumPy has loaded (scipy-openblas in the wheels: ``scipy_cblas_sgemm64_``), checked against
np.matmul once, and only then used; ``openblas_set_num_threads_local`` keeps OpenBLAS's threads
out of our calls. Without it (another BLAS) the helpers call BLAS only when they run one thread;
without the functions, or with MINICNN_CPU_BLAS=0, everything is np.matmul.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from ._cpp import load_cpu_extension

_C = load_cpu_extension()

__all__ = ["gemm"]

_GEMM_NAMES = [
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
    ("cblas_sgemm64_", "cblas_dgemm64_"),
    ("scipy_cblas_sgemm", "scipy_cblas_dgemm"),
    ("cblas_sgemm", "cblas_dgemm"),
]
_LOCAL_THREADS_NAMES = [
    "openblas_set_num_threads_local",
    "scipy_openblas_set_num_threads_local64_",
    "openblas_set_num_threads_local64_",
]


def _loaded_blas_libraries():
    """Paths of the BLAS libraries mapped into this process (NumPy's), else NumPy's bundled ones."""
    try:
        with open("/proc/self/maps") as f:
            return sorted(
                {
                    line.split()[-1]
                    for line in f
                    if "blas" in os.path.basename(line.split()[-1]).lower() and "/" in line
                }
            )
    except OSError:  # no /proc
        return sorted(
            glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*blas*"))
        )


def _find_gemm():
    """(sgemm, dgemm, set_num_threads_local) addresses (the last 0 if absent), or None."""

    def address(lib, name):
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value

    for path in _loaded_blas_libraries():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle
        except OSError:
            continue
        for sgemm, dgemm in _GEMM_NAMES:
            if hasattr(lib, sgemm) and hasattr(lib, dgemm):
                local = next((n for n in _LOCAL_THREADS_NAMES if hasattr(lib, n)), None)
                return address(lib, sgemm), address(lib, dgemm), address(lib, local) if local else 0
    return None


def _checks_out():
    """The registered functions against np.matmul: both dtypes, a transposed operand, beta = 1."""
    rng = np.random.default_rng(0)
    for dtype, fn in ((np.float32, _C.gemm_f32), (np.float64, _C.gemm_f64)):
        a, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((9, 7)).astype(dtype)
        c = rng.standard_normal((5, 9)).astype(dtype)
        expect = c + a @ b.T
        fn(a, b.T, c, 1.0, 1.0)
        if not np.allclose(c, expect, rtol=1e-4, atol=1e-4):
            return False
    return True


def _register():
    """ "parallel" (blocks on our pool), "serial" (only with one thread of ours) or None."""
    if _C is None or not hasattr(_C, "set_blas") or os.environ.get("MINICNN_CPU_BLAS") == "0":
        return None
    found = _find_gemm()
    if found is None:
        return None
    _C.set_blas(*found)
    if not _checks_out():
        _C.set_blas(0, 0, 0)
        return None
    return "parallel" if found[2] else "serial"


_BLAS_MODE = _register()


def blas_usable():
    """Whether the C++ helpers may call BLAS now (from their own threads, or from one thread)."""
    return _C is not None and (
        _BLAS_MODE == "parallel" or (_BLAS_MODE == "serial" and _C.get_num_threads() == 1)
    )


def gemm(a, b, out, accumulate=False):
    """out (+)= a @ b for 2-D a (M, K), b (K, N) — row-major arrays or transposed views of them —
    and a row-major out (M, N); np.matmul where the helpers can't."""
    if blas_usable() and a.dtype == b.dtype == out.dtype and out.dtype in (np.float32, np.float64):
        try:
            getattr(_C, "gemm_f32" if out.dtype == np.float32 else "gemm_f64")(
                a, b, out, 1.0, 1.0 if accumulate else 0.0
            )
            return out
        except ValueError:  # an operand layout BLAS can't take: NumPy copies it
            pass
    if accumulate:
        out += a @ b
        return out
    return np.matmul(a, b, out=out)
