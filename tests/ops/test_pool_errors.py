"""Pooling errors: each names the op, the argument and the offending value."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F


# ---- errors -------------------------------------------------------------------------------------
def _x(shape=(1, 1, 4, 4), dtype="float64"):
    return minicnn.zeros(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "fn,exc,match",
    [
        (
            lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2),
            TypeError,
            "max_pool2d: input must be a Tensor",
        ),
        (lambda: F.max_pool2d(_x(dtype="int64"), 2), TypeError, "max_pool2d.*float32 or float64"),
        (lambda: F.avg_pool2d(_x(dtype="int32"), 2), TypeError, "avg_pool2d.*dtype int32"),
        (
            lambda: F.adaptive_avg_pool2d(_x(dtype="int64"), 2),
            TypeError,
            "adaptive_avg_pool2d.*int64",
        ),
        (lambda: F.max_pool2d(_x((4, 4)), 2), ValueError, r"max_pool2d.*\(4, 4\)"),
        (lambda: F.avg_pool2d(_x((1, 1, 1, 4, 4)), 2), ValueError, "avg_pool2d.*3-D or 4-D"),
        (
            lambda: F.adaptive_avg_pool2d(_x((4, 4)), 2),
            ValueError,
            "adaptive_avg_pool2d.*3-D or 4-D",
        ),
        (
            lambda: F.max_pool2d(_x((1, 0, 4, 4)), 2),
            ValueError,
            r"max_pool2d.*non-empty.*\(1, 0, 4, 4\)",
        ),
        (lambda: F.avg_pool2d(_x((1, 1, 0, 4)), 2), ValueError, r"avg_pool2d.*\(1, 1, 0, 4\)"),
        (lambda: F.max_pool2d(_x((0, 4, 4)), 2), ValueError, r"max_pool2d.*\(0, 4, 4\)"),
        (
            lambda: F.adaptive_avg_pool2d(_x((1, 1, 4, 0)), 2),
            ValueError,
            r"adaptive_avg_pool2d.*\(1, 1, 4, 0\)",
        ),
        (lambda: F.max_pool2d(_x(), 0), ValueError, "max_pool2d: kernel_size must be >= 1"),
        (
            lambda: F.max_pool2d(_x(), (2,)),
            TypeError,
            "max_pool2d: kernel_size must be an int or a pair",
        ),
        (lambda: F.avg_pool2d(_x(), 2.0), TypeError, "avg_pool2d: kernel_size"),
        (lambda: F.max_pool2d(_x(), 2, stride=0), ValueError, "max_pool2d: stride must be >= 1"),
        (
            lambda: F.avg_pool2d(_x(), 2, stride=(1, -1)),
            ValueError,
            "avg_pool2d: stride must be >= 1",
        ),
        (
            lambda: F.max_pool2d(_x(), 2, dilation=0),
            ValueError,
            "max_pool2d: dilation must be >= 1",
        ),
        (lambda: F.max_pool2d(_x(), 2, padding=-1), ValueError, "max_pool2d: padding must be >= 0"),
        (
            lambda: F.max_pool2d(_x(), 3, padding=2),
            ValueError,
            "max_pool2d: padding should be at most half",
        ),
        (
            lambda: F.max_pool2d(_x(), 2, padding=2, dilation=3),
            ValueError,
            "max_pool2d: padding should",
        ),
        (
            lambda: F.avg_pool2d(_x(), (2, 4), padding=(1, 3)),
            ValueError,
            "avg_pool2d: padding should",
        ),
        (
            lambda: F.max_pool2d(_x(), 5, stride=1),
            ValueError,
            r"max_pool2d: input of shape \(1, 1, 4, 4\).*output size \(0, 0\)",
        ),
        (
            lambda: F.max_pool2d(_x(), 2, dilation=4),
            ValueError,
            r"max_pool2d.*output size \(0, 0\)",
        ),
        (
            lambda: F.avg_pool2d(_x((1, 1, 4, 2)), 3, padding=0, stride=1),
            ValueError,
            r"avg_pool2d.*output size \(2, 0\)",
        ),
        (
            lambda: F.avg_pool2d(_x(), 2, divisor_override=0),
            ValueError,
            "avg_pool2d: divisor_override must not be zero",
        ),
        (
            lambda: F.avg_pool2d(_x(), 2, divisor_override=1.5),
            TypeError,
            "avg_pool2d: divisor_override",
        ),
        (
            lambda: F.adaptive_avg_pool2d(_x(), -1),
            ValueError,
            "adaptive_avg_pool2d: output_size must be >= 0",
        ),
        (lambda: F.adaptive_avg_pool2d(_x(), (2,)), TypeError, "adaptive_avg_pool2d: output_size"),
        (
            lambda: F.adaptive_avg_pool2d(_x(), (2, 2, 2)),
            TypeError,
            "adaptive_avg_pool2d: output_size",
        ),
        (lambda: F.adaptive_avg_pool2d(_x(), 2.0), TypeError, "adaptive_avg_pool2d: output_size"),
        (
            lambda: F.adaptive_avg_pool2d(_x(), (None, -3)),
            ValueError,
            "adaptive_avg_pool2d: output_size",
        ),
    ],
)
def test_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
