"""The "cpu" device: every kernel in NumPy, with C++ helpers (minicnn._C_cpu) where NumPy is slow.

:class:`CpuBackend` implements the backend interface (interface.py, where each method's math is
stated) by calling the kernel families, one file each:

    relu                        here
    conv2d_*                    _np_conv.py   im2col + GEMM (_np_blas.py: NumPy's BLAS, our pool)
    *_pool2d_*                  _np_pool.py
    local_response_norm_*,
    batch_norm_*                _np_norm.py

Every family keeps a readable NumPy version beside the C++ path (``_reference`` suffix), used when
the extension is not built.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..ops.geometry import Conv2dGeometry, Pool2dGeometry
from . import _malloc, _np_conv, _np_norm, _np_pool  # noqa: F401 (_malloc: glibc settings)
from ._cpp import cpp_kernel, load_cpu_extension
from ._lowp import accept_half
from ._np_optim import NumpyOptimMixin

_C = load_cpu_extension()  # None: NumPy does everything


@accept_half  # float16/bfloat16: float32 kernels between an upcast and a rounding (_lowp.py)
class CpuBackend(NumpyOptimMixin):
    """The "cpu" device: NumPy arrays; see the module docstring."""

    name = "cpu"
    xp = np

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        return None  # NumPy is always there; the C++ helpers are optional

    # ---- arrays, threads ----------------------------------------------------------------------
    def to_numpy(self, a):
        return a

    def from_numpy(self, a):
        return a

    def synchronize(self) -> None:
        """Nothing to wait for: NumPy work is done when it returns."""

    def set_num_threads(self, n: int) -> None:
        """Threads of the C++ helpers' pool (NumPy's BLAS keeps its own, OPENBLAS_NUM_THREADS)."""
        if _C is not None:
            _C.set_num_threads(int(n))

    def get_num_threads(self) -> int:
        return _C.get_num_threads() if _C is not None else 1

    # ---- relu ---------------------------------------------------------------------------------
    def relu_forward(self, x):
        """y = 0 where x < 0, else x: NaN stays NaN and -0.0 stays -0.0, as torch.relu (np.maximum
        would give +0.0). C++ (csrc/cpu/relu.h) when available."""
        fn = cpp_kernel(_C, "relu_forward", x.dtype)
        return np.where(x < 0, np.zeros((), x.dtype), x) if fn is None else fn(x)

    def relu_backward(self, dout, y):
        """dx = 0 where y <= 0, else dout (a NaN input passes its gradient, as in PyTorch)."""
        fn = cpp_kernel(_C, "relu_backward", dout.dtype) if dout.dtype == y.dtype else None
        if fn is None:
            return np.where(y <= 0, 0, dout).astype(dout.dtype, copy=False)
        return fn(dout, y)

    # ---- convolution --------------------------------------------------------------------------
    def conv2d_forward(self, x, w, b, g: Conv2dGeometry):
        return _np_conv.conv2d_forward(x, w, b, g)

    def conv2d_backward_data(self, dout, w, g: Conv2dGeometry):
        return _np_conv.conv2d_backward_data(dout, w, g)

    def conv2d_backward_weight(self, dout, x, g: Conv2dGeometry):
        return _np_conv.conv2d_backward_weight(dout, x, g)

    def conv2d_backward_bias(self, dout):
        return _np_conv.conv2d_backward_bias(dout)

    def conv2d_backward(self, dout, x, w, g: Conv2dGeometry, needs=(True, True, True)):
        return _np_conv.conv2d_backward(dout, x, w, g, needs)

    # ---- pooling ------------------------------------------------------------------------------
    def max_pool2d_forward(self, x, g: Pool2dGeometry):
        return _np_pool.max_pool2d_forward(x, g)

    def max_pool2d_backward(self, dout, argmax, g: Pool2dGeometry):
        return _np_pool.max_pool2d_backward(dout, argmax, g)

    def avg_pool2d_forward(self, x, g: Pool2dGeometry):
        return _np_pool.avg_pool2d_forward(x, g)

    def avg_pool2d_backward(self, dout, g: Pool2dGeometry):
        return _np_pool.avg_pool2d_backward(dout, g)

    def adaptive_avg_pool2d_forward(self, x, g: Pool2dGeometry):
        return _np_pool.adaptive_avg_pool2d_forward(x, g)

    def adaptive_avg_pool2d_backward(self, dout, g: Pool2dGeometry):
        return _np_pool.adaptive_avg_pool2d_backward(dout, g)

    # ---- normalization ------------------------------------------------------------------------
    def local_response_norm_forward(self, x, size, alpha, beta, k):
        return _np_norm.local_response_norm_forward(x, size, alpha, beta, k)

    def local_response_norm_backward(self, dout, x, scale, size, alpha, beta):
        return _np_norm.local_response_norm_backward(dout, x, scale, size, alpha, beta)

    def batch_norm_forward_training(
        self, x, weight, bias, running_mean, running_var, momentum, eps, relu=False
    ):
        args = (x, weight, bias, running_mean, running_var)
        out = _np_norm.batch_norm_relu_forward(*args, True, momentum, eps) if relu else None
        if out is None:  # no ReLU, or no fused C++ kernel for it: batch norm, then ReLU
            out = self._then_relu(relu, _np_norm.batch_norm_forward_training(*args, momentum, eps))
        return out

    def batch_norm_forward_inference(
        self, x, weight, bias, running_mean, running_var, eps, relu=False
    ):
        args = (x, weight, bias, running_mean, running_var)
        out = _np_norm.batch_norm_relu_forward(*args, False, None, eps) if relu else None
        if out is None:
            out = self._then_relu(relu, _np_norm.batch_norm_forward_inference(*args, eps))
        return out

    def _then_relu(self, relu, out):
        """batch norm's (y, mean, invstd), y through ReLU when ``relu``."""
        y, mean, invstd = out
        return (self.relu_forward(y) if relu else y), mean, invstd

    def batch_norm_backward(self, dout, x, weight, mean, invstd, training, relu_output=None):
        if relu_output is not None:  # the mask applied as the C++ passes read dout
            args = (dout, relu_output, x, weight, mean, invstd, training)
            fused = _np_norm.batch_norm_relu_backward(*args)
            if fused is not None:
                return fused
            dout = self.relu_backward(dout, relu_output)
        if training:
            return _np_norm.batch_norm_backward_training(dout, x, weight, mean, invstd)
        return _np_norm.batch_norm_backward_inference(dout, x, weight, mean, invstd)

    # ---- generic array passes on the helpers' pool (csrc/cpu/arrays.h) -------------------------
    # The same numbers as NumPy's a + b and np.concatenate; used for big enough arrays only.
    THREADED_MIN_SIZE = 1 << 14  # below this, NumPy's single pass costs less than the pool

    def add(self, a, b):
        """a + b (NumPy semantics); threaded for same-shape, same-dtype float arrays."""
        return add_arrays(a, b)

    def concatenate(self, arrays, axis):
        """np.concatenate(arrays, axis); threaded along the channels (axis 1) of float arrays."""
        first = arrays[0]
        fn = cpp_kernel(_C, "concat_channels", first.dtype) if first.ndim >= 2 else None
        if (
            fn is not None
            and axis in (1, 1 - first.ndim)
            and sum(a.size for a in arrays) >= self.THREADED_MIN_SIZE
            and all(a.dtype == first.dtype and a.flags.c_contiguous for a in arrays)
        ):
            try:
                return fn(list(arrays))
            except ValueError:  # shapes that do not line up: NumPy's error message
                pass
        return np.concatenate(arrays, axis=axis)

    # ---- optimizer updates: one threaded C++ pass per group (csrc/cpu/optim.h) ------------------
    def _native_update(self, name, written, read):
        """_C_cpu's ``name`` for one float32/float64 dtype of C-contiguous arrays (those updated in
        place writeable), else None: NumpyOptimMixin's per-tensor loop then runs."""
        dtype = written[0][0].dtype if written[0] else None
        fn = cpp_kernel(_C, name, dtype) if dtype is not None else None
        arrays = [(a, True) for group in written for a in group] + [(a, False) for a in read]
        if fn is None or not all(
            isinstance(a, np.ndarray)
            and a.dtype == dtype
            and a.flags.c_contiguous
            and (a.flags.writeable or not w)
            for a, w in arrays
        ):
            return None
        return fn


def _rows_contiguous(a):
    """a is C-contiguous, or a slice of a C-contiguous array along dim 1 (Cat's backward hands
    out dout[:, c0:c1]): the C++ adds read such arrays in place, row by row."""
    if a.flags.c_contiguous:
        return True
    return (
        a.ndim >= 2 and a.shape[0] > 0 and a[0].flags.c_contiguous and a.strides[0] >= a[0].nbytes
    )


def _threaded_add(a, b, name):
    """_C_cpu's add/add_ for same-shape, same-dtype float arrays of THREADED_MIN_SIZE values or
    more whose rows are contiguous (_rows_contiguous), else None."""
    if not (
        isinstance(a, np.ndarray)
        and isinstance(b, np.ndarray)
        and a.size >= CpuBackend.THREADED_MIN_SIZE
        and a.shape == b.shape
        and a.dtype == b.dtype
        and _rows_contiguous(a)
        and _rows_contiguous(b)
    ):
        return None
    return cpp_kernel(_C, name, a.dtype)


def add_arrays(a, b):
    """a + b (NumPy semantics, a new array): on the helpers' pool for the arrays _threaded_add
    takes (the same numbers as NumPy's +), else NumPy's +."""
    fn = _threaded_add(a, b, "add")
    return a + b if fn is None else fn(a, b)


def add_into(a, b):
    """a += b, in place (the autograd engine's gradient sums): on the helpers' pool for the
    arrays _threaded_add takes with a C-contiguous and writeable (the same numbers as NumPy's
    +=), else NumPy's +=. ``a`` may be any array type supporting +=."""
    fn = _threaded_add(a, b, "add_")
    if fn is not None and a.flags.c_contiguous and a.flags.writeable:
        fn(a, b)
        return a
    a += b
    return a
