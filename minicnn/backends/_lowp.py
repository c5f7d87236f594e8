"""float16 and bfloat16 on the "cpu" device: the float32 kernels, between an upcast and a rounding.

The kernel contract of the half dtypes (the same on "emu" and "cuda", where our CUDA kernels take
``__half`` / ``__nv_bfloat16`` directly): ReLU, pooling and LRN read and write the half dtype;
conv2d's x, w, bias, dout and every output are half; batch norm's x, y, dout and dx are half while
weight, bias, the running statistics, the saved mean/invstd, dweight and dbias are float32. All
arithmetic is float32. Here every half array argument is converted to float32 (exact: both half
types are subsets of float32), the float32 kernel runs, and the outputs the contract makes half
are rounded to nearest-even once. That is float32 accumulation with one final rounding, which is
what the GPU kernels do, up to the order of the float32 sums.

:func:`accept_half` wraps a backend class's kernels that way; float32/float64 calls pass through
untouched (one dtype check per call).
"""

from __future__ import annotations

import functools

import numpy as np

from ..dtypes import HALF_DTYPES, float32

_ALL = "all"
# kernel -> which of its outputs are in the half dtype (_ALL: the one output, or every one of a
# tuple); the others (max-pool indices, LRN's scale, BN's statistics and parameter gradients)
# stay as the float32 kernel returns them.
HALF_OUTPUTS = {
    "relu_forward": _ALL,
    "relu_backward": _ALL,
    "conv2d_forward": _ALL,
    "conv2d_backward_data": _ALL,
    "conv2d_backward_weight": _ALL,
    "conv2d_backward_bias": _ALL,
    "conv2d_backward": _ALL,
    "max_pool2d_forward": (0,),
    "max_pool2d_backward": _ALL,
    "avg_pool2d_forward": _ALL,
    "avg_pool2d_backward": _ALL,
    "adaptive_avg_pool2d_forward": _ALL,
    "adaptive_avg_pool2d_backward": _ALL,
    "local_response_norm_forward": (0,),
    "local_response_norm_backward": _ALL,
    "batch_norm_forward_training": (0,),
    "batch_norm_forward_inference": (0,),
    "batch_norm_backward": (0,),
}


def _low_dtype(args):
    """The half dtype of the first half array among ``args``, or None."""
    for a in args:
        dtype = getattr(a, "dtype", None)
        if dtype is not None and dtype in HALF_DTYPES:
            return dtype
    return None


def _upcast(a):
    if isinstance(a, np.ndarray) and a.dtype in HALF_DTYPES:
        return a.astype(float32)
    return a


def _round(out, which, dtype):
    def one(a):
        if a is None:
            return a
        with np.errstate(over="ignore"):  # float16 overflow gives inf: GradScaler's signal
            return a.astype(dtype)

    if not isinstance(out, tuple):
        return one(out)
    return tuple(one(a) if which == _ALL or i in which else a for i, a in enumerate(out))


def _half_kernel(kernel, which):
    @functools.wraps(kernel)
    def run(self, *args, **kwargs):
        low = _low_dtype(args)
        if low is None:
            return kernel(self, *args, **kwargs)
        out = kernel(self, *(_upcast(a) for a in args), **kwargs)
        return _round(out, which, low)

    return run


def accept_half(cls):
    """Class decorator: ``cls``'s kernels (HALF_OUTPUTS) accept float16/bfloat16 arrays."""
    for name, which in HALF_OUTPUTS.items():
        setattr(cls, name, _half_kernel(getattr(cls, name), which))
    return cls


def _product(a, b):
    """a @ b; 2-D NumPy products go through the C++ helpers' BLAS (backends/_np_blas.py), which
    runs on minicnn's thread count (np.matmul's OpenBLAS keeps a pool of its own that busy-waits
    beside ours)."""
    if isinstance(a, np.ndarray) and a.ndim == b.ndim == 2 and a.dtype == b.dtype:
        from ._np_blas import gemm  # the cpu helpers load on first use

        return gemm(a, b, np.empty((a.shape[0], b.shape[1]), dtype=a.dtype))
    return a @ b


def matmul(a, b, bias=None):
    """a @ b (+ bias) for the generic GEMMs (Linear, matmul): half operands are multiplied and the
    bias added in float32, and the result rounded once, as cuBLAS does with float32 accumulation
    (NumPy's own float16 matmul would round every partial sum). CuPy arrays go to cuBLAS as they
    are: its half GEMMs accumulate in float32 on the tensor cores."""
    low = a.dtype if a.dtype in HALF_DTYPES and isinstance(a, np.ndarray) else None
    if low is not None:
        a, b = a.astype(float32), b.astype(float32)
        bias = None if bias is None else bias.astype(float32)
    y = _product(a, b)
    if bias is not None:
        y += bias
    if low is None:
        return y
    with np.errstate(over="ignore"):
        return y.astype(low)
