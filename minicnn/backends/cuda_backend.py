"""The "cuda" device: our CUDA kernels (csrc/kernels/*.cu, built by nvcc into minicnn._C_cuda) on
CuPy arrays.

Kernels get the arrays' device pointers and CuPy's current stream
(``cupy.cuda.get_current_stream``), so they queue in order with CuPy's own work; outputs come from
CuPy's memory pool. Generic array work (add, matmul, cat, softmax) is CuPy's; conv2d is our
implicit-GEMM kernel (csrc/kernels/conv2d.cu).

Arrays may be float32, float64, float16 or bfloat16: CuPy's float16, and the bfloat16 dtype CuPy
takes from ml_dtypes (CuPy 14; passed to the kernels as a pointer like any other dtype, so the
kernels need nothing more from CuPy than allocation). bfloat16 convolutions and TF32 need sm_80.

Importing this module never fails: when CuPy, the extension or a usable GPU is missing,
:meth:`CudaBackend.unavailable_reason` says which, and ``get_backend("cuda")`` raises with that
reason.
"""

from __future__ import annotations


import numpy as np

from ._kernel_backend import KernelBackend


def _probe():
    """(cupy, _C_cuda, None) when kernels can run here, else (…, …, why not)."""
    problems = []
    try:
        import cupy
    except ImportError as e:
        cupy = None
        problems.append(
            f"CuPy is not installed ({e}); pip install cupy-cuda12x or cupy-cuda13x, "
            f"matching the CUDA version nvidia-smi reports"
        )
    try:
        from .. import _C_cuda as C
    except ImportError as e:
        C = None
        problems.append(
            f"minicnn._C_cuda is not built ({e}): nvcc was not found when minicnn was "
            f"installed, or MINICNN_CUDA=0; reinstall with nvcc on PATH (MINICNN_CUDA=1 "
            f"makes a failed CUDA build an error)"
        )
    if problems:
        return cupy, C, "; ".join(problems)
    info = C.device_info()
    if not info["usable"]:
        return cupy, C, f"no usable GPU: {info['reason']}"
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  cupy's CUDARuntimeError and friends
        return cupy, C, f"CuPy cannot use the GPU: {e}"
    try:  # one tiny launch: catches a GPU this build has no code for
        C._selftest_trap(1, 32)
        C.synchronize()
    except RuntimeError as e:
        major, minor = info["compute_capability"]
        return (
            cupy,
            C,
            (
                f"a test launch failed on {info['name']} (sm_{major}{minor}); minicnn._C_cuda is "
                f"built for {getattr(C, 'cuda_archs', '?')}: rebuild with "
                f"MINICNN_CUDA_ARCHS={major}{minor} ({e})"
            ),
        )
    return cupy, C, None


_cupy, _C, _unavailable = _probe()


class CudaBackend(KernelBackend):
    """The "cuda" device: CuPy arrays, device pointers, CuPy's current stream.

    to_numpy gives a NumPy copy of a CuPy array (NumPy arrays pass through); from_numpy a CuPy
    copy of a NumPy array, C-contiguous.
    """

    name, xp, C, unavailable = "cuda", _cupy, _C, _unavailable
    _to_host = staticmethod(lambda a: a.get() if hasattr(a, "get") else np.asarray(a))
    _to_device = staticmethod(lambda a: _cupy.array(a, order="C"))

    def _pointer(self, a) -> int:
        return a.data.ptr

    def _stream(self) -> int:
        return _cupy.cuda.get_current_stream().ptr

    def synchronize(self) -> None:
        """Wait for the work queued on the current stream."""
        _cupy.cuda.get_current_stream().synchronize()
