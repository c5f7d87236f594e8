"""The "cpu" device's optimizer updates and dropout mask (a mixin of CpuBackend), in NumPy.

The updates loop over the tensors of a group and apply minicnn/optim's formulas to each, in place,
with NumPy's rounding: the fused kernels of csrc/kernels/optim.cu ("emu", "cuda") do the same
operations per element, and the tests compare them with this. The dropout mask is NumPy's
generator (``minicnn.random.generator().random(shape) >= p``), as it always was on "cpu".

``sgd_update`` / ``adam_update`` work on ``self.xp``'s arrays, so the kernel devices use them too
for the dtypes the kernels don't take (float16, bfloat16): CuPy runs them on the GPU.
"""

from __future__ import annotations

import math

import numpy as np

from .. import random as _random


def _native(backend, name, written, read):
    """The backend's native pass for update ``name`` over these arrays (CpuBackend's
    ``_native_update``: _C_cpu's threaded loop), or None: the per-tensor loop below runs."""
    hook = getattr(backend, "_native_update", None)  # kernel devices borrow these methods
    return None if hook is None else hook(name, written, read)


class NumpyOptimMixin:
    """dropout_mask, sgd_update and adam_update on ``self.xp`` arrays (see the module docstring)."""

    def dropout_mask(self, shape, p, dtype):
        """m / (1 − p), m = (generator().random(shape) >= p), of ``dtype``."""
        keep = _random.generator().random(shape) >= p  # bool, P(keep) = 1 - p
        return keep.astype(dtype) / np.asarray(1.0 - p, dtype)

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
        """torch.optim.SGD's step, one tensor at a time, in place (minicnn/optim/sgd.py); on "cpu"
        one threaded C++ pass over the group when ``_native_update`` has one (bit-identical)."""
        bufs = list(momentum_bufs) if momentum != 0 else []
        fn = _native(self, "sgd_update", [list(params), bufs], list(grads))
        if fn is not None:
            fn(list(params), list(grads), bufs, lr, momentum, dampening, weight_decay, nesterov,
               first_step)  # fmt: skip
            return
        for param, grad, buf in zip(params, grads, momentum_bufs):
            if weight_decay != 0:
                grad = grad + weight_decay * param
            if momentum != 0:
                if first_step:
                    buf[...] = grad
                else:
                    buf *= momentum
                    buf += (1 - dampening) * grad
                grad = grad + momentum * buf if nesterov else buf
            param -= lr * grad

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
        """Adam's / AdamW's step, one tensor at a time, in place (minicnn/optim/adam.py); on "cpu"
        one threaded C++ pass over the group when ``_native_update`` has one (bit-identical)."""
        maxes = None if max_exp_avg_sqs is None else list(max_exp_avg_sqs)
        written = [list(params), list(exp_avgs), list(exp_avg_sqs), maxes or []]
        fn = _native(self, "adam_update", written, list(grads))
        if fn is not None:
            fn(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), maxes, step, lr,
               beta1, beta2, eps, weight_decay, decoupled)  # fmt: skip
            return
        maxes = max_exp_avg_sqs if max_exp_avg_sqs is not None else [None] * len(params)
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        for param, grad, m, v, v_max in zip(params, grads, exp_avgs, exp_avg_sqs, maxes):
            if weight_decay != 0:
                if decoupled:
                    param *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * param
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            if v_max is not None:
                self.xp.maximum(v_max, v, out=v_max)
                v = v_max
            denom = self.xp.sqrt(v) / bias_correction2_sqrt + eps
            param -= step_size * m / denom
