"""Gradient checks of every op on small float64 cases: the table behind ``minicnn gradcheck``.

Inputs come from :func:`minicnn.gradcheck.separated`, so ReLU never sees 0 and max-pool windows have
no ties; random ops are re-seeded on every call so finite differences see the same mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import functional as F
from . import random as mrandom
from .gradcheck import gradcheck, separated
from .ops.shape import cat
from .tensor import tensor


@dataclass
class Case:
    op: str
    case: str
    fn: object
    shapes: tuple  # shapes of the float64 inputs (all require grad)
    extra: tuple = ()  # non-differentiable trailing arguments


def _x(shape, seed):
    return tensor(separated(shape, seed=seed, gap=0.02), requires_grad=True)


def _dropout(x):
    mrandom.manual_seed(1234)
    return F.dropout(x, p=0.3, training=True)


def _batch_norm(training):
    def fn(x, w, b):
        rm = tensor(np.zeros(x.shape[1]), dtype=x.dtype, device=x.device)
        rv = tensor(np.ones(x.shape[1]) * 1.5, dtype=x.dtype, device=x.device)
        return F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)

    return fn


def _cross_entropy(**kw):
    def fn(x, target):
        return F.cross_entropy(x, target, **kw)

    return fn


def _op(op, fn):
    """The case maker of ``op``: ``make(case, shapes, *args, **kwargs)`` checks
    ``fn(*inputs, *args, **kwargs)`` on float64 inputs of ``shapes``."""

    def make(case, shapes, *args, **kwargs):
        return Case(op, case, lambda *inputs: fn(*inputs, *args, **kwargs), shapes)

    return make


def cases():
    target = tensor(np.array([2, 0, 4, 1], dtype=np.int64))
    conv, lrn = _op("conv2d", F.conv2d), _op("local_response_norm", F.local_response_norm)
    max_pool, avg_pool = _op("max_pool2d", F.max_pool2d), _op("avg_pool2d", F.avg_pool2d)
    adaptive = _op("adaptive_avg_pool2d", F.adaptive_avg_pool2d)
    return [
        conv("3x3 pad 1, bias", ((2, 3, 5, 5), (4, 3, 3, 3), (4,)), padding=1),
        conv("3x3 stride 2 dilation 2", ((1, 2, 9, 8), (3, 2, 3, 3)), stride=2, dilation=2),
        conv("groups 2 (AlexNet towers)", ((2, 4, 6, 6), (6, 2, 5, 5), (6,)), padding=2, groups=2),
        conv("11x11 stride 4", ((1, 3, 19, 19), (2, 3, 11, 11)), stride=4, padding=2),
        conv("1x1", ((2, 5, 3, 4), (3, 5, 1, 1))),
        conv("'same', 4x2 kernel", ((1, 2, 5, 6), (2, 2, 4, 2)), padding="same"),
        max_pool("3x3 stride 2 (overlapping)", ((2, 2, 7, 7),), 3, 2),
        max_pool("2x2 pad 1 ceil_mode", ((1, 2, 5, 6),), 2, 2, padding=1, ceil_mode=True),
        max_pool("3x3 dilation 2", ((1, 1, 7, 7),), 3, 1, dilation=2),
        avg_pool("3x3 stride 2 pad 1", ((2, 2, 6, 7),), 3, 2, padding=1),
        avg_pool(
            "ceil_mode, exclude pad",
            ((1, 2, 6, 6),),
            3,
            2,
            1,
            ceil_mode=True,
            count_include_pad=False,
        ),
        adaptive("7x5 -> 3x2 (uneven bins)", ((2, 2, 7, 5),), (3, 2)),
        adaptive("global (1x1)", ((2, 3, 4, 4),), 1),
        lrn("size 5, AlexNet constants", ((2, 7, 3, 3),), 5, 1e-4, 0.75, 2.0),
        lrn("size 4, alpha 3, beta 1.5", ((1, 6, 2, 3),), 4, 3.0, 1.5, 1.0),
        Case("batch_norm", "training", _batch_norm(True), ((4, 3, 2, 2), (3,), (3,))),
        Case("batch_norm", "eval", _batch_norm(False), ((2, 3, 2, 2), (3,), (3,))),
        Case("relu", "3-D input", F.relu, ((3, 4, 5),)),
        Case("dropout", "p=0.3, training", _dropout, ((4, 5),)),
        Case("linear", "with bias", F.linear, ((3, 5), (4, 5), (4,))),
        Case("cross_entropy", "mean", _cross_entropy(), ((4, 5),), (target,)),
        Case(
            "cross_entropy",
            "label_smoothing 0.1",
            _cross_entropy(label_smoothing=0.1),
            ((4, 5),),
            (target,),
        ),
        Case("softmax", "dim 1", lambda x: F.softmax(x, 1), ((3, 4),)),
        Case("log_softmax", "dim 1", lambda x: F.log_softmax(x, 1), ((3, 4),)),
        Case("flatten", "start_dim 1", lambda x: F.flatten(x, 1) * 2, ((2, 3, 2),)),
        Case("cat", "dim 1 (DenseNet)", lambda a, b: cat([a, b, a], 1), ((2, 2, 3), (2, 1, 3))),
        Case("matmul", "batched", lambda a, b: a @ b, ((2, 3, 4), (4, 2))),
        Case("add/mul", "broadcast + reuse", lambda a, b: a * b + a, ((2, 3), (3,))),
    ]


def on_device(fn, device="cpu", dtype="float64"):
    """``fn`` run on ``device`` in ``dtype``: float inputs are cast and moved there (both
    differentiable), the output comes back as float64 on the cpu for the finite differences."""
    if device == "cpu" and dtype == "float64":
        return fn

    def moved(*inputs):
        args = [x.to(device, dtype) if x.dtype.kind == "f" else x.to(device) for x in inputs]
        return fn(*args).to("cpu", "float64")

    return moved


def _inputs(case):
    seed = sum(map(ord, case.op + case.case))  # fixed per case, independent of the list order
    return tuple(_x(s, seed=seed + j) for j, s in enumerate(case.shapes)) + tuple(case.extra)


def _grads(fn, inputs, w):
    for x in inputs:
        x.grad = None
    fn(*inputs).backward(tensor(w))
    return [
        x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
        for x in inputs
        if x.requires_grad
    ]


def float32_error(case, device):
    """Worst deviation of ``case``'s float32 gradients on ``device`` from its float64 ones there,
    relative to each input's largest float64 gradient (float32 rounding gives ~1e-6)."""
    inputs = _inputs(case)
    out = case.fn(*inputs)
    w = np.random.default_rng(0).standard_normal(out.shape)
    g64 = _grads(on_device(case.fn, device, "float64"), inputs, w)
    g32 = _grads(on_device(case.fn, device, "float32"), inputs, w)
    return max(
        float(np.abs(a - b).max(initial=0) / max(np.abs(b).max(initial=0), 1e-12))
        for a, b in zip(g32, g64)
    )


def check(case, tol=1e-5, device="cpu", dtype="float64", tol32=1e-4):
    """Gradcheck one case with its ops run on ``device``: float64 central differences against the
    backward there; with ``dtype="float32"`` also the float32 backward against the float64 one
    (``tol32``), its error replacing the report's. Returns (result, seconds)."""
    start = time.perf_counter()
    result = gradcheck(on_device(case.fn, device, "float64"), _inputs(case), tol=tol)
    if dtype == "float32":
        error = float32_error(case, device)
        result.passed &= error <= tol32
        result.float32_error = error
    return result, time.perf_counter() - start
