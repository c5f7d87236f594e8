"""What every backend shares: reduction ops, an asynchronous collective's handle, dtype checks."""

from __future__ import annotations

import enum

import numpy as np

SUPPORTED_DTYPES = tuple(np.dtype(d) for d in ("float32", "float64", "int32", "int64"))


class ReduceOp(enum.Enum):
    """torch.distributed.ReduceOp; ``all_reduce`` also takes the names ("sum", "avg", "max")."""

    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


def as_reduce_op(op):
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str) and op.lower() in {o.value for o in ReduceOp}:
        return ReduceOp(op.lower())
    raise ValueError(
        f"all_reduce: unknown op {op!r}; expected a ReduceOp or one of "
        f"{', '.join(o.value for o in ReduceOp)}"
    )


def check_dtype(name, array, op=None):
    dtype = np.dtype(array.dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name}: dtype {dtype} is not supported; use one of "
            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)}"
        )
    if op == ReduceOp.AVG and dtype.kind != "f":
        raise TypeError(
            f"all_reduce: ReduceOp.AVG needs a floating-point tensor, got dtype {dtype}"
        )


class Work:
    """The handle ``async_op=True`` returns (torch's Work): ``wait()`` blocks until the result is
    in the tensor (on cuda: until the current stream is ordered after it)."""

    def wait(self):
        return True

    def is_completed(self):
        return True


class CompletedWork(Work):
    """What a backend returns for an asynchronous call it ran synchronously."""
