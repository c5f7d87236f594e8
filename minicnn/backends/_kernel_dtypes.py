"""The dtypes our CUDA kernels take (csrc/bindings.cpp dispatches on their names) and the dtype
each computes in."""

from __future__ import annotations

import numpy as np

from ..dtypes import FLOAT_DTYPES, HALF_DTYPES, float32

FLOAT32 = float32
__all__ = ["FLOAT32", "FLOAT_DTYPES", "HALF_DTYPES", "acc_dtype"]


def acc_dtype(dtype):
    """The dtype the kernels compute a ``dtype`` op in, and of batch norm's (C,) vectors: float32
    for float16 / bfloat16 (csrc/kernels/kernels.h, acc_t), else ``dtype`` itself."""
    return FLOAT32 if np.dtype(dtype) in HALF_DTYPES else np.dtype(dtype)
