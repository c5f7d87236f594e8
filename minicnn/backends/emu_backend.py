"""The "emu" device: our CUDA kernels (csrc/kernels/*.cu) run on the CPU by the CUDA emulator.

``minicnn._C_emu`` is the very same kernel source as ``minicnn._C_cuda``, compiled by the host C++
compiler with csrc/emu (each CUDA thread a fiber, blocks one after another): a learner without a GPU
can run, test and step through the real kernels, and CI executes every one of them. Arrays are NumPy
arrays; pointers are their data addresses; launches are synchronous, so there is no stream (0).
A fault inside a kernel raises RuntimeError "kernel <name>: block (x,y,z) thread (x,y,z): <what>".

Arrays may be float32, float64, float16 or ml_dtypes.bfloat16 (the kernels' __half and
__nv_bfloat16 are the emulator's, csrc/emu/half.h; tensor cores are csrc/emu/wmma.h).

Generic array work (add, matmul, cat, softmax) runs in NumPy, as on "cpu"; conv2d is our
implicit-GEMM kernel (csrc/kernels/conv2d.cu). The emulator runs blocks one after another, so
convolutions on "emu" are slow: keep them small.

``MINICNN_EMU_EXTENSION=/path/to/_C_emu….so`` loads the kernels from that file instead (CI uses it
for a copy built with AddressSanitizer, see .ci/run).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import numpy as np

from ._kernel_backend import KernelBackend


def _load_extension():
    path = os.environ.get("MINICNN_EMU_EXTENSION")
    if not path:
        return importlib.import_module("minicnn._C_emu")
    spec = importlib.util.spec_from_file_location("minicnn._C_emu", path)
    if spec is None or not os.path.exists(path):
        raise ImportError(f"MINICNN_EMU_EXTENSION={path!r}: no such extension file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    _C, _unavailable = _load_extension(), None
except ImportError as e:
    _C = None
    _unavailable = (
        f"the emulated kernels (minicnn._C_emu) are not built or do not load ({e}); build "
        f"them with `pip install -e .` or `python setup.py build_ext --inplace`"
    )


class EmuBackend(KernelBackend):
    """The "emu" device: NumPy arrays, pointers are their data addresses, no stream (0).

    to_numpy gives the array itself (memory shared, as on "cpu"); from_numpy a C-contiguous copy,
    so a tensor moved to "emu" never shares memory with the original.
    """

    name, xp, C, unavailable = "emu", np, _C, _unavailable
    _to_host = staticmethod(lambda a: a)
    _to_device = staticmethod(lambda a: np.array(a, copy=True, order="C"))

    def _pointer(self, a) -> int:
        return a.ctypes.data

    def _stream(self) -> int:
        return 0

    def synchronize(self) -> None:
        """Nothing to wait for: emulated launches finish before they return."""
