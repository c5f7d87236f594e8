"""float16 / bfloat16 in our kernels: the conversions (csrc/emu/half.h on "emu", CUDA's intrinsics
on "cuda", through csrc/kernels/cast.cu) and ReLU, pooling, LRN and batch norm in the 16-bit types.

Each kernel runs on 16-bit inputs; its reference is the "cpu" backend in float32 on the very same
(rounded) inputs, rounded once to the 16-bit type at the end. The kernels compute in float32 too,
so the two differ only by float32 summation order and then by at most one rounding step of the
output: a relative tolerance of 2^-10 (float16: 10 fraction bits, the rounding is at most half an
ulp = 2^-11 relative, and a float32 difference can flip it to the neighbour: one ulp) and 2^-7 for
bfloat16 (7 fraction bits), plus an absolute term for values near zero where cancellation makes the
relative error meaningless (LRN's and BN's backward subtract terms of similar size).
"""

import ml_dtypes
import numpy as np
import pytest

from minicnn.backends import get_backend
from minicnn.ops.geometry import Pool2dGeometry

from kernel_devices import KERNEL_DEVICES, host, on

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = [pytest.param(np.dtype(np.float16), id="float16"), pytest.param(BF16, id="bfloat16")]
EPS = {np.dtype(np.float16): 2.0**-10, BF16: 2.0**-7}  # one ulp, relative (see the docstring)


def rounded(shape, dtype, seed, scale=1.0):
    """Standard normal values (times scale) in ``dtype``: the inputs both sides see."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def close(got, want32, dtype, atol_scale=0.0):
    """got (16-bit) equals the float32 reference rounded to ``dtype``, within one ulp (+ atol)."""
    assert got.dtype == dtype
    got = np.asarray(got, np.float32)
    want = np.asarray(want32, np.float32).astype(dtype).astype(np.float32)
    atol = atol_scale * EPS[dtype] * max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=EPS[dtype], atol=atol)


cpu = get_backend("cpu")


# ---- conversions ---------------------------------------------------------------------------------
def cast_to_float(device, dtype, x):
    b = get_backend(device)
    x = on(device, x)
    out = b.xp.empty(x.shape, np.float32)
    b.C.cast_to_float(dtype.name, b._ptr(out), b._ptr(x), x.size, b._stream())
    return host(device, out)


def cast_from_float(device, dtype, x):
    b = get_backend(device)
    x = on(device, np.ascontiguousarray(x, np.float32))
    out = b.xp.empty(x.shape, dtype)
    b.C.cast_from_float(dtype.name, b._ptr(out), b._ptr(x), x.size, b._stream())
    return host(device, out)


def same_bits_or_both_nan(got, want):
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.asarray(want).astype(got.dtype)
    nan = np.isnan(want.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_every_16_bit_pattern_to_float(device, dtype):
    x = np.arange(65536, dtype=np.uint16).view(dtype)
    got, want = cast_to_float(device, dtype, x), x.astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])


def float_edge_cases(dtype):
    """Every 16-bit value's float32, the midpoints between neighbours (ties to even) and one float32
    ulp either side of them, overflow thresholds, subnormals, zeros, infinities, NaN."""
    finite = np.arange(65536, dtype=np.uint16).view(dtype).astype(np.float32)
    finite = np.unique(finite[np.isfinite(finite)])
    mid = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    ups, downs = np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, 65536, 1e38, 2**-24, 2**-25,
         2**-25 * 1.0000001, 2**-26, 1e-45, -1e-45, 3.4e38, -3.4e38],
        np.float32,
    )  # fmt: skip
    return np.concatenate([finite, mid, ups, downs, specials])


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_float_to_16_bit_edge_cases_and_random_sweep(device, dtype):
    bits = np.random.default_rng(0).integers(0, 2**32, 200_000, dtype=np.uint64)
    x = np.concatenate([float_edge_cases(dtype), bits.astype(np.uint32).view(np.float32)])
    with np.errstate(over="ignore", invalid="ignore"):  # the reference overflows too
        want = x.astype(dtype)
    same_bits_or_both_nan(cast_from_float(device, dtype, x), want)


def test_cast_rejects_other_dtypes():
    b = get_backend("emu")
    x = np.zeros(2, np.float32)
    with pytest.raises(TypeError, match="cast_to_float: dtype must be float16 or bfloat16, got f"):
        b.C.cast_to_float("float64", b._ptr(x), b._ptr(x), 2, 0)


# ---- elementwise and pooling kernels -------------------------------------------------------------
@devices
@pytest.mark.parametrize("dtype", HALF)
def test_relu(device, dtype):
    b = get_backend(device)
    x = rounded((3, 5, 7), dtype, 1)
    x.flat[::11] = np.nan
    y = host(device, b.relu_forward(on(device, x)))
    same_bits_or_both_nan(y, cpu.relu_forward(x.astype(np.float32)).astype(dtype))
    dy = rounded(x.shape, dtype, 2)
    dx = host(device, b.relu_backward(*on(device, dy, y)))
    same_bits_or_both_nan(dx, cpu.relu_backward(dy.astype(np.float32), y.astype(np.float32)))


POOLS = [  # (x shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 9, 8), (3, 3), (2, 2), (1, 1), (1, 1), False),
    ((1, 2, 7, 7), (2, 3), (1, 2), (0, 1), (2, 1), True),
]


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", POOLS)
def test_max_pool2d(device, dtype, case):
    b = get_backend(device)
    g = Pool2dGeometry.of(*case)
    x = rounded(g.x_shape, dtype, 3)
    y, argmax = host(device, b.max_pool2d_forward(on(device, x), g))
    y32, argmax32 = cpu.max_pool2d_forward(x.astype(np.float32), g)
    np.testing.assert_array_equal(y, y32.astype(dtype))  # a max is exact
    np.testing.assert_array_equal(argmax, argmax32)
    dy = rounded(g.y_shape, dtype, 4)
    dx = host(device, b.max_pool2d_backward(*on(device, dy, argmax), g))
    close(dx, cpu.max_pool2d_backward(dy.astype(np.float32), argmax, g), dtype)
    with pytest.raises(ValueError, match="version 1 .* float32 or float64"):
        b.max_pool2d_backward(*on(device, dy, argmax), g, version=1)


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d(device, dtype, count_include_pad):
    b = get_backend(device)
    g = Pool2dGeometry.of((2, 3, 9, 8), (3, 2), (2, 1), (1, 1), count_include_pad=count_include_pad)
    x, dy = rounded(g.x_shape, dtype, 5), rounded(g.y_shape, dtype, 6)
    y = host(device, b.avg_pool2d_forward(on(device, x), g))
    close(y, cpu.avg_pool2d_forward(x.astype(np.float32), g), dtype, 1)
    dx = host(device, b.avg_pool2d_backward(on(device, dy), g))
    close(dx, cpu.avg_pool2d_backward(dy.astype(np.float32), g), dtype, 1)


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_adaptive_avg_pool2d(device, dtype):
    b = get_backend(device)
    g = Pool2dGeometry.adaptive((2, 3, 7, 9), (3, 4))
    x, dy = rounded(g.x_shape, dtype, 7), rounded(g.y_shape, dtype, 8)
    y = host(device, b.adaptive_avg_pool2d_forward(on(device, x), g))
    close(y, cpu.adaptive_avg_pool2d_forward(x.astype(np.float32), g), dtype, 1)
    dx = host(device, b.adaptive_avg_pool2d_backward(on(device, dy), g))
    close(dx, cpu.adaptive_avg_pool2d_backward(dy.astype(np.float32), g), dtype, 1)


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_local_response_norm(device, dtype):
    """A large alpha, so that the window's sum matters (a shifted window would fail)."""
    b = get_backend(device)
    size, alpha, beta, k = 5, 2.0, 0.75, 1.0
    x, dy = rounded((2, 7, 3, 4), dtype, 9), rounded((2, 7, 3, 4), dtype, 10)
    y, scale = host(device, b.local_response_norm_forward(on(device, x), size, alpha, beta, k))
    y32, scale32 = cpu.local_response_norm_forward(x.astype(np.float32), size, alpha, beta, k)
    close(y, y32, dtype, 1)
    close(scale, scale32, dtype)
    # the backward's reference uses the kernel's (rounded) scale, as the op would
    dx = host(device, b.local_response_norm_backward(*on(device, dy, x, scale), size, alpha, beta))
    f32 = [a.astype(np.float32) for a in (dy, x, scale)]
    close(dx, cpu.local_response_norm_backward(*f32, size, alpha, beta), dtype, 4)


# ---- batch norm: 16-bit x, y, dy, dx; float32 statistics and parameters -------------------------
@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 2, 40, 40), (1, 2, 1, 3)])
def test_batch_norm_training(device, dtype, shape):
    b = get_backend(device)
    C = shape[1]
    x = rounded(shape, dtype, 11, scale=3.0) + dtype.type(2.0)
    weight, bias = rounded((C,), np.float32, 12), rounded((C,), np.float32, 13)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    rm32, rv32 = rm.copy(), rv.copy()
    drm, drv = on(device, rm, rv)
    y, mean, invstd = host(
        device, b.batch_norm_forward_training(on(device, x), *on(device, weight, bias), drm, drv,
                                              0.1, 1e-5)
    )  # fmt: skip
    x32 = x.astype(np.float32)
    y32, mean32, invstd32 = cpu.batch_norm_forward_training(
        x32, weight, bias, rm32, rv32, 0.1, 1e-5
    )
    assert mean.dtype == invstd.dtype == np.float32
    np.testing.assert_allclose(mean, mean32, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(invstd, invstd32, rtol=1e-5)
    np.testing.assert_allclose(host(device, drm), rm32, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(device, drv), rv32, rtol=1e-5)
    close(y, y32, dtype, 2)
    dy = rounded(shape, dtype, 14)
    dx, dw, db = host(device, b.batch_norm_backward(
        *on(device, dy, x, weight, mean, invstd), True))  # fmt: skip
    dx32, dw32, db32 = cpu.batch_norm_backward(dy.astype(np.float32), x32, weight, mean, invstd,
                                               True)  # fmt: skip
    assert dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(dw, dw32, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, db32, rtol=1e-4, atol=1e-4)
    close(dx, dx32, dtype, 4)


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_batch_norm_inference(device, dtype):
    b = get_backend(device)
    x, dy = rounded((3, 4, 5, 5), dtype, 15), rounded((3, 4, 5, 5), dtype, 16)
    params = [rounded((4,), np.float32, s) for s in (17, 18, 19)]
    rv = np.abs(rounded((4,), np.float32, 20)) + 0.5
    y, mean, invstd = host(
        device, b.batch_norm_forward_inference(on(device, x), *on(device, *params, rv), 1e-5)
    )
    y32, mean32, invstd32 = cpu.batch_norm_forward_inference(
        x.astype(np.float32), *params, rv, 1e-5
    )
    close(y, y32, dtype, 2)
    np.testing.assert_allclose(invstd, invstd32, rtol=1e-6)
    dx, dw, db = host(device, b.batch_norm_backward(
        *on(device, dy, x, params[0], mean, invstd), False))  # fmt: skip
    ref = cpu.batch_norm_backward(
        dy.astype(np.float32), x.astype(np.float32), params[0], mean32, invstd32, False
    )
    close(dx, ref[0], dtype, 1)
    np.testing.assert_allclose(dw, ref[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, ref[2], rtol=1e-4, atol=1e-4)
