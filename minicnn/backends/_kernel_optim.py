"""The "emu" and "cuda" devices' dropout mask and fused optimizer updates (a KernelBackend mixin).

dropout_mask launches csrc/kernels/random.cu's Philox kernel with a 64-bit key drawn from
minicnn.random's generator: the mask is made on the device, nothing is copied to it.

sgd_update / adam_update launch csrc/kernels/optim.cu once for all the tensors of a call (one
parameter group, one dtype): a table of (param, grad, buffers…, n, first chunk) rows, built here
from the arrays' pointers and copied to the device by the launcher, ordered on the stream before
the kernel (an upload, never a read: no sync); a table already on the device is not copied again
(the same arrays as a recent step: parameters and buffers stay put, and gradients do when they
are zeroed in place, ``zero_grad(set_to_none=False)``, or come back to the same addresses).
Parameters and buffers are updated in place, so they must be contiguous arrays of this device and
of one dtype. float16 and bfloat16 (which the kernels don't take) run the per-tensor array code
of _np_optim.py on this device instead.
"""

from __future__ import annotations

import math

import numpy as np

from .. import random as _random
from . import _transfers
from ._np_optim import adam_per_tensor, sgd_per_tensor

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class KernelOptimMixin:
    """dropout_mask, sgd_update and adam_update of a KernelBackend (see the module docstring)."""

    def dropout_mask(self, shape, p, dtype):
        """m / (1 − p) of ``dtype`` from Philox4x32-10 keyed by one draw of minicnn.random."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dropout_mask: dtype must be floating point, got {dtype}")
        if dtype not in _FLOATS:  # float16, bfloat16: the 0/1 mask in float32, then scaled
            keep = self._philox_mask(shape, p, np.dtype(np.float32), 1.0)
            return keep.astype(dtype) / dtype.type(1.0 - p)
        return self._philox_mask(shape, p, dtype, float(np.asarray(1, dtype) / dtype.type(1 - p)))

    def _philox_mask(self, shape, p, dtype, scale):
        mask = self.xp.empty(tuple(shape), dtype)
        self.C.dropout_mask(
            dtype.name,
            mask=self._pointer(mask),
            n=mask.size,
            threshold=_random.dropout_threshold(p),
            scale=scale,
            seed=_random.draw_seed(),
            stream=self._stream(),
        )
        return mask

    @staticmethod
    def _unfused(params):
        """A dtype the kernels don't take (float16, bfloat16): per-tensor array code instead."""
        return bool(params) and params[0].dtype.kind == "f" and params[0].dtype not in _FLOATS

    def _optim_table(self, op, columns):
        """(device table, host table or None, chunks, dtype name) for tensors given column-wise:
        columns [params, grads, buffer a, …], each a list with one array (or None) per tensor.
        The host table is None when the same table is on the device already (kept for the last
        16 distinct tables, per stream: the launch that copied it is ordered before)."""
        params = columns[0]
        dtype = params[0].dtype if params else np.dtype(np.float32)
        if dtype not in _FLOATS:
            raise TypeError(f"{op}: parameters must be float32 or float64, got {dtype}")
        chunk = self.C.optim_chunk_size
        host = np.zeros((len(params), self.C.optim_table_columns), np.int64)
        first = 0
        for i, param in enumerate(params):
            for c, column in enumerate(columns):
                host[i, c] = self._optim_pointer(op, c, i, column[i], param, dtype)
            host[i, 5], host[i, 6] = param.size, first
            first += -(-param.size // chunk)
        tables = self.__dict__.setdefault("_optim_tables", {})
        key = (op, self._stream(), host.tobytes())
        if key in tables:
            return tables[key], None, first, dtype.name
        if len(tables) >= 16:
            tables.pop(next(iter(tables)))
        _transfers.record_upload(self.name, "pointer table", host)
        tables[key] = self.xp.empty(host.shape, np.int64)
        return tables[key], host, first, dtype.name

    def _optim_pointer(self, op, column, i, a, param, dtype):
        if a is None:
            return 0
        what = ("parameter", "gradient", "buffer")[min(column, 2)]
        if not isinstance(a, self.xp.ndarray) or a.dtype != dtype or a.shape != param.shape:
            raise ValueError(
                f"{op}: {what} {i} must be a {dtype} array of shape {param.shape} on "
                f"{self.name!r}, got {type(a).__name__} {getattr(a, 'dtype', '')} "
                f"{getattr(a, 'shape', '')}"
            )
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {what} {i} of shape {a.shape} is not contiguous")
        return self._pointer(a)

    def sgd_update(
        self,
        params,
        grads,
        momentum_bufs,
        *,
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        first_step,
    ):
        """In place, one launch: see minicnn/optim/sgd.py."""
        if self._unfused(params):
            return sgd_per_tensor(
                self.xp,
                params,
                grads,
                momentum_bufs,
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                first_step=first_step,
            )
        grads = [self.xp.ascontiguousarray(g) for g in grads]
        bufs = momentum_bufs if momentum != 0 else [None] * len(params)
        table, host, chunks, dtype = self._optim_table("sgd_update", [params, grads, bufs])
        self.C.sgd_update(
            dtype,
            table=self._pointer(table),
            table_host=0 if host is None else host.ctypes.data,
            tensors=len(params),
            chunks=chunks,
            lr=lr,
            momentum=momentum,
            one_minus_dampening=1 - dampening,
            weight_decay=weight_decay,
            nesterov=bool(nesterov),
            first_step=bool(first_step),
            stream=self._stream(),
        )

    def adam_update(
        self,
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        *,
        step,
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
        max_exp_avg_sqs=None,
    ):
        """In place, one launch: see minicnn/optim/adam.py."""
        if self._unfused(params):
            return adam_per_tensor(
                self.xp,
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                step=step,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                decoupled=decoupled,
                max_exp_avg_sqs=max_exp_avg_sqs,
            )
        grads = [self.xp.ascontiguousarray(g) for g in grads]
        maxes = max_exp_avg_sqs if max_exp_avg_sqs is not None else [None] * len(params)
        columns = [params, grads, exp_avgs, exp_avg_sqs, maxes]
        table, host, chunks, dtype = self._optim_table("adam_update", columns)
        self.C.adam_update(
            dtype,
            table=self._pointer(table),
            table_host=0 if host is None else host.ctypes.data,
            tensors=len(params),
            chunks=chunks,
            step_size=lr / (1 - beta1**step),
            bias_correction2_sqrt=math.sqrt(1 - beta2**step),
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            decoupled=bool(decoupled),
            decoupled_factor=1 - lr * weight_decay,
            amsgrad=max_exp_avg_sqs is not None,
            stream=self._stream(),
        )
