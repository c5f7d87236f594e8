"""Device dispatch: the one place where a device name becomes a backend.

Every device is a class implementing the :class:`~minicnn.backends.interface.Backend` protocol
(interface.py lists each kernel with its signature and math); ``get_backend`` returns its one
instance. ``xp`` is the array module (NumPy for "cpu" and "emu", CuPy for "cuda"):

    cpu    numpy_backend.CpuBackend    NumPy, with C++ helpers (minicnn._C_cpu)
    emu    emu_backend.EmuBackend      our CUDA kernels on the CPU emulator (minicnn._C_emu)
    cuda   cuda_backend.CudaBackend    our CUDA kernels on the GPU (minicnn._C_cuda), CuPy arrays

"emu" and "cuda" are imported on first use, so ``import minicnn`` needs neither CuPy nor a GPU.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .interface import Backend

DEVICES = ("cpu", "emu", "cuda")

# float32 convolutions on "emu" and "cuda" run on tensor cores in TF32 (inputs rounded to 10
# fraction bits, float32 sums: ~3 decimal digits per product) when True. Off by default, as
# PyTorch's torch.backends.cudnn.allow_tf32 for matmul-like ops once was; read at every conv call.
# Needs sm_80 or newer on "cuda". float16 / bfloat16 convolutions always use tensor cores.
allow_tf32 = False
_CLASSES = {
    "cpu": ("numpy_backend", "CpuBackend"),
    "emu": ("emu_backend", "EmuBackend"),
    "cuda": ("cuda_backend", "CudaBackend"),
}
_ready = {}  # device -> its backend instance, once it has loaded and is usable


def canonical_device(device) -> str:
    """Normalise a device argument to one of DEVICES or raise ValueError naming it."""
    name = getattr(device, "type", device)  # accept objects with a .type like torch.device
    if not isinstance(name, str):
        raise TypeError(f"device must be a string such as 'cpu', got {type(device).__name__}")
    base = name.split(":", 1)[0].lower()
    if base not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    return base


def common_device(op: str, tensors: Iterable) -> str:
    """The one device all ``tensors`` are on; mixing devices is an error naming both."""
    device = None
    for t in tensors:
        if device is None:
            device = t.device
        elif t.device != device:
            raise ValueError(
                f"{op}: expected all tensors on one device, got {device!r} and {t.device!r}"
            )
    return device or "cpu"


def get_backend(device: str) -> Backend:
    """The backend of ``device``; RuntimeError saying why where it can't run here."""
    backend = _ready.get(device) if isinstance(device, str) else None
    if backend is not None:
        return backend
    device = canonical_device(device)
    module_name, class_name = _CLASSES[device]
    cls = getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)
    reason = cls.unavailable_reason()
    if reason is not None:
        hint = (
            "use device='emu' to run the same CUDA kernels on the CPU emulator, or device='cpu'"
            if device == "cuda"
            else "or use device='cpu'"
        )
        raise RuntimeError(f"device {device!r} is not available here: {reason}; {hint}")
    _ready[device] = cls()
    return _ready[device]


def is_available(device: str) -> bool:
    """Whether ``device`` can run here (``get_backend`` would not raise)."""
    try:
        get_backend(device)
    except RuntimeError:
        return False
    return True
