"""What the "emu" and "cuda" backends share: checking arrays, allocating outputs, calling our
kernels.

Both devices run the same CUDA kernels (csrc/kernels/*.cu) through the same pybind11 bindings
(csrc/bindings.cpp): on "cuda" compiled by nvcc into ``minicnn._C_cuda`` and fed CuPy arrays; on
"emu" compiled for the CPU emulator into ``minicnn._C_emu`` and fed NumPy arrays. A
:class:`KernelBackend` implements every kernel of the backend interface (interface.py, which
states the math) once; its subclasses ``EmuBackend`` and ``CudaBackend`` say what differs: the
array module, the extension, how to get a raw pointer and a stream.

Before any launch each array is checked here: it must be an array of this device, inputs must be
float32, float64, float16 or bfloat16 (the others are converted to the first input's
dtype), shapes must agree, and
non-contiguous arrays are copied to contiguous ones (the kernels index flat NCHW memory). Outputs
are allocated here (``xp.empty``: CuPy's memory pool on "cuda"). Convolutions and poolings come
with the geometry their op computed and checked (minicnn/ops/geometry.py); the arrays are checked
against it here, since a kernel trusts it. Letters: N batch, C channels, H x W input, P x Q
output, R x S window.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..ops.geometry import Pool2dGeometry
from . import _transfers
from ._kernel_conv import KernelConvMixin
from ._kernel_dtypes import FLOAT_DTYPES, acc_dtype
from ._kernel_optim import KernelOptimMixin

INT32_MAX = 2**31 - 1


class KernelBackend(KernelConvMixin, KernelOptimMixin):
    """The kernels of a device that runs csrc/kernels/*.cu. A subclass sets

    name:          the device ("emu", "cuda")
    xp:            the array module (numpy, cupy)
    C:             the pybind11 extension (minicnn._C_emu, minicnn._C_cuda)
    unavailable:   None when the device works here, else why not
    _to_host:      array -> a NumPy array of its values (to_numpy)
    _to_device:    NumPy array -> a C-contiguous array of this device (from_numpy)
    _pointer:      array -> its data address as an int
    _stream:       () -> the stream handle to launch on, as an int (0: the default stream)
    """

    name: str
    xp = None
    C = None
    unavailable: Optional[str] = None

    def _pointer(self, a) -> int:
        raise NotImplementedError

    def _stream(self) -> int:
        raise NotImplementedError

    def __init__(self):
        self._args = {}  # geometry -> its checked kernel arguments (forward and backward share)

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        return cls.unavailable

    def to_numpy(self, a):
        """A NumPy array of a's values; counted as a device→host read (backends/_transfers.py)."""
        return _transfers.to_host(self.name, a, self._to_host)

    def from_numpy(self, a):
        """An array of this device holding a NumPy array's values, C-contiguous; counted."""
        return _transfers.to_device(self.name, a, self._to_device)

    def _checked(self, g, check):
        """check(g), once per distinct geometry: a layer's forward and backward, every step."""
        args = self._args.get(g)
        if args is None:
            if len(self._args) >= 1024:
                self._args.clear()
            args = self._args[g] = check(g)
        return args

    def set_num_threads(self, n: int) -> None:
        """No host-side pool: the kernels run on the device (the emulator runs one block at a
        time)."""

    def get_num_threads(self) -> int:
        return 1

    def add(self, a, b):
        """a + b: generic array work is the array module's (NumPy on emu, CuPy on cuda)."""
        return a + b

    def concatenate(self, arrays, axis):
        return self.xp.concatenate(arrays, axis=axis)

    # ---- checking and converting arrays -------------------------------------------------------
    def _array(self, op, what, a, dtype=None, shape=None, ndim=None):
        """``a`` as a C-contiguous array of this device, checked (see the module docstring).

        dtype None: ``a`` must be float32/float64 (it sets the dtype of the kernel); else ``a`` is
        converted to ``dtype``.
        """
        if not isinstance(a, self.xp.ndarray):
            raise TypeError(
                f"{op}: {what} must be a {self.xp.__name__} array on device {self.name!r}, "
                f"got {type(a).__module__}.{type(a).__name__}"
            )
        if dtype is None:
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(
                    f"{op}: {what} must be float32 or float64, or float16 / bfloat16 (native "
                    f"byte order), got dtype {a.dtype}"
                )
        elif a.dtype != dtype:
            a = a.astype(dtype)
        if ndim is not None and a.ndim != ndim:
            raise ValueError(f"{op}: {what} must be {ndim}-D, got shape {tuple(a.shape)}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ValueError(f"{op}: {what} must have shape {tuple(shape)}, got {tuple(a.shape)}")
        return a if a.flags.c_contiguous else self.xp.ascontiguousarray(a)

    def _optional(self, op, what, a, dtype, shape):
        return None if a is None else self._array(op, what, a, dtype=dtype, shape=shape)

    def _ptr(self, a):
        """Data address of a checked array, 0 for None."""
        return 0 if a is None else self._pointer(a)

    def _empty(self, shape, dtype):
        return self.xp.empty(tuple(int(s) for s in shape), dtype=dtype)

    @staticmethod
    def _dtype_name(a):
        return a.dtype.name  # "float32", "float64", "float16", "bfloat16": the bindings' dispatch

    def _launch(self, kernel, dtype_of, *args):
        """``C.<kernel>(dtype, *args, stream)``, the kernel instantiated for ``dtype_of``'s dtype;
        arrays in ``args`` are passed as data pointers (None as 0), other values as they are."""
        xp = self.xp
        args = [self._ptr(a) if a is None or isinstance(a, xp.ndarray) else a for a in args]
        getattr(self.C, kernel)(self._dtype_name(dtype_of), *args, self._stream())

    # ---- relu ---------------------------------------------------------------------------------
    def relu_forward(self, x):
        """y = max(x, 0)."""
        x = self._array("relu_forward", "x", x)
        y = self._empty(x.shape, x.dtype)
        self._launch("relu_forward", x, y, x, x.size)
        return y

    def relu_backward(self, dout, y):
        """dx = 0 where y <= 0, else dout."""
        op = "relu_backward"
        dout = self._array(op, "dout", dout)
        y = self._array(op, "y", y, dtype=dout.dtype, shape=dout.shape)
        dx = self._empty(dout.shape, dout.dtype)
        self._launch(op, dout, dx, dout, y, dout.size)
        return dx

    # ---- pooling ------------------------------------------------------------------------------
    def _pool_args(self, op, g: Pool2dGeometry):
        """The kernels' checked Pool2dArgs for ``g`` (csrc/bindings.cpp), before any allocation."""
        return self._checked(g, self.C.pool2d_check)

    def _pool_input(self, op, x, g: Pool2dGeometry):
        return self._array(op, "x", x, shape=g.x_shape)

    def _pool_dout(self, op, dout, g: Pool2dGeometry):
        return self._array(op, "dout", dout, shape=g.y_shape)

    def max_pool2d_forward(self, x, g: Pool2dGeometry):
        """(y, argmax): the max of every window and the flat h*W + w index of its first maximum."""
        op = "max_pool2d_forward"
        args = self._pool_args(op, g)
        x = self._pool_input(op, x, g)
        y = self._empty(g.y_shape, x.dtype)  # (N, C, P, Q)
        argmax = self._empty(g.y_shape, np.int64)  # (N, C, P, Q)
        self._launch(op, x, y, argmax, x, args)
        return y, argmax

    def max_pool2d_backward(self, dout, argmax, g: Pool2dGeometry, *, version=2):
        """dx[argmax] += dout. version 1: scatter with atomics, 2: gather (deterministic)."""
        op = "max_pool2d_backward"
        args = self._pool_args(op, g)
        dout = self._pool_dout(op, dout, g)
        argmax = self._array(op, "argmax", argmax, dtype=np.int64, shape=dout.shape)
        dx = self._empty(g.x_shape, dout.dtype)  # (N, C, H, W)
        self._launch(op, dout, dx, dout, argmax, args, int(version))
        return dx

    def avg_pool2d_forward(self, x, g: Pool2dGeometry):
        """y = Σ_window x / divisor."""
        return self._pool_kernel("avg_pool2d_forward", x, g, *self._divisor(g))

    def avg_pool2d_backward(self, dout, g: Pool2dGeometry):
        """dx = Σ over the windows reading a pixel of dout / divisor."""
        return self._pool_kernel("avg_pool2d_backward", dout, g, *self._divisor(g))

    @staticmethod
    def _divisor(g: Pool2dGeometry):
        """The kernels' divisor options: count_include_pad, divisor_override (0: none)."""
        return g.count_include_pad, g.divisor_override or 0

    def _pool_kernel(self, op, a, g: Pool2dGeometry, *options):
        """Run the pooling kernel ``op``(dtype, out, a, args, *options, stream): a ``_forward``
        of x into a new (N, C, P, Q) y, a ``_backward`` of dout into a new (N, C, H, W) dx."""
        args = self._pool_args(op, g)
        forward = op.endswith("_forward")
        a = self._pool_input(op, a, g) if forward else self._pool_dout(op, a, g)
        out = self._empty(g.y_shape if forward else g.x_shape, a.dtype)
        self._launch(op, a, out, a, args, *options)
        return out

    def adaptive_avg_pool2d_forward(self, x, g: Pool2dGeometry):
        """y[p, q] = mean of bin (p, q)."""
        return self._pool_kernel("adaptive_avg_pool2d_forward", x, g)

    def adaptive_avg_pool2d_backward(self, dout, g: Pool2dGeometry):
        """dx = Σ over the bins holding a pixel of dout / bin area."""
        return self._pool_kernel("adaptive_avg_pool2d_backward", dout, g)

    # ---- local response normalization ------------------------------------------------------------
    @staticmethod
    def _nchw(shape):
        """(N, C, H·W) of an (N, C, H, W) shape."""
        N, C, H, W = shape
        return N, C, H * W

    def local_response_norm_forward(self, x, size, alpha, beta, k):
        """(y, scale): y = x · scale^-β, scale = k + α/size · Σ_window x²."""
        op = "local_response_norm_forward"
        x = self._array(op, "x", x, ndim=4)
        y, scale = self._empty(x.shape, x.dtype), self._empty(x.shape, x.dtype)  # (N, C, H, W)
        hyper = int(size), float(alpha), float(beta), float(k)
        self._launch(op, x, y, scale, x, *self._nchw(x.shape), *hyper)
        return y, scale

    def local_response_norm_backward(self, dout, x, scale, size, alpha, beta):
        """The exact gradient (see csrc/kernels/lrn.cu)."""
        op = "local_response_norm_backward"
        dout = self._array(op, "dout", dout, ndim=4)
        x = self._array(op, "x", x, dtype=dout.dtype, shape=dout.shape)
        scale = self._array(op, "scale", scale, dtype=dout.dtype, shape=dout.shape)
        dx = self._empty(dout.shape, dout.dtype)  # (N, C, H, W)
        hyper = int(size), float(alpha), float(beta)
        self._launch(op, dout, dx, dout, x, scale, *self._nchw(dout.shape), *hyper)
        return dx

    # ---- batch normalization ---------------------------------------------------------------------
    def _batch_norm_outputs(self, x):
        """A new array like x and two new (C,) arrays of acc_dtype(x.dtype): (y, mean, invstd) or
        (dx, dweight, dbias)."""
        C, acc = x.shape[1], acc_dtype(x.dtype)
        return self._empty(x.shape, x.dtype), self._empty((C,), acc), self._empty((C,), acc)

    def _channel_vectors(self, op, x, **vectors):
        """Each (C,) vector converted to acc_dtype(x.dtype) and made contiguous (None stays None):
        float32 beside float16 / bfloat16 x (cuDNN's mixed batch norm)."""
        C = x.shape[1]
        return [self._optional(op, k, v, acc_dtype(x.dtype), (C,)) for k, v in vectors.items()]

    def _running(self, op, what, buf, x):
        """A running-stat buffer the kernel can update in place: the buffer itself if it can, else a
        contiguous copy of the right dtype (then copied back by :meth:`_write_back`)."""
        if buf is None:
            return None
        if not isinstance(buf, self.xp.ndarray):
            raise TypeError(
                f"{op}: {what} must be a {self.xp.__name__} array, got {type(buf).__name__}"
            )
        if tuple(buf.shape) != (x.shape[1],):
            raise ValueError(
                f"{op}: {what} must have shape ({x.shape[1]},), got {tuple(buf.shape)}"
            )
        if not getattr(buf.flags, "writeable", True):
            raise ValueError(f"{op}: {what} is read-only, but training updates it in place")
        if buf.dtype == acc_dtype(x.dtype) and buf.flags.c_contiguous:
            return buf
        return self.xp.ascontiguousarray(buf, dtype=acc_dtype(x.dtype))

    @staticmethod
    def _write_back(buf, work):
        if buf is not None and work is not buf:
            buf[...] = work

    def batch_norm_forward_training(
        self, x, weight, bias, running_mean, running_var, momentum, eps, relu=False
    ):
        """(y, mean, invstd) with the batch statistics; running_mean/var updated in place; y then
        goes through relu_forward when ``relu`` (no fused kernel here)."""
        op = "batch_norm_forward_training"
        x = self._array(op, "x", x, ndim=4)
        weight, bias = self._channel_vectors(op, x, weight=weight, bias=bias)
        rm = self._running(op, "running_mean", running_mean, x)
        rv = self._running(op, "running_var", running_var, x)
        y, mean, invstd = self._batch_norm_outputs(x)  # (N, C, H, W), (C,), (C,)
        stats = float(momentum), float(eps)
        self._launch(op, x, y, mean, invstd, rm, rv, x, weight, bias, *self._nchw(x.shape), *stats)
        self._write_back(running_mean, rm)
        self._write_back(running_var, rv)
        return (self.relu_forward(y) if relu else y), mean, invstd

    def batch_norm_forward_inference(
        self, x, weight, bias, running_mean, running_var, eps, relu=False
    ):
        """(y, mean, invstd) with the running statistics (mean, invstd: new (C,) arrays); y then
        goes through relu_forward when ``relu``."""
        op = "batch_norm_forward_inference"
        x = self._array(op, "x", x, ndim=4)
        weight, bias, rm, rv = self._channel_vectors(
            op, x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var
        )
        if rm is None or rv is None:
            raise ValueError(f"{op}: running_mean and running_var are required")
        y, mean, invstd = self._batch_norm_outputs(x)  # (N, C, H, W), (C,), (C,)
        inputs = x, weight, bias, rm, rv
        self._launch(op, x, y, mean, invstd, *inputs, *self._nchw(x.shape), float(eps))
        return (self.relu_forward(y) if relu else y), mean, invstd

    def batch_norm_backward(self, dout, x, weight, mean, invstd, training, relu_output=None):
        """(dx, dweight, dbias): through the batch statistics when ``training``, else with fixed
        statistics (dx = dy · weight · invstd); dy = relu_backward(dout, relu_output) first when
        the forward ran with relu (no fused kernel here)."""
        op = "batch_norm_backward"
        if relu_output is not None:
            dout = self.relu_backward(dout, relu_output)
        dout = self._array(op, "dout", dout, ndim=4)
        x = self._array(op, "x", x, dtype=dout.dtype, shape=dout.shape)
        weight, mean, invstd = self._channel_vectors(op, x, weight=weight, mean=mean, invstd=invstd)
        if mean is None or invstd is None:
            raise ValueError(f"{op}: mean and invstd (from the forward) are required")
        dx, dweight, dbias = self._batch_norm_outputs(x)  # (N, C, H, W), (C,), (C,)
        grads, saved = (dx, dweight, dbias), (dout, x, weight, mean, invstd)
        self._launch(op, x, *grads, *saved, *self._nchw(x.shape), bool(training))
        return dx, dweight, dbias
