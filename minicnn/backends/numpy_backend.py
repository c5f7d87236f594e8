"""The "cpu" backend: every op in NumPy, with C++ helpers (minicnn._C_cpu) where NumPy is slow.

Every backend module ("cpu" here, "emu" and "cuda" later) exposes the same kernel functions: arrays
in, arrays out, no Tensors and no autograd. Forward kernels return their output (plus what their
backward needs, e.g. max-pool indices); backward kernels take ``dout`` and return the input
gradients (``dx``, ``dw``, …). Letters: N batch, C channels, H x W input, K output channels,
R x S kernel, P x Q output.
"""
from __future__ import annotations

import numpy as np

try:
    from .. import _C_cpu as _C
except ImportError:  # no compiled helper: NumPy does everything
    _C = None

xp = np
name = "cpu"


def set_num_threads(n):
    """Threads of the C++ helpers' pool (NumPy's BLAS keeps its own setting, OPENBLAS_NUM_THREADS)."""
    if _C is not None:
        _C.set_num_threads(int(n))


def get_num_threads():
    return _C.get_num_threads() if _C is not None else 1


def _cpp(name, dtype):
    """The C++ kernel ``name`` for a float32/float64 ``dtype``, or None (no extension, other dtype)."""
    if _C is None or dtype not in (np.float32, np.float64):
        return None
    return getattr(_C, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")


def to_numpy(a):
    return a


def from_numpy(a):
    return a


# ---- relu ---------------------------------------------------------------------------------------
def relu_forward(x):
    """y = 0 where x < 0, else x: NaN stays NaN and -0.0 stays -0.0, as torch.relu (np.maximum
    would give +0.0). C++ (csrc/cpu/relu.h) when available."""
    fn = _cpp("relu_forward", x.dtype)
    return np.where(x < 0, np.zeros((), x.dtype), x) if fn is None else fn(x)


def relu_backward(dout, y):
    """dx = 0 where y <= 0, else dout (a NaN input passes its gradient, as in PyTorch)."""
    fn = _cpp("relu_backward", dout.dtype) if dout.dtype == y.dtype else None
    if fn is None:
        return np.where(y <= 0, 0, dout).astype(dout.dtype, copy=False)
    return fn(dout, y)


# ---- the kernel families, one file each -------------------------------------------------------
from ._np_conv import *  # noqa: E402,F401,F403  conv2d_* (im2col + GEMM)
from ._np_norm import *  # noqa: E402,F401,F403  local_response_norm_*, batch_norm_*
from ._np_pool import *  # noqa: E402,F401,F403  max_pool2d_*, avg_pool2d_*, adaptive_avg_pool2d_*
