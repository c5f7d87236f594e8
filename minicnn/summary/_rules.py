"""Per-op counting rules: multiply-accumulates (MACs) and receptive-field propagation.

Every differentiable op of a forward pass (a :class:`minicnn.autograd.Function` seen through
``trace_ops``) goes through :func:`op_macs` and :func:`op_field`. The rules, with E the number of
output elements (batch included) and N the batch size:

    Conv2d             E · C/G · R · S        (= K · C/G · R · S · P · Q · N; the bias add is not
                                               counted, as torchvision/fvcore do)
    Linear             E · in_features        (= in · out · N; bias not counted)
    MaxPool2d          E · R · S              (one comparison per window element)
    AvgPool2d          E · R · S              (one add per window element; the divide is free)
    AdaptiveAvgPool2d  N · C · Σ bin heights · Σ bin widths   (the exact bin areas)
    LocalResponseNorm  E · (size + 2)         (size multiply-adds for the windowed sum of squares,
                                               plus the pow and the divide)
    BatchNorm          2 · E in evaluation    ((x - mean) · scale + shift); 4 · E when training
                                               (the batch mean and variance cost another 2)
    ReLU, Add, Sub, Mul, Div, Neg, Pow, Exp, Log, Dropout (training)   E
    Softmax, LogSoftmax 3 · E                 (exp, sum, divide / subtract)
    Sum, Mean          the input's element count
    MatMul             E · (the contracted length)
    Cat, Reshape (flatten, view, unsqueeze), Permute, GetItem, Clone, Cast, ToDevice   0
                                              (data movement only)
    any other op       E                      (one operation per output element)

A receptive field is kept per spatial axis (H, W) of every tensor as ``(size, jump, start)`` in
input pixels: ``size`` is how many input pixels one output element sees, ``jump`` the distance in
input pixels between neighbouring outputs, and ``start`` the input coordinate of the centre of the
first output's field (pixel indices: 0.0 is the centre of the input's first pixel; padding makes it
negative). The network input is (1, 1, 0.0). A window op (conv or pool) with kernel k, dilation d,
stride s and padding p maps (r, j, t) to

    (r + (d(k-1)) j,  j s,  t + (d(k-1)/2 - p) j)

(Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural Networks"). Ops that keep
the spatial shape (ReLU, BN, LRN, dropout, channel slicing) keep the field; a basic slice
x[..., a::s, b::t] moves the start by a (b) jumps and multiplies the jump by s (t). An op of
several inputs (a residual add, a concatenation) takes the union of its inputs' fields at the first
output: the
smallest field covering all of them (with the inputs' common jump). An op that changes or removes
the spatial axes any other way (flatten, a global mean, a linear layer on a flattened map) makes
every output see the whole input map: size r + (L-1) j for an input axis of length L, and jump
``None`` once the spatial axes are gone. Fields are not clipped to the image (the theoretical
receptive field, as published: VGG-16's last pool sees 212 pixels of a 224 image).
"""

from __future__ import annotations

import math
import numbers
import re

__all__ = ["INPUT_FIELD", "WEIGHT_OPS", "op_field", "op_macs", "op_label"]

INPUT_FIELD = (1, 1, 0.0)  # (size, jump, start) of an input pixel along one axis
WEIGHT_OPS = ("Conv2d", "Linear")  # what "weight layers" (depth) and conv+linear MACs count
_MOVES = {"Cat", "Reshape", "Permute", "GetItem", "Clone", "Cast", "ToDevice"}
_ONE_PER_OUTPUT = {"ReLU", "Add", "Sub", "Mul", "Div", "Neg", "Pow", "Exp", "Log", "Dropout"}
_LABELS = {
    "ReLU": "relu",
    "GetItem": "getitem",
    "MatMul": "matmul",
    "ToDevice": "to",
    "LogSoftmax": "log_softmax",
}


def op_label(fn_name):
    """The functional name of a Function class: MaxPool2d -> max_pool2d, Add -> add."""
    return _LABELS.get(fn_name) or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", fn_name).lower()


def _numel(t):
    return math.prod(t.shape)


def _adaptive_bins(n, p):
    """Sizes of the p adaptive-pooling bins over an axis of length n (start floor, end ceil)."""
    return [-(-(i + 1) * n // p) - (i * n // p) for i in range(p)]


def op_macs(name, args, kwargs, out):
    """Multiply-accumulates of one op (the module docstring's rules)."""
    E = _numel(out)
    if name == "Conv2d":
        w = args[1]
        return E * math.prod(w.shape[1:])
    if name == "Linear":
        return E * args[1].shape[1]
    if name in ("MaxPool2d", "AvgPool2d"):
        return E * math.prod(kwargs["geometry"].kernel_size)
    if name == "AdaptiveAvgPool2d":
        x = args[0]
        P, Q = kwargs["geometry"].out_size
        H, W = x.shape[-2:]
        return math.prod(x.shape[:-2]) * sum(_adaptive_bins(H, P)) * sum(_adaptive_bins(W, Q))
    if name == "LocalResponseNorm":
        return E * (args[1] + 2)
    if name == "BatchNorm":
        return E * (4 if args[5] else 2)
    if name in ("Softmax", "LogSoftmax"):
        return 3 * E
    if name in ("Sum", "Mean"):
        return _numel(args[0])
    if name == "MatMul":
        return E * args[0].shape[-1]
    if name in _MOVES:
        return 0
    return E  # _ONE_PER_OUTPUT and anything unknown


# ---- receptive fields ---------------------------------------------------------------------------
def _tidy(v):
    """A size or jump: an int when it is a whole number (fractions come from adaptive pooling)."""
    return int(v) if v is not None and float(v).is_integer() else v


def _window(field, k, s, p, d=1):
    """(size, jump, start) after a window op along one axis."""
    r, j, t = field
    span = d * (k - 1)
    return (_tidy(r + span * j), _tidy(j * s), t + (span / 2 - p) * j)


def _global(field, n, keep_axes):
    """The field of an output that sees all n positions of an input axis."""
    r, j, t = field
    if j is None:
        return field
    return (_tidy(r + (n - 1) * j), _tidy(j * n) if keep_axes else None, t + (n - 1) * j / 2)


def _union(fields):
    """The smallest field covering the first output of every input (equal jumps expected)."""
    lo = min(t - (r - 1) / 2 for r, _, t in fields)
    hi = max(t + (r - 1) / 2 for r, _, t in fields)
    jumps = [j for _, j, _ in fields if j is not None]
    return (_tidy(hi - lo + 1), max(jumps) if jumps else None, (lo + hi) / 2)


def _spatial(t):
    return t.shape[-2:] if len(t.shape) >= 3 else None


def _window_field(name, args, kwargs, x_field):
    if name == "Conv2d":
        g = args[3]
        kernel, stride, padding, dilation = (g.R, g.S), g.stride, g.padding, g.dilation
    else:
        g = kwargs["geometry"]
        kernel, stride, padding, dilation = g.kernel_size, g.stride, g.padding, g.dilation
    return tuple(
        _window(f, k, s, p, d) for f, k, s, p, d in zip(x_field, kernel, stride, padding, dilation)
    )


def _adaptive_field(args, kwargs, x_field):
    """Adaptive pooling's bins differ in size when P does not divide n: every output gets the
    widest bin's field w, and the jump (n - w) / (P - 1) puts the last field at the end of the
    input, so the union over all outputs is exact (= n / P, a plain pool, when P divides n)."""
    x = args[0]
    fields = []
    for (r, j, t), n, p in zip(x_field, x.shape[-2:], kwargs["geometry"].out_size):
        if p == 0:
            fields.append((r, j, t))
            continue
        w = max(_adaptive_bins(n, p))
        step = n if p == 1 else (n - w) / (p - 1)
        fields.append((_tidy(r + (w - 1) * j), _tidy(j * step), t + (w - 1) / 2 * j))
    return tuple(fields)


def _getitem_field(x, index, x_field):
    """Field after basic slicing x[..., a:b:s, c:d:t] (None for anything fancier)."""
    idx = index if isinstance(index, tuple) else (index,)
    basic = all(i is Ellipsis or isinstance(i, (slice, numbers.Integral)) for i in idx)
    if not basic or idx.count(Ellipsis) > 1 or len(idx) - idx.count(Ellipsis) > len(x.shape):
        return None
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(x.shape) - len(idx) + 1) + idx[k + 1 :]
    idx = idx + (slice(None),) * (len(x.shape) - len(idx))
    fields = []
    for (r, j, t), sl, n in zip(x_field, idx[-2:], x.shape[-2:]):
        if not isinstance(sl, slice):
            return None  # a spatial axis indexed away
        first, _, step = sl.indices(n)
        if step < 1:
            return None
        fields.append((r, j * step, t + first * j))
    return tuple(fields)


def op_field(name, args, kwargs, out, field_of):
    """Receptive field (a pair of (size, jump, start), one per spatial axis) of ``out``, or None.

    ``field_of(tensor)`` gives an input tensor's field (None when unknown, e.g. a parameter).
    """
    from ..tensor import Tensor

    inputs = [(a, field_of(a)) for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
    inputs = [(a, f) for a, f in inputs if f is not None]
    if not inputs:
        return None
    x, x_field = inputs[0]
    if name in ("Conv2d", "MaxPool2d", "AvgPool2d") and x_field[0][1] is not None:
        return _window_field(name, args, kwargs, x_field)
    if name == "AdaptiveAvgPool2d" and x_field[0][1] is not None:
        return _adaptive_field(args, kwargs, x_field)
    if name == "GetItem" and x_field[0][1] is not None and len(x.shape) >= 3:
        sliced = _getitem_field(x, args[1], x_field)
        if sliced is not None:
            return sliced
    out_hw = _spatial(out)
    per_input = []
    for a, f in inputs:
        a_hw = _spatial(a)
        if a_hw is None or f[0][1] is None or (out_hw is not None and a_hw in (out_hw, (1, 1))):
            per_input.append(f)  # the same positions (or a map broadcast over them)
        else:
            per_input.append(tuple(_global(fa, n, out_hw is not None) for fa, n in zip(f, a_hw)))
    if len(per_input) == 1:
        return per_input[0]
    return tuple(_union([f[axis] for f in per_input]) for axis in range(2))
