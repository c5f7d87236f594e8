"""Elementwise arithmetic and matmul, with NumPy-style broadcasting reduced back in backward."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..backends import _lowp
from ..backends import get_backend
from ..amp.autocast import cast_inputs
from ..dtypes import FLOAT_DTYPES, float32, is_floating, result_type
from ..tensor import Tensor


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, so it has ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, s in enumerate(shape) if s == 1 and g.shape[extra + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _operand(op, x):
    """Check an operand of a binary op: a Tensor or a real number (made a Python scalar)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{op}: operands must be Tensors or real numbers, got {type(x).__name__}")
    return float(x) if isinstance(x, (float, np.floating)) else int(x)


def check_broadcast(op, a, b):
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


def _binary(op, fn, a, b):
    """Check operands, promote them to torch's result dtype, apply ``fn``."""
    a, b = _operand(op, a), _operand(op, b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        check_broadcast(op, a, b)
    dtype = result_type(a, b)
    if fn is Div and not is_floating(dtype):
        dtype = float32  # true division of integers gives the default float dtype
    a, b = (x.to(dtype) if isinstance(x, Tensor) else x for x in (a, b))
    return fn.apply(a, b)


def _shape_of(x):
    return getattr(x, "shape", ())


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape_of(a), _shape_of(b)
        return ctx.backend.add(a, b)  # cpu: threaded for same-shape arrays

    @staticmethod
    def backward(ctx, dout):
        sa, sb = ctx.shapes
        return unbroadcast(dout, sa), unbroadcast(dout, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = _shape_of(a), _shape_of(b)
        return a - b

    @staticmethod
    def backward(ctx, dout):
        sa, sb = ctx.shapes
        db = unbroadcast(-dout, sb) if ctx.needs_input_grad[1] else None
        return unbroadcast(dout, sa), db


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = unbroadcast(dout * b, _shape_of(a)) if ctx.needs_input_grad[0] else None
        db = unbroadcast(dout * a, _shape_of(b)) if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = unbroadcast(dout / b, _shape_of(a)) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-dout * a / (b * b), _shape_of(b)) if ctx.needs_input_grad[1] else None
        return da, db


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, dout):
        return -dout


class Pow(Function):
    """a ** p for a real number p: d/da = p a^(p-1)."""

    @staticmethod
    def forward(ctx, a, p):
        ctx.save_for_backward(a)
        ctx.p = p
        return a**p

    @staticmethod
    def backward(ctx, dout):
        (a,) = ctx.saved_tensors
        if ctx.p == 0:  # d/da a^0 = 0, also at a = 0 (not 0 · 0^-1 = NaN)
            return ctx.xp.zeros_like(dout)
        return dout * ctx.p * a ** (ctx.p - 1)


class Pointwise(Function):
    """y = f(x) elementwise, with dx = df(dy, saved): ``saved`` is y when ``saves_output``, else x.

    A subclass gives the formulas ``f(ctx, x)`` and ``df(ctx, dout, saved)``.
    """

    saves_output = True

    @classmethod
    def forward(cls, ctx, x):
        y = cls.f(ctx, x)
        ctx.save_for_backward(y if cls.saves_output else x)
        return y

    @classmethod
    def backward(cls, ctx, dout):
        (saved,) = ctx.saved_tensors
        return cls.df(ctx, dout, saved)


class Exp(Pointwise):
    """y = e^x;  dx = dy · y."""

    f = staticmethod(lambda ctx, x: ctx.xp.exp(x))
    df = staticmethod(lambda ctx, dout, y: dout * y)


class Log(Pointwise):
    """y = ln x;  dx = dy / x."""

    saves_output = False
    f = staticmethod(lambda ctx, x: ctx.xp.log(x))
    df = staticmethod(lambda ctx, dout, x: dout / x)


class MatMul(Function):
    """torch.matmul for operands of rank >= 1 (1-D operands are promoted, then squeezed)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _lowp.matmul(a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        xp = ctx.xp
        a2 = a[None, :] if a.ndim == 1 else a  # (…, M, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (…, K, Nn)
        d = dout
        if b.ndim == 1:
            d = xp.expand_dims(d, -1)
        if a.ndim == 1:
            d = xp.expand_dims(d, -2)  # (…, M, Nn)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(_lowp.matmul(d, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            db = unbroadcast(_lowp.matmul(xp.swapaxes(a2, -1, -2), d), b2.shape).reshape(b.shape)
        return da, db


def add(a, b):
    return _binary("add", Add, a, b)


def sub(a, b):
    return _binary("sub", Sub, a, b)


def mul(a, b):
    return _binary("mul", Mul, a, b)


def div(a, b):
    return _binary("div", Div, a, b)


def pow(a, exponent):
    if isinstance(exponent, Tensor) or not isinstance(exponent, numbers.Real):
        raise TypeError(
            f"pow: only a real-number exponent is supported, got {type(exponent).__name__}"
        )
    if a.dtype.kind in "iu" and isinstance(exponent, numbers.Integral) and exponent < 0:
        raise ValueError(
            f"pow: integer tensors cannot be raised to a negative integer power ({exponent})"
        )
    if a.dtype.kind in "iub" and not isinstance(exponent, numbers.Integral):
        a = a.to(float32)  # int ** 0.5 is a float, as in torch
    return Pow.apply(a, exponent if isinstance(exponent, numbers.Integral) else float(exponent))


def matmul(a, b):
    a, b = cast_inputs("low", a, b)
    for name, t in (("first", a), ("second", b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"matmul: {name} operand must be a Tensor, got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"matmul: {name} operand must have at least 1 dimension, got a scalar")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({ka} != {kb})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast"
        ) from None
    dtype = result_type(a, b)  # float16 @ float32 is float32, as torch's promotion
    return MatMul.apply(a.to(dtype), b.to(dtype))


# ---- Tensor's operators -------------------------------------------------------------------------
def _compare(ufunc_name):
    """A comparison operator: elementwise, not differentiable, a bool Tensor."""

    def method(self, other):
        if isinstance(other, Tensor):
            check_broadcast(ufunc_name, self, other)
        o = other._data if isinstance(other, Tensor) else other
        return Tensor(getattr(get_backend(self.device).xp, ufunc_name)(self._data, o), self.device)

    method.__name__ = ufunc_name
    return method


def _floating(t):
    return t if t.dtype in FLOAT_DTYPES else t.to(float32)


Tensor.__add__ = lambda self, other: add(self, other)
Tensor.__radd__ = lambda self, other: add(other, self)
Tensor.__sub__ = lambda self, other: sub(self, other)
Tensor.__rsub__ = lambda self, other: sub(other, self)
Tensor.__mul__ = lambda self, other: mul(self, other)
Tensor.__rmul__ = lambda self, other: mul(other, self)
Tensor.__truediv__ = lambda self, other: div(self, other)
Tensor.__rtruediv__ = lambda self, other: div(other, self)
Tensor.__neg__ = lambda self: Neg.apply(self)
Tensor.__pos__ = lambda self: self
Tensor.__pow__ = lambda self, exponent: pow(self, exponent)
Tensor.__matmul__ = lambda self, other: matmul(self, other)
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
Tensor.__eq__ = _compare("equal")
Tensor.__ne__ = _compare("not_equal")
Tensor.__lt__ = _compare("less")
Tensor.__le__ = _compare("less_equal")
Tensor.__gt__ = _compare("greater")
Tensor.__ge__ = _compare("greater_equal")
Tensor.exp = lambda self: Exp.apply(_floating(self))
Tensor.log = lambda self: Log.apply(_floating(self))
Tensor.sqrt = lambda self: pow(self, 0.5)
