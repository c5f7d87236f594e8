"""``minicnn.autocast``: ops pick their own precision inside the block (torch.autocast's policy).

Inside ``with minicnn.autocast("cpu", dtype=minicnn.bfloat16):`` an op whose tensors are on the
autocast's device casts its floating inputs on entry, by this table (torch's CUDA/CPU lists, cut to
the ops minicnn has):

    ===========================================  ================================================
    op                                           inputs cast to
    ===========================================  ================================================
    conv2d, linear, matmul (``@``)               the low dtype (float16 or bfloat16)
    sum, mean, softmax, log_softmax,             float32
    cross_entropy, nll_loss
    batch_norm                                   unchanged: a half input keeps float32 weight,
                                                 bias and running statistics; the statistics are
                                                 computed in float32 and the output is half
    everything else (add, mul, cat, relu,        unchanged: they run in the widest input dtype
    pooling, LRN, dropout, …)                    (type promotion, minicnn.dtypes.result_type)
    ===========================================  ================================================

float64 tensors are never cast (as in torch: autocast leaves doubles alone). The casts are
ordinary differentiable ``Tensor.to`` calls made at every forward, so a model's master weights stay
float32 and their gradients arrive in float32 (a cast's backward casts the gradient back).
Autocast is per device type: entering it for "cuda" leaves "cpu" ops alone. Nested blocks replace
the outer one's settings until they exit; ``enabled=False`` turns it off inside (then cast
yourself, as in torch). It also works as a decorator.
"""

from __future__ import annotations

import contextlib
import threading

from ..backends import canonical_device
from ..dtypes import HALF_DTYPES, as_dtype, bfloat16, float16, float32
from ..tensor import Tensor

__all__ = ["autocast", "get_autocast_dtype", "is_autocast_enabled", "cast_inputs"]

# torch's defaults: float16 on GPUs, bfloat16 on the CPU; "emu" runs the CUDA kernels, so float16.
_DEFAULT_DTYPE = {"cpu": bfloat16, "emu": float16, "cuda": float16}
_state = threading.local()


def _modes():
    if not hasattr(_state, "modes"):
        _state.modes = {}  # device type -> the low dtype, or None (off)
    return _state.modes


def get_autocast_dtype(device_type: str):
    """The low dtype autocast uses on ``device_type`` now, or None when it is off there."""
    return _modes().get(canonical_device(device_type))


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    return get_autocast_dtype(device_type) is not None


class autocast(contextlib.ContextDecorator):
    """``autocast(device_type, dtype=None, enabled=True, cache_enabled=None)``: see the module
    docstring. ``dtype`` defaults to float16 for "cuda"/"emu" and bfloat16 for "cpu", as torch."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        self.device = canonical_device(device_type)
        dtype = _DEFAULT_DTYPE[self.device] if dtype is None else as_dtype(dtype)
        if dtype not in HALF_DTYPES:
            raise ValueError(
                f"autocast: dtype must be float16 or bfloat16, got {dtype} "
                f"(device_type {self.device!r})"
            )
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be a bool, got {enabled!r}")
        self.fast_dtype, self.enabled = dtype, enabled
        self._saved = []  # a stack, so one instance can be re-entered (recursive decorated calls)

    def __enter__(self):
        modes = _modes()
        self._saved.append(modes.get(self.device))
        modes[self.device] = self.fast_dtype if self.enabled else None
        return self

    def __exit__(self, *exc):
        _modes()[self.device] = self._saved.pop()
        return False


def _cast(t, dtype):
    if not isinstance(t, Tensor) or t.dtype not in HALF_DTYPES + (float32,) or t.dtype == dtype:
        return t  # None, integers, float64 and tensors already in the dtype pass unchanged
    return t.to(dtype)


def cast_inputs(policy: str, *tensors):
    """``tensors`` cast by the autocast policy (``"low"``: the low dtype, ``"float32"``) when
    autocast is on for their device; unchanged otherwise. Returns a tuple (one per argument)."""
    device = next((t.device for t in tensors if isinstance(t, Tensor)), None)
    low = _modes().get(device) if device is not None else None
    if low is None:
        return tensors
    dtype = low if policy == "low" else float32
    return tuple(_cast(t, dtype) for t in tensors)
