"""Reductions: sum and mean over dims (differentiable), argmax (not)."""

from __future__ import annotations

from ..amp.autocast import cast_inputs
from ..autograd import Function
from ..dtypes import HALF_DTYPES, float32, is_floating
from ..tensor import Tensor
from ._util import normalize_dim, normalize_dims


def _expand_back(ctx, dout):
    """Re-insert the reduced dims (as size 1) so dout broadcasts against the input."""
    if not ctx.keepdim:
        for d in ctx.dims:
            dout = ctx.xp.expand_dims(dout, d)
    return dout


def _accumulated(a, method, dims, keepdim):
    """a.sum / a.mean; half inputs are accumulated in float32 and the result rounded back (as
    torch, and NumPy's float16 sum would round every partial sum)."""
    if a.dtype in HALF_DTYPES:
        out = getattr(a, method)(axis=dims, keepdims=keepdim, dtype=float32)
        return out.astype(a.dtype)
    return getattr(a, method)(axis=dims, keepdims=keepdim)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim
        return _accumulated(a, "sum", dims, keepdim)

    @staticmethod
    def backward(ctx, dout):
        return ctx.xp.broadcast_to(_expand_back(ctx, dout), ctx.shape).copy()


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = a.shape, dims, keepdim
        ctx.count = 1
        for d in dims:
            ctx.count *= a.shape[d]
        return _accumulated(a, "mean", dims, keepdim)

    @staticmethod
    def backward(ctx, dout):
        g = _expand_back(ctx, dout) / ctx.count
        return ctx.xp.broadcast_to(g, ctx.shape).astype(dout.dtype, copy=True)


def sum(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    (x,) = cast_inputs("float32", x)
    return Sum.apply(x, normalize_dims("sum", dim, x.ndim), bool(keepdim))


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    (x,) = cast_inputs("float32", x)
    if not is_floating(x.dtype):
        raise TypeError(f"mean: input must be floating point, got dtype {x.dtype}")
    dims = normalize_dims("mean", dim, x.ndim)
    return Mean.apply(x, dims, bool(keepdim))


def argmax(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Indices of the maxima (int64), not differentiable; flattened when dim is None."""
    if dim is None:
        return Tensor(x._data.argmax().reshape((1,) * x.ndim if keepdim else ()), x.device)
    d = normalize_dim("argmax", dim, x.ndim)
    return Tensor(x._data.argmax(axis=d, keepdims=keepdim).astype("int64"), x.device)


Tensor.sum = lambda self, dim=None, keepdim=False: sum(self, dim, keepdim)
Tensor.mean = lambda self, dim=None, keepdim=False: mean(self, dim, keepdim)
Tensor.argmax = lambda self, dim=None, keepdim=False: argmax(self, dim, keepdim)
