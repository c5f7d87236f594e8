"""The devices that run our CUDA kernels, as pytest parameters: "emu" always, "cuda" where usable.

MINICNN_KERNEL_DEVICES=cuda (comma-separated) restricts the kernel tests to those devices
(scripts/gpu_check.sh runs them on "cuda" only). A device that can't run here is skipped with the
reason get_backend gives.
"""

import contextlib
import os

import numpy as np
import pytest

from minicnn.backends import DEVICES, get_backend

KERNEL_DEVICE_NAMES = tuple(d for d in DEVICES if d != "cpu")  # the devices that run csrc/kernels


def unavailable(device):
    try:
        get_backend(device)
    except RuntimeError as e:
        return str(e)
    return None


def _params(default):
    names = os.environ.get("MINICNN_KERNEL_DEVICES", ",".join(default))
    wanted = [d.strip() for d in names.split(",") if d.strip()]
    params = []
    for device in wanted:
        reason = unavailable(device)
        params.append(
            pytest.param(
                device, id=device, marks=pytest.mark.skipif(reason is not None, reason=str(reason))
            )
        )
    return params


KERNEL_DEVICES = _params(KERNEL_DEVICE_NAMES)
# Every device, for a property written once and run on each (with MINICNN_KERNEL_DEVICES set, the
# devices it names: scripts/gpu_check.sh runs "cuda" alone).
ALL_DEVICES = _params(DEVICES)
DTYPES = [np.float64, np.float32]
DTYPE_NAMES = ["float64", "float32"]


def on(device, *arrays):
    """NumPy arrays copied to ``device`` (None stays None)."""
    backend = get_backend(device)
    out = tuple(None if a is None else backend.from_numpy(np.asarray(a)) for a in arrays)
    return out[0] if len(out) == 1 else out


def host(device, result):
    """A kernel's result (an array or a tuple of them) back as NumPy arrays."""
    backend = get_backend(device)
    if isinstance(result, tuple):
        return tuple(backend.to_numpy(r) for r in result)
    return backend.to_numpy(result)


@contextlib.contextmanager
def cpu_threads(n):
    """Run the block with the cpu helpers' pool (minicnn._C_cpu) at n threads, then restore it."""
    from minicnn import _C_cpu

    before = _C_cpu.get_num_threads()
    _C_cpu.set_num_threads(n)
    try:
        yield
    finally:
        _C_cpu.set_num_threads(before)
