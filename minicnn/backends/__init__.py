"""Device dispatch: the one place where a device name becomes a backend module.

Every backend module has the same function names (``conv2d_forward``, ``max_pool2d_backward``, …)
and an ``xp`` attribute, the array module (NumPy for "cpu" and "emu", CuPy for "cuda"):

    cpu    numpy_backend   NumPy, with C++ helpers (minicnn._C_cpu)
    emu    emu_backend     our CUDA kernels on the CPU emulator (minicnn._C_emu), NumPy arrays
    cuda   cuda_backend    our CUDA kernels on the GPU (minicnn._C_cuda), CuPy arrays

"emu" and "cuda" are imported on first use, so ``import minicnn`` needs neither CuPy nor a GPU.
"""
from __future__ import annotations

import importlib

DEVICES = ("cpu", "emu", "cuda")
_MODULES = {"cpu": "numpy_backend", "emu": "emu_backend", "cuda": "cuda_backend"}
_ready = {}  # device -> its backend module, once it has loaded and is usable


def canonical_device(device) -> str:
    """Normalise a device argument to one of DEVICES or raise ValueError naming it."""
    name = getattr(device, "type", device)  # accept objects with a .type like torch.device
    if not isinstance(name, str):
        raise TypeError(f"device must be a string such as 'cpu', got {type(device).__name__}")
    base = name.split(":", 1)[0].lower()
    if base not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    return base


def get_backend(device: str):
    """The backend module for ``device``; RuntimeError saying why where it can't run here."""
    backend = _ready.get(device) if isinstance(device, str) else None
    if backend is not None:
        return backend
    device = canonical_device(device)
    module = importlib.import_module(f"{__name__}.{_MODULES[device]}")
    reason = getattr(module, "unavailable_reason", lambda: None)()
    if reason is not None:
        hint = ("use device='emu' to run the same CUDA kernels on the CPU emulator, or device='cpu'"
                if device == "cuda" else "or use device='cpu'")
        raise RuntimeError(f"device {device!r} is not available here: {reason}; {hint}")
    _ready[device] = module
    return module


def is_available(device: str) -> bool:
    """Whether ``device`` can run here (``get_backend`` would not raise)."""
    try:
        get_backend(device)
    except RuntimeError:
        return False
    return True
