"""ReLU (a kernel family: backend.relu_forward/backward) and softmax / log_softmax."""

from __future__ import annotations

from ..amp.autocast import cast_inputs
from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor, normalize_dim
from .arith import Pointwise


class ReLU(Pointwise):
    """y = max(x, 0);  dx = dy · [y > 0]  (the subgradient at 0 is taken as 0, as PyTorch)."""

    f = staticmethod(lambda ctx, x: ctx.backend.relu_forward(x))
    df = staticmethod(lambda ctx, dout, y: ctx.backend.relu_backward(dout, y))


def _save_output(ctx, y, dim):
    """Softmax and log_softmax differentiate through their output y (along ``dim``)."""
    ctx.dim = dim
    ctx.save_for_backward(y)
    return y


class LogSoftmax(Function):
    """y = x - max - log Σ exp(x - max);  dx = dy - softmax(x) Σ dy."""

    @staticmethod
    def forward(ctx, x, dim):
        xp = ctx.xp
        shifted = x - x.max(axis=dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        return _save_output(ctx, y, dim)

    @staticmethod
    def backward(ctx, dout):
        (y,) = ctx.saved_tensors
        return dout - ctx.xp.exp(y) * dout.sum(axis=ctx.dim, keepdims=True)


class Softmax(Function):
    """y = exp(x - max) / Σ exp(x - max);  dx = y (dy - Σ dy·y)."""

    @staticmethod
    def forward(ctx, x, dim):
        e = ctx.xp.exp(x - x.max(axis=dim, keepdims=True))
        y = e / e.sum(axis=dim, keepdims=True)
        return _save_output(ctx, y, dim)

    @staticmethod
    def backward(ctx, dout):
        (y,) = ctx.saved_tensors
        return y * (dout - (dout * y).sum(axis=ctx.dim, keepdims=True))


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    """Rectified linear unit. ``inplace`` is accepted for torch compatibility; a new tensor is
    made."""
    check_tensor("relu", "input", x)
    return ReLU.apply(x)


def softmax(x: Tensor, dim: int) -> Tensor:
    (x,) = cast_inputs("float32", x)  # autocast: float32 (minicnn/amp/autocast.py)
    check_tensor("softmax", "input", x)
    return Softmax.apply(x, normalize_dim("softmax", dim, x.ndim))


def log_softmax(x: Tensor, dim: int) -> Tensor:
    (x,) = cast_inputs("float32", x)  # autocast: float32 (minicnn/amp/autocast.py)
    check_tensor("log_softmax", "input", x)
    return LogSoftmax.apply(x, normalize_dim("log_softmax", dim, x.ndim))


Tensor.relu = lambda self: relu(self)
Tensor.softmax = lambda self, dim: softmax(self, dim)
Tensor.log_softmax = lambda self, dim: log_softmax(self, dim)
