"""The "cpu" backend: every op in NumPy, with C++ helpers (minicnn._C_cpu) where NumPy is slow.

Every backend module ("cpu" here, "emu" and "cuda" later) exposes the same kernel functions: arrays
in, arrays out, no Tensors and no autograd. Forward kernels return their output (plus what their
backward needs, e.g. max-pool indices); backward kernels take ``dout`` and return the input
gradients (``dx``, ``dw``, …). Letters: N batch, C channels, H x W input, K output channels,
R x S kernel, P x Q output.
"""
from __future__ import annotations

import numpy as np

xp = np
name = "cpu"


def to_numpy(a):
    return a


def from_numpy(a):
    return a


# ---- relu ---------------------------------------------------------------------------------------
def relu_forward(x):
    """y = max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(dout, y):
    """dx = 0 where y <= 0, else dout (a NaN input passes its gradient, as in PyTorch)."""
    return np.where(y <= 0, 0, dout).astype(dout.dtype, copy=False)


# ---- the kernel families, one file each -------------------------------------------------------
from ._np_conv import *  # noqa: E402,F401,F403  conv2d_* (im2col + GEMM)
from ._np_norm import *  # noqa: E402,F401,F403  local_response_norm_*, batch_norm_*
from ._np_pool import *  # noqa: E402,F401,F403  max_pool2d_*, avg_pool2d_*, adaptive_avg_pool2d_*
