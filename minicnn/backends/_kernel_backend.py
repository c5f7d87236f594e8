"""What the "emu" and "cuda" backends share: checking arrays, allocating outputs, calling our kernels.

Both devices run the same CUDA kernels (csrc/kernels/*.cu) through the same pybind11 bindings
(csrc/bindings.cpp): on "cuda" compiled by nvcc into ``minicnn._C_cuda`` and fed CuPy arrays; on
"emu" compiled for the CPU emulator into ``minicnn._C_emu`` and fed NumPy arrays. A
:class:`KernelBackend` holds what differs — the array module, the extension, how to get a raw
pointer and a stream — and implements every kernel function of the backend interface once (the
names, arguments and results of ``numpy_backend``, whose docstrings give the math).

Before any launch each array is checked here: it must be an array of this device, inputs must be
float32 or float64 (the others are converted to the first input's dtype), shapes must agree, and
non-contiguous arrays are copied to contiguous ones (the kernels index flat NCHW memory). Outputs
are allocated here (``xp.empty``: CuPy's memory pool on "cuda"). Letters: N batch, C channels,
H x W input, P x Q output, R x S window.
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# The kernel functions every backend module provides (numpy_backend's names); the emu and cuda
# modules export these and the conv2d ones from their KernelBackend.
KERNELS = (
    "relu_forward", "relu_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "local_response_norm_forward", "local_response_norm_backward",
    "batch_norm_forward_training", "batch_norm_forward_inference",
    "batch_norm_backward_training", "batch_norm_backward_inference",
)
CONV_KERNELS = ("conv2d_forward", "conv2d_backward", "conv2d_backward_data", "conv2d_backward_weight",
                "conv2d_backward_bias")


class KernelBackend:
    """The kernel functions of one device, given its array module and compiled extension.

    name:      the device ("emu", "cuda")
    xp:        the array module (numpy, cupy)
    C:         the pybind11 extension (minicnn._C_emu, minicnn._C_cuda)
    pointer:   array -> its data address as an int
    stream:    () -> the stream handle to launch on, as an int (0: the default stream)
    """

    def __init__(self, name, xp, C, pointer, stream):
        self.name, self.xp, self.C = name, xp, C
        self._pointer, self._stream = pointer, stream

    # ---- checking and converting arrays -------------------------------------------------------
    def _array(self, op, what, a, dtype=None, shape=None, ndim=None):
        """``a`` as a C-contiguous array of this device, checked (see the module docstring).

        dtype None: ``a`` must be float32/float64 (it sets the dtype of the kernel); else ``a`` is
        converted to ``dtype``.
        """
        if not isinstance(a, self.xp.ndarray):
            raise TypeError(f"{op}: {what} must be a {self.xp.__name__} array on device {self.name!r}, "
                            f"got {type(a).__module__}.{type(a).__name__}")
        if dtype is None:
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{op}: {what} must be float32 or float64 (native byte order), "
                                f"got dtype {a.dtype}")
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
        return a.dtype.name  # "float32" / "float64": what the bindings dispatch on

    @staticmethod
    def _shape4(op, what, shape):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or min(shape) < 0:
            raise ValueError(f"{op}: {what} must be an (N, C, H, W) shape, got {shape}")
        return shape

    # ---- relu ---------------------------------------------------------------------------------
    def relu_forward(self, x):
        """y = max(x, 0)."""
        x = self._array("relu_forward", "x", x)
        y = self._empty(x.shape, x.dtype)
        self.C.relu_forward(self._dtype_name(x), self._ptr(y), self._ptr(x), x.size, self._stream())
        return y

    def relu_backward(self, dout, y):
        """dx = 0 where y <= 0, else dout."""
        op = "relu_backward"
        dout = self._array(op, "dout", dout)
        y = self._array(op, "y", y, dtype=dout.dtype, shape=dout.shape)
        dx = self._empty(dout.shape, dout.dtype)
        self.C.relu_backward(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), self._ptr(y), dout.size,
                             self._stream())
        return dx

    # ---- pooling ------------------------------------------------------------------------------
    @staticmethod
    def _geometry(x_shape, out_size, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        """The tuple the bindings take: (N, C, H, W, P, Q, R, S, sh, sw, ph, pw, dh, dw)."""
        values = (*x_shape, *out_size, *kernel_size, *stride, *padding, *dilation)
        return tuple(int(v) for v in values)

    def _pool_input(self, op, x):
        return self._array(op, "x", x, ndim=4)

    def _pool_dout(self, op, dout, x_shape):
        x_shape = self._shape4(op, "x_shape", x_shape)
        dout = self._array(op, "dout", dout, ndim=4)
        if tuple(dout.shape[:2]) != x_shape[:2]:
            raise ValueError(f"{op}: dout {tuple(dout.shape)} and x_shape {x_shape} disagree on (N, C)")
        return dout, x_shape

    def max_pool2d_forward(self, x, kernel_size, stride, padding, dilation, out_size):
        """(y, argmax): the max of every window and the flat h*W + w index of its first maximum."""
        op = "max_pool2d_forward"
        x = self._pool_input(op, x)
        N, C = x.shape[:2]
        y = self._empty((N, C, *out_size), x.dtype)                    # (N, C, P, Q)
        argmax = self._empty((N, C, *out_size), np.int64)              # (N, C, P, Q)
        g = self._geometry(x.shape, out_size, kernel_size, stride, padding, dilation)
        self.C.max_pool2d_forward(self._dtype_name(x), self._ptr(y), self._ptr(argmax), self._ptr(x), g,
                                  self._stream())
        return y, argmax

    def max_pool2d_backward(self, dout, argmax, x_shape, kernel_size, stride, padding, dilation, *,
                            version=2):
        """dx[argmax] += dout. version 1: scatter with atomics, 2: gather (deterministic)."""
        op = "max_pool2d_backward"
        dout, x_shape = self._pool_dout(op, dout, x_shape)
        argmax = self._array(op, "argmax", argmax, dtype=np.int64, shape=dout.shape)
        dx = self._empty(x_shape, dout.dtype)                          # (N, C, H, W)
        g = self._geometry(x_shape, dout.shape[2:], kernel_size, stride, padding, dilation)
        self.C.max_pool2d_backward(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), self._ptr(argmax), g,
                                   int(version), self._stream())
        return dx

    def avg_pool2d_forward(self, x, kernel_size, stride, padding, out_size, count_include_pad=True,
                           divisor_override=None):
        """y = Σ_window x / divisor."""
        op = "avg_pool2d_forward"
        x = self._pool_input(op, x)
        y = self._empty((*x.shape[:2], *out_size), x.dtype)            # (N, C, P, Q)
        g = self._geometry(x.shape, out_size, kernel_size, stride, padding)
        self.C.avg_pool2d_forward(self._dtype_name(x), self._ptr(y), self._ptr(x), g, bool(count_include_pad),
                                  int(divisor_override or 0), self._stream())
        return y

    def avg_pool2d_backward(self, dout, x_shape, kernel_size, stride, padding, count_include_pad=True,
                            divisor_override=None):
        """dx = Σ over the windows reading a pixel of dout / divisor."""
        op = "avg_pool2d_backward"
        dout, x_shape = self._pool_dout(op, dout, x_shape)
        dx = self._empty(x_shape, dout.dtype)                          # (N, C, H, W)
        g = self._geometry(x_shape, dout.shape[2:], kernel_size, stride, padding)
        self.C.avg_pool2d_backward(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), g,
                                   bool(count_include_pad), int(divisor_override or 0), self._stream())
        return dx

    def adaptive_avg_pool2d_forward(self, x, out_size):
        """y[p, q] = mean of bin (p, q)."""
        op = "adaptive_avg_pool2d_forward"
        x = self._pool_input(op, x)
        y = self._empty((*x.shape[:2], *out_size), x.dtype)            # (N, C, P, Q)
        g = self._geometry(x.shape, out_size)
        self.C.adaptive_avg_pool2d_forward(self._dtype_name(x), self._ptr(y), self._ptr(x), g, self._stream())
        return y

    def adaptive_avg_pool2d_backward(self, dout, x_shape):
        """dx = Σ over the bins holding a pixel of dout / bin area."""
        op = "adaptive_avg_pool2d_backward"
        dout, x_shape = self._pool_dout(op, dout, x_shape)
        dx = self._empty(x_shape, dout.dtype)                          # (N, C, H, W)
        g = self._geometry(x_shape, dout.shape[2:])
        self.C.adaptive_avg_pool2d_backward(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), g,
                                            self._stream())
        return dx

    # ---- local response normalization -------------------------------------------------------------
    @staticmethod
    def _nchw(shape):
        """(N, C, H·W) of an (N, C, H, W) shape."""
        N, C, H, W = shape
        return N, C, H * W

    def local_response_norm_forward(self, x, size, alpha, beta, k):
        """(y, scale): y = x · scale^-β, scale = k + α/size · Σ_window x²."""
        op = "local_response_norm_forward"
        x = self._array(op, "x", x, ndim=4)
        y = self._empty(x.shape, x.dtype)                              # (N, C, H, W)
        scale = self._empty(x.shape, x.dtype)                          # (N, C, H, W)
        self.C.local_response_norm_forward(self._dtype_name(x), self._ptr(y), self._ptr(scale), self._ptr(x),
                                           *self._nchw(x.shape), int(size), float(alpha), float(beta), float(k),
                                           self._stream())
        return y, scale

    def local_response_norm_backward(self, dout, x, scale, size, alpha, beta):
        """The exact gradient (see csrc/kernels/lrn.cu)."""
        op = "local_response_norm_backward"
        dout = self._array(op, "dout", dout, ndim=4)
        x = self._array(op, "x", x, dtype=dout.dtype, shape=dout.shape)
        scale = self._array(op, "scale", scale, dtype=dout.dtype, shape=dout.shape)
        dx = self._empty(dout.shape, dout.dtype)                       # (N, C, H, W)
        self.C.local_response_norm_backward(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), self._ptr(x),
                                            self._ptr(scale), *self._nchw(dout.shape), int(size), float(alpha),
                                            float(beta), self._stream())
        return dx

    # ---- batch normalization ----------------------------------------------------------------------
    def _channel_vectors(self, op, x, **vectors):
        """Each (C,) vector converted to x's dtype and made contiguous (None stays None)."""
        C = x.shape[1]
        return [self._optional(op, k, v, x.dtype, (C,)) for k, v in vectors.items()]

    def _running(self, op, what, buf, x):
        """A running-stat buffer the kernel can update in place: the buffer itself if it can, else a
        contiguous copy of the right dtype (then copied back by :meth:`_write_back`)."""
        if buf is None:
            return None
        if not isinstance(buf, self.xp.ndarray):
            raise TypeError(f"{op}: {what} must be a {self.xp.__name__} array, got {type(buf).__name__}")
        if tuple(buf.shape) != (x.shape[1],):
            raise ValueError(f"{op}: {what} must have shape ({x.shape[1]},), got {tuple(buf.shape)}")
        if not getattr(buf.flags, "writeable", True):
            raise ValueError(f"{op}: {what} is read-only, but training updates it in place")
        if buf.dtype == x.dtype and buf.flags.c_contiguous:
            return buf
        return self.xp.ascontiguousarray(buf, dtype=x.dtype)

    @staticmethod
    def _write_back(buf, work):
        if buf is not None and work is not buf:
            buf[...] = work

    def batch_norm_forward_training(self, x, weight, bias, running_mean, running_var, momentum, eps):
        """(y, mean, invstd) with the batch statistics; running_mean/var updated in place."""
        op = "batch_norm_forward_training"
        x = self._array(op, "x", x, ndim=4)
        weight, bias = self._channel_vectors(op, x, weight=weight, bias=bias)
        rm = self._running(op, "running_mean", running_mean, x)
        rv = self._running(op, "running_var", running_var, x)
        C = x.shape[1]
        y = self._empty(x.shape, x.dtype)                              # (N, C, H, W)
        mean, invstd = self._empty((C,), x.dtype), self._empty((C,), x.dtype)
        self.C.batch_norm_forward_training(
            self._dtype_name(x), self._ptr(y), self._ptr(mean), self._ptr(invstd), self._ptr(rm), self._ptr(rv),
            self._ptr(x), self._ptr(weight), self._ptr(bias), *self._nchw(x.shape), float(momentum), float(eps),
            self._stream())
        self._write_back(running_mean, rm)
        self._write_back(running_var, rv)
        return y, mean, invstd

    def batch_norm_forward_inference(self, x, weight, bias, running_mean, running_var, eps):
        """(y, mean, invstd) with the running statistics (mean, invstd: new (C,) arrays)."""
        op = "batch_norm_forward_inference"
        x = self._array(op, "x", x, ndim=4)
        weight, bias, rm, rv = self._channel_vectors(op, x, weight=weight, bias=bias, running_mean=running_mean,
                                                     running_var=running_var)
        if rm is None or rv is None:
            raise ValueError(f"{op}: running_mean and running_var are required")
        C = x.shape[1]
        y = self._empty(x.shape, x.dtype)                              # (N, C, H, W)
        mean, invstd = self._empty((C,), x.dtype), self._empty((C,), x.dtype)
        self.C.batch_norm_forward_inference(
            self._dtype_name(x), self._ptr(y), self._ptr(mean), self._ptr(invstd), self._ptr(x), self._ptr(weight),
            self._ptr(bias), self._ptr(rm), self._ptr(rv), *self._nchw(x.shape), float(eps), self._stream())
        return y, mean, invstd

    def _batch_norm_backward(self, op, dout, x, weight, mean, invstd, training):
        dout = self._array(op, "dout", dout, ndim=4)
        x = self._array(op, "x", x, dtype=dout.dtype, shape=dout.shape)
        weight, mean, invstd = self._channel_vectors(op, x, weight=weight, mean=mean, invstd=invstd)
        if mean is None or invstd is None:
            raise ValueError(f"{op}: mean and invstd (from the forward) are required")
        C = x.shape[1]
        dx = self._empty(x.shape, x.dtype)                             # (N, C, H, W)
        dweight, dbias = self._empty((C,), x.dtype), self._empty((C,), x.dtype)
        self.C.batch_norm_backward(
            self._dtype_name(x), self._ptr(dx), self._ptr(dweight), self._ptr(dbias), self._ptr(dout), self._ptr(x),
            self._ptr(weight), self._ptr(mean), self._ptr(invstd), *self._nchw(x.shape), bool(training),
            self._stream())
        return dx, dweight, dbias

    def batch_norm_backward_training(self, dout, x, weight, mean, invstd):
        """(dx, dweight, dbias) through the batch statistics."""
        return self._batch_norm_backward("batch_norm_backward_training", dout, x, weight, mean, invstd, True)

    def batch_norm_backward_inference(self, dout, x, weight, mean, invstd):
        """(dx, dweight, dbias) with fixed statistics: dx = dy · weight · invstd."""
        return self._batch_norm_backward("batch_norm_backward_inference", dout, x, weight, mean, invstd, False)


    # ---- convolution (csrc/kernels/conv2d.cu) -----------------------------------------------------
    def _conv_geometry(self, op, x_shape, w_shape, stride, padding, dilation, groups):
        """(geometry tuple of the bindings, (P, Q)), checked before anything is allocated: shapes and
        groups as in minicnn/ops/conv.py, then by the kernels (index sizes, grid limits)."""
        N, C, H, W = self._shape4(op, "x shape", x_shape)
        K, Cg, R, S = self._shape4(op, "weight shape", w_shape)
        G = int(groups)
        if G < 1 or K < 1 or Cg < 1 or R < 1 or S < 1 or K % G or Cg * G != C:
            raise ValueError(f"{op}: input {(N, C, H, W)} and weight {(K, Cg, R, S)} with groups={G} disagree "
                             f"(need C = weight.shape[1] * groups, K divisible by groups, a non-empty kernel)")
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
            raise ValueError(f"{op}: stride and dilation must be >= 1 and padding >= 0, got "
                             f"{stride}, {dilation}, {padding}")
        P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
        Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
        if P < 1 or Q < 1:
            raise ValueError(f"{op}: kernel {(R, S)} with dilation {dilation} is larger than the padded input "
                             f"{(H + 2 * ph, W + 2 * pw)}")
        geometry = tuple(int(v) for v in (N, C, H, W, K, P, Q, R, S, sh, sw, ph, pw, dh, dw, G))
        self.C.conv2d_check(geometry)  # ValueError: too large for the kernels' indices or grid
        return geometry, (P, Q)

    def _conv_workspace(self, g, conv_pass, version, tile, splits, out_shape, dtype):
        """(splits, workspace or None): split-K slices (None: the kernels' choice by shape) and their
        partial outputs (splits, *out_shape)."""
        if splits is None:
            splits = self.C.conv2d_splits(g, conv_pass, int(version), int(tile))
        work = self._empty((splits, *out_shape), dtype) if splits > 1 else None
        return int(splits), work

    def conv2d_forward(self, x, w, b, stride, padding, dilation, groups, *, version=3, tile=0, splits=None):
        """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/G, R, S)) + b (K,) or None.

        version 1: the naive kernel; 2: implicit GEMM; 3: the fast implicit GEMM. tile: 0 by shape,
        else 32, 64, 128. splits: of the reduction (version 3; None: by shape)."""
        op = "conv2d_forward"
        g, (P, Q) = self._conv_geometry(op, x.shape, w.shape, stride, padding, dilation, groups)
        x = self._array(op, "x", x, ndim=4)
        w = self._array(op, "weight", w, dtype=x.dtype)
        b = self._optional(op, "bias", b, x.dtype, (w.shape[0],))
        y = self._empty((x.shape[0], w.shape[0], P, Q), x.dtype)       # (N, K, P, Q)
        splits, work = self._conv_workspace(g, 0, version, tile, splits, y.shape, x.dtype)
        self.C.conv2d_forward(self._dtype_name(x), self._ptr(y), self._ptr(x), self._ptr(w), self._ptr(b), g,
                              int(version), int(tile), splits, self._ptr(work), self._stream())
        return y

    def conv2d_backward_data(self, dout, w, x_shape, stride, padding, dilation, groups, *, version=3, tile=0,
                             splits=None):
        """dx (N, C, H, W): the transposed convolution of dout (N, K, P, Q) with w (K, C/G, R, S)."""
        op = "conv2d_backward_data"
        g, PQ = self._conv_geometry(op, x_shape, w.shape, stride, padding, dilation, groups)
        dout = self._array(op, "dout", dout, shape=(g[0], g[4], *PQ))
        w = self._array(op, "weight", w, dtype=dout.dtype)
        dx = self._empty(g[:4], dout.dtype)                            # (N, C, H, W)
        splits, work = self._conv_workspace(g, 1, version, tile, splits, dx.shape, dout.dtype)
        self.C.conv2d_backward_data(self._dtype_name(dout), self._ptr(dx), self._ptr(dout), self._ptr(w), g,
                                    int(version), int(tile), splits, self._ptr(work), self._stream())
        return dx

    def conv2d_backward_weight(self, dout, x, w_shape, stride, padding, dilation, groups, *, version=3, tile=0,
                               splits=None):
        """dw (K, C/G, R, S) = Σ_{n, p, q} dout ⊗ windows of x, the reduction split in ``splits``
        slices (None: the kernels' choice) added deterministically."""
        op = "conv2d_backward_weight"
        g, PQ = self._conv_geometry(op, x.shape, w_shape, stride, padding, dilation, groups)
        dout = self._array(op, "dout", dout, shape=(g[0], g[4], *PQ))
        x = self._array(op, "x", x, dtype=dout.dtype)
        dw = self._empty(w_shape, dout.dtype)                          # (K, C/G, R, S)
        splits, work = self._conv_workspace(g, 2, version, tile, splits, w_shape, dout.dtype)
        self.C.conv2d_backward_weight(self._dtype_name(dout), self._ptr(dw), self._ptr(work), self._ptr(dout),
                                      self._ptr(x), g, int(version), int(tile), splits, self._stream())
        return dw

    def conv2d_backward_bias(self, dout):
        """db (K,) = Σ_{n, p, q} dout (N, K, P, Q)."""
        dout = self._array("conv2d_backward_bias", "dout", dout, ndim=4)
        N, K, P, Q = dout.shape
        db = self._empty((K,), dout.dtype)                             # (K,)
        self.C.conv2d_backward_bias(self._dtype_name(dout), self._ptr(db), self._ptr(dout), N, K, P * Q,
                                    self._stream())
        return db

    def conv2d_backward(self, dout, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
        """(dx, dw, db) for conv2d_forward, each computed only where ``needs`` says so (else None)."""
        hyper = (stride, padding, dilation, groups)
        dx = self.conv2d_backward_data(dout, w, x.shape, *hyper) if needs[0] else None
        dw = self.conv2d_backward_weight(dout, x, w.shape, *hyper) if needs[1] else None
        db = self.conv2d_backward_bias(dout) if needs[2] else None
        return dx, dw, db


def export(backend, namespace, conv=None):
    """Put ``backend``'s kernel functions and the conv2d functions of ``conv`` (default: the backend's
    own kernels) into a module namespace."""
    conv = backend if conv is None else conv
    for name in KERNELS:
        namespace[name] = getattr(backend, name)
    for name in CONV_KERNELS:
        namespace[name] = getattr(conv, name)
