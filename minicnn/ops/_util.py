"""Argument checking shared by the ops: every error names the op and the offending values."""

from __future__ import annotations

import numbers

from ..dtypes import FLOAT_DTYPES
from ..tensor import Tensor


def normalize_dim(op, dim, ndim):
    """A dimension index in [-ndim, ndim) made non-negative, or IndexError naming the op."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an integer, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dimensions")
    return int(dim) % n


def normalize_dims(op, dim, ndim):
    """None or () (all dims, as torch), an int or a sequence of ints → sorted distinct dims."""
    if isinstance(dim, numbers.Integral):
        dims = [dim]
    elif dim is None or isinstance(dim, (tuple, list)):
        dims = list(dim or ())
    else:
        raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {dim!r}")
    if not dims:
        return tuple(range(ndim))
    out = tuple(sorted({normalize_dim(op, d, ndim) for d in dims}))
    if len(out) != len(dims):
        raise ValueError(f"{op}: dim {tuple(dims)} names a dimension twice")
    return out


def check_tensor(op, name, x, ndim=None, floating=True):
    """``x`` must be a Tensor (of rank ``ndim`` — an int or a tuple of allowed ranks)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if floating and x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} must be float32 or float64 (or float16, bfloat16), got dtype {x.dtype}"
        )
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in ranks:
            want = " or ".join(f"{r}-D" for r in ranks)
            raise ValueError(f"{op}: {name} must be {want}, got shape {x.shape}")
    return x


def check_same_dtype(op, **tensors):
    """All given tensors (None skipped) have one dtype; TypeError listing them otherwise."""
    given = {k: t for k, t in tensors.items() if t is not None}
    dtypes = {t.dtype for t in given.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{k} {t.dtype}" for k, t in given.items())
        raise TypeError(f"{op}: expected one dtype, got {listing}")


def pair(op, name, value, minimum):
    """An int or a 2-sequence of ints, each >= minimum → (a, b); ValueError/TypeError otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        vals = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        vals = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(vals) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return vals
