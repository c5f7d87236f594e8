"""The dtypes our CUDA kernels take (csrc/bindings.cpp dispatches on their names) and the dtype
each computes in."""

from __future__ import annotations

import ml_dtypes
import numpy as np

FLOAT32 = np.dtype(np.float32)
HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))  # computed in float32
FLOAT_DTYPES = (FLOAT32, np.dtype(np.float64), *HALF_DTYPES)


def acc_dtype(dtype):
    """The dtype the kernels compute a ``dtype`` op in, and of batch norm's (C,) vectors: float32
    for float16 / bfloat16 (csrc/kernels/kernels.h, acc_t), else ``dtype`` itself."""
    return FLOAT32 if np.dtype(dtype) in HALF_DTYPES else np.dtype(dtype)
