"""The dtypes of minicnn and PyTorch's type promotion: a leaf module (NumPy and ml_dtypes only).

A dtype is a ``numpy.dtype``; ``minicnn.float32`` and friends are these objects. The half types:
``float16`` is NumPy's IEEE binary16 (10-bit mantissa, max 65504), ``bfloat16`` the ``ml_dtypes``
type (8-bit exponent as float32, 7-bit mantissa). NumPy reports bfloat16 with ``kind == "V"``, so
ask :func:`is_floating` rather than ``dtype.kind == "f"``.
"""

from __future__ import annotations

import numbers

import ml_dtypes
import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "HALF_DTYPES",
    "as_dtype",
    "bfloat16",
    "bool_",
    "float16",
    "float32",
    "float64",
    "int32",
    "int64",
    "is_floating",
    "result_type",
]

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
bool_ = np.dtype(np.bool_)
float16 = np.dtype(np.float16)
bfloat16 = np.dtype(ml_dtypes.bfloat16)
HALF_DTYPES = (float16, bfloat16)
FLOAT_DTYPES = (float32, float64) + HALF_DTYPES  # float32 first: the default

_DTYPE_NAMES = {
    "float32": float32,
    "float": float32,
    "float64": float64,
    "double": float64,
    "float16": float16,
    "half": float16,
    "bfloat16": bfloat16,
    "int64": int64,
    "long": int64,
    "int32": int32,
    "int": int32,
    "bool": bool_,
}


def as_dtype(dtype):
    """Normalise a dtype argument (np.dtype, numpy type, or name) or raise TypeError."""
    if isinstance(dtype, str):
        if dtype not in _DTYPE_NAMES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[dtype]
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if d not in FLOAT_DTYPES + (int64, int32, bool_):
        raise TypeError(
            f"dtype {d} is not supported; use float32, float64, float16, bfloat16, int64, int32 "
            "or bool"
        )
    return d


def is_floating(dtype) -> bool:
    """Whether ``dtype`` is one of minicnn's floating dtypes (bfloat16 included)."""
    return dtype in FLOAT_DTYPES


def _category(dtype):
    if is_floating(dtype):
        return 2
    return 0 if dtype.kind == "b" else 1


_FLOAT_RANK = {float16: 0, bfloat16: 0, float32: 1, float64: 2}


def _promote_floats(a, b):
    """torch's float lattice: float16 + bfloat16 -> float32 (neither holds the other); else the
    wider one."""
    if a == b:
        return a
    if _FLOAT_RANK[a] == _FLOAT_RANK[b]:  # float16 with bfloat16
        return float32
    return a if _FLOAT_RANK[a] > _FLOAT_RANK[b] else b


def _promote(dtypes):
    """Promote within the highest category present (torch: int64 with float32 is float32)."""
    top = max(_category(d) for d in dtypes)
    same = [d for d in dtypes if _category(d) == top]
    out = same[0]
    for d in same[1:]:
        out = _promote_floats(out, d) if top == 2 else np.promote_types(out, d)
    return out


def result_type(*operands):
    """PyTorch's type promotion for Tensors and Python numbers.

    Dimensioned tensors decide the dtype; a 0-d tensor or a Python number only matters when it is
    of a higher category (bool < integer < float): then 0-d tensors promote among themselves, and
    a Python float gives float32 (the default dtype), an int int64. So float32 + 0-d float64 is
    float32, int64 + 0.5 is float32, as in torch (NumPy would give float64 for both).
    """
    scalars = [x for x in operands if isinstance(x, (numbers.Number, np.bool_))]
    tensors = [t for t in operands if not isinstance(t, (numbers.Number, np.bool_))]  # Tensors
    dimensioned = [t.dtype for t in tensors if t.ndim > 0]
    zero_dim = [t.dtype for t in tensors if t.ndim == 0]
    scalars = [
        bool_
        if isinstance(x, (bool, np.bool_))
        else int64
        if isinstance(x, numbers.Integral)
        else float32
        for x in scalars
    ]
    result = _promote(dimensioned) if dimensioned else None
    for group in (zero_dim, scalars):
        if group:
            g = _promote(group)
            if result is None or _category(g) > _category(result):
                result = g
    return result
