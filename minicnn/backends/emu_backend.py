"""The "emu" device: our CUDA kernels (csrc/kernels/*.cu) run on the CPU by the CUDA emulator.

``minicnn._C_emu`` is the very same kernel source as ``minicnn._C_cuda``, compiled by the host C++
compiler with csrc/emu (each CUDA thread a fiber, blocks one after another): a learner without a GPU
can run, test and step through the real kernels, and CI executes every one of them. Arrays are NumPy
arrays; pointers are their data addresses; launches are synchronous, so there is no stream (0).
A fault inside a kernel raises RuntimeError "kernel <name>: block (x,y,z) thread (x,y,z): <what>".

Generic array work (add, matmul, cat, softmax) runs in NumPy, as on "cpu"; conv2d is our implicit-GEMM
kernel (csrc/kernels/conv2d.cu). The emulator runs blocks one after another, so convolutions on "emu"
are slow: keep them small.

``MINICNN_EMU_EXTENSION=/path/to/_C_emu….so`` loads the kernels from that file instead (CI uses it
for a copy built with AddressSanitizer, see .ci/run).
"""
from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np

from ._kernel_backend import KernelBackend, export

xp = np
name = "emu"
_C = None
_unavailable = None  # why the kernels can't be loaded, or None


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
    _C = _load_extension()
except ImportError as e:
    _unavailable = (f"the emulated kernels (minicnn._C_emu) are not built or do not load ({e}); build "
                    f"them with `pip install -e .` or `python setup.py build_ext --inplace`")


def unavailable_reason():
    """None when the "emu" device works here, else why not."""
    return _unavailable


def to_numpy(a):
    """The array itself (memory shared, as on "cpu")."""
    return a


def from_numpy(a):
    """A C-contiguous copy: a tensor moved to "emu" never shares memory with the original."""
    return np.array(a, copy=True, order="C")


def synchronize():
    """Nothing to wait for: emulated launches finish before they return."""


if _C is not None:
    _kernels = KernelBackend(name, np, _C, pointer=lambda a: a.ctypes.data, stream=lambda: 0)
    export(_kernels, globals())
