"""The convolution kernels of the "emu" and "cuda" devices (csrc/kernels/conv2d*.cu), as a mixin of
:class:`~minicnn.backends._kernel_backend.KernelBackend` (which supplies ``_array``, ``_empty``,
``_ptr``, ``_checked``, ``_stream`` and ``C``).

Versions (csrc/kernels/kernels.h): 1 naive, 2 implicit GEMM, 3 the fast implicit GEMM, 4 tensor
cores (nvcuda::wmma). ``version=None`` picks: 4 for float16 / bfloat16 (their only version), 4 for
float32 when ``minicnn.backends.allow_tf32`` is True (TF32: inputs rounded to 10 fraction bits,
float32 sums; read at every call, like ``torch.backends.cudnn.allow_tf32``), else 3.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from ..ops.geometry import Conv2dGeometry
from ._kernel_dtypes import FLOAT32, HALF_DTYPES, acc_dtype

FORWARD, BACKWARD_DATA, BACKWARD_WEIGHT = 0, 1, 2  # the kernels' ConvPass


def conv_version(dtype, version=None) -> int:
    """The kernel version a conv of ``dtype`` runs (see the module docstring)."""
    if version is not None:
        return int(version)
    if dtype in HALF_DTYPES:
        return 4
    allow_tf32 = getattr(sys.modules[__package__], "allow_tf32", False)
    return 4 if dtype == FLOAT32 and allow_tf32 else 3


class KernelConvMixin:
    def _conv_args(self, op, g: Conv2dGeometry):
        """The kernels' checked Conv2dArgs for ``g`` (csrc/bindings.cpp: conv2d_check, the one
        check of the call), before anything is allocated: too large for their indices or grid ->
        ValueError."""
        if g.extra != (0, 0):
            raise ValueError(f"{op}: the kernels take symmetric padding; pass g.kernel_geometry")
        return self._checked(g, self.C.conv2d_check)

    def _conv_workspace(self, op, g, args, conv_pass, version, tile, splits, out_shape, dtype):
        """(splits, workspace or None): split-K slices (None: the kernels' choice by shape) and
        their partial outputs (splits, *out_shape); version 4: its backward weight's float32
        partials and channels-last copies (_bw_workspace), else _nhwc_workspace."""
        if splits is None:
            try:
                splits = self.C.conv2d_splits(args, conv_pass, int(version), int(tile))
            except ValueError as e:  # named for the op the caller called
                raise ValueError(str(e).replace("conv2d_splits", op, 1)) from None
        if version == 4 and conv_pass == BACKWARD_WEIGHT:
            return int(splits), self._empty(
                (self._bw_workspace(g, splits, dtype),), acc_dtype(dtype)
            )
        if version == 4:  # forward, backward data: the channels-last copies (or None)
            return int(splits), self._nhwc_workspace(conv_pass, g, dtype)
        work = self._empty((splits, *out_shape), dtype) if splits > 1 else None
        return int(splits), work

    def _nhwc_workspace(self, conv_pass, g, dtype):
        """Version 4's channels-last copies of both operands (csrc/kernels/conv2d_wmma_nhwc.cuh)
        when the reduction's channels per group fill 16-byte vectors (its nhwc_fits); else None:
        the kernels gather from NCHW."""
        vec = 16 // np.dtype(dtype).itemsize
        channels, first = (g.C, g.x_shape) if conv_pass == FORWARD else (g.K, g.y_shape)
        if (channels // g.G) % vec:
            return None
        return self._empty((math.prod(first) + math.prod(g.w_shape) + vec,), dtype)

    @staticmethod
    def _bw_workspace(g, splits, dtype):
        """float32 elements of version 4's backward-weight workspace: the partials (splits, K,
        C/G·R·S), then, where K/G and C/G fill 16-byte vectors, channels-last dy and x
        (csrc/kernels/conv2d_wmma_nhwc_bw.cuh) with room to align each."""
        size = np.dtype(dtype).itemsize
        partials = splits * math.prod(g.w_shape)
        if (g.K // g.G) % (16 // size) or (g.C // g.G) % (16 // size):
            return partials
        copies = (math.prod(g.y_shape) + math.prod(g.x_shape)) * size + 48
        return partials + 4 + copies // 4

    def _conv_pass(self, op, conv_pass, g, out_shape, first, second, options, bias=None):
        """Run conv pass ``op`` on (first, second) -> a new ``out_shape`` array of their dtype.

        first: (name, array, shape), second alike, converted to the first's dtype; options:
        (version, tile, splits)."""
        args = self._conv_args(op, g)
        a = self._array(op, first[0], first[1], shape=first[2])
        b = self._array(op, second[0], second[1], dtype=a.dtype, shape=second[2])
        version = conv_version(a.dtype, options[0])
        out = self._empty(out_shape, a.dtype)
        splits, work = self._conv_workspace(
            op, g, args, conv_pass, version, options[1], options[2], out_shape, a.dtype
        )
        ptrs = [self._ptr(out), self._ptr(a), self._ptr(b)]
        if conv_pass == FORWARD:
            ptrs.append(self._ptr(self._optional(op, "bias", bias, a.dtype, (g.K,))))
        if conv_pass == BACKWARD_WEIGHT:
            ptrs.insert(1, self._ptr(work))
            launch = (*ptrs, args, version, int(options[1]), splits, self._stream())
        else:
            launch = (
                *ptrs,
                args,
                version,
                int(options[1]),
                splits,
                self._ptr(work),
                self._stream(),
            )
        getattr(self.C, op)(self._dtype_name(a), *launch)
        return out

    def conv2d_forward(self, x, w, b, g: Conv2dGeometry, *, version=None, tile=0, splits=None):
        """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/G, R, S)) + b (K,) or None.

        version: see the module docstring. tile: 0 by shape, else 32, 64, 128 (versions 2, 3).
        splits: of the reduction (version 3; None: by shape)."""
        return self._conv_pass(
            "conv2d_forward", FORWARD, g, g.y_shape, ("x", x, g.x_shape),
            ("weight", w, g.w_shape), (version, tile, splits), bias=b,
        )  # fmt: skip

    def conv2d_backward_data(
        self, dout, w, g: Conv2dGeometry, *, version=None, tile=0, splits=None
    ):
        """dx (N, C, H, W): the transposed convolution of dout (N, K, P, Q) with w (K, C/G, R,
        S)."""
        return self._conv_pass(
            "conv2d_backward_data", BACKWARD_DATA, g, g.x_shape, ("dout", dout, g.y_shape),
            ("weight", w, g.w_shape), (version, tile, splits),
        )  # fmt: skip

    def conv2d_backward_weight(
        self, dout, x, g: Conv2dGeometry, *, version=None, tile=0, splits=None
    ):
        """dw (K, C/G, R, S) = Σ_{n, p, q} dout ⊗ windows of x, the reduction split in ``splits``
        slices (None: the kernels' choice) added deterministically."""
        return self._conv_pass(
            "conv2d_backward_weight", BACKWARD_WEIGHT, g, g.w_shape, ("dout", dout, g.y_shape),
            ("x", x, g.x_shape), (version, tile, splits),
        )  # fmt: skip

    def conv2d_backward_bias(self, dout):
        """db (K,) = Σ_{n, p, q} dout (N, K, P, Q)."""
        dout = self._array("conv2d_backward_bias", "dout", dout, ndim=4)
        N, K, P, Q = dout.shape
        db = self._empty((K,), dout.dtype)  # (K,)
        self.C.conv2d_backward_bias(
            self._dtype_name(dout), self._ptr(db), self._ptr(dout), N, K, P * Q, self._stream()
        )
        return db

    def conv2d_backward(self, dout, x, w, g: Conv2dGeometry, needs=(True, True, True)):
        """(dx, dw, db) for conv2d_forward, each computed only where ``needs`` says so (else
        None)."""
        dx = self.conv2d_backward_data(dout, w, g) if needs[0] else None
        dw = self.conv2d_backward_weight(dout, x, g) if needs[1] else None
        db = self.conv2d_backward_bias(dout) if needs[2] else None
        return dx, dw, db
