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
of _np_optim.py (NumpyOptimMixin's, on ``self.xp``) on this device instead.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from .. import random as _random
from . import _transfers
from ._np_optim import NumpyOptimMixin

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _fused(per_tensor):
    """The decorated one-launch update under ``per_tensor``'s signature (the Backend protocol's,
    keywords reaching the update as ``h``); parameters of a dtype the kernels don't take
    (float16, bfloat16) go to ``per_tensor`` instead (NumpyOptimMixin's code on ``self.xp``)."""

    signature = inspect.signature(per_tensor)

    def decorate(fused):
        @functools.wraps(per_tensor)
        def update(self, params, *args, **kwargs):
            try:  # the arguments of the per-tensor signature, or a TypeError naming the update
                signature.bind(self, params, *args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{per_tensor.__name__}: {e}") from None
            unfused = (
                bool(params) and params[0].dtype.kind == "f" and params[0].dtype not in _FLOATS
            )
            return (per_tensor if unfused else fused)(self, params, *args, **kwargs)

        update.__doc__ = fused.__doc__
        return update

    return decorate


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

    def _launch_update(self, op, columns, **scalars):
        """One launch of ``op`` over the tensors given column-wise (see _optim_table)."""
        columns[1] = [self.xp.ascontiguousarray(g) for g in columns[1]]
        table, host, chunks, dtype = self._optim_table(op, columns)
        getattr(self.C, op)(
            dtype,
            table=self._pointer(table),
            table_host=0 if host is None else host.ctypes.data,
            tensors=len(columns[0]),
            chunks=chunks,
            stream=self._stream(),
            **scalars,
        )

    @_fused(NumpyOptimMixin.sgd_update)
    def sgd_update(self, params, grads, momentum_bufs, **h):
        """In place, one launch: see minicnn/optim/sgd.py."""
        bufs = momentum_bufs if h["momentum"] != 0 else [None] * len(params)
        self._launch_update(
            "sgd_update",
            [params, grads, bufs],
            lr=h["lr"],
            momentum=h["momentum"],
            one_minus_dampening=1 - h["dampening"],
            weight_decay=h["weight_decay"],
            nesterov=bool(h["nesterov"]),
            first_step=bool(h["first_step"]),
        )

    @_fused(NumpyOptimMixin.adam_update)
    def adam_update(self, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, **h):
        """In place, one launch: see minicnn/optim/adam.py."""
        maxes = max_exp_avg_sqs if max_exp_avg_sqs is not None else [None] * len(params)
        lr, step, wd = h["lr"], h["step"], h["weight_decay"]
        self._launch_update(
            "adam_update",
            [params, grads, exp_avgs, exp_avg_sqs, maxes],
            step_size=lr / (1 - h["beta1"] ** step),
            bias_correction2_sqrt=math.sqrt(1 - h["beta2"] ** step),
            beta1=h["beta1"],
            beta2=h["beta2"],
            eps=h["eps"],
            weight_decay=wd,
            decoupled=bool(h["decoupled"]),
            decoupled_factor=1 - lr * wd,
            amsgrad=max_exp_avg_sqs is not None,
        )
