"""Device dispatch: the one place where a device name becomes a backend module.

Every backend module has the same function names (``conv2d_forward``, ``max_pool2d_backward``, …)
and an ``xp`` attribute, the array module (NumPy for "cpu" and "emu", CuPy for "cuda").
"""
from __future__ import annotations

DEVICES = ("cpu", "emu", "cuda")


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
    """The backend module for ``device``; a clear error where it is not available here."""
    device = canonical_device(device)
    if device == "cpu":
        from . import numpy_backend
        return numpy_backend
    raise RuntimeError(
        f"device {device!r} is not available in this build: the {device} backend (our CUDA kernels "
        f"{'compiled for the CPU emulator' if device == 'emu' else 'on CuPy arrays'}) is not built "
        "yet; use device='cpu'")
