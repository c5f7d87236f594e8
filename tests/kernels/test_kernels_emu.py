"""Every CUDA kernel (csrc/kernels) against the cpu backend, on "emu" (and "cuda" when usable).

The kernel functions of a device backend are called directly, as the ops call them, on the same
inputs as numpy_backend's: float64 must agree to ~1e-10, float32 to a dtype-aware tolerance; data
movement (ReLU, max-pool values and argmax) must agree exactly. Hypothesis draws the shapes and
hyperparameters: odd sizes and sizes that are no multiple of the 256-thread block, batch 1, many
channels over few pixels and the reverse, overlapping windows, ceil mode, dilation, LRN sizes 3/5/7
with large alpha, batch norm with one pixel per channel and with large means.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minicnn.backends import get_backend
from minicnn.ops.geometry import Pool2dGeometry

from kernel_devices import DTYPES, KERNEL_DEVICES, host, on

cpu = get_backend("cpu")

pytestmark = pytest.mark.parametrize("device", KERNEL_DEVICES)


def close(actual, expected, dtype, scale=1.0):
    """float64: 1e-10 relative (atol 1e-10·scale); float32: 1e-4 relative (atol 1e-5·scale).

    ``scale``: the magnitude of the terms that cancel in the result, where it is not the result's.
    """
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def randn(rng, shape, dtype, scale=1.0, offset=0.0):
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


# ---- relu ---------------------------------------------------------------------------------------
@given(
    shape=st.lists(st.integers(0, 9), max_size=4), seed=st.integers(0, 2**16), special=st.booleans()
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(device, dtype, shape, seed, special):
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, dtype)
    if special and x.size:
        x.flat[rng.integers(0, x.size, 3)] = [np.nan, 0.0, -0.0]
    dout = randn(rng, shape, dtype)
    backend = get_backend(device)
    y = host(device, backend.relu_forward(on(device, x)))
    np.testing.assert_array_equal(y, cpu.relu_forward(x))
    assert y.dtype == dtype and y.shape == x.shape
    dx = host(device, backend.relu_backward(*on(device, dout, y)))
    np.testing.assert_array_equal(dx, cpu.relu_backward(dout, y))


@pytest.mark.parametrize("n", [1, 255, 256, 257, 100_003])
def test_relu_sizes_around_the_block(device, n):
    x = np.random.default_rng(n).standard_normal(n)
    np.testing.assert_array_equal(
        host(device, get_backend(device).relu_forward(on(device, x))), np.maximum(x, 0)
    )


# ---- pooling geometry ---------------------------------------------------------------------------
@st.composite
def pool_inputs(draw, dilation=True):
    """The Pool2dGeometry of a valid pooling."""
    layout = draw(st.sampled_from(["small", "many channels", "many pixels"]))
    N = draw(st.integers(1, 3))
    if layout == "small":
        C, H, W = draw(st.integers(1, 4)), draw(st.integers(1, 13)), draw(st.integers(1, 13))
    elif layout == "many channels":
        C, H, W = draw(st.integers(20, 70)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    else:
        C, H, W = 1, draw(st.integers(17, 40)), draw(st.integers(17, 40))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, R // 2)), draw(st.integers(0, S // 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    try:
        return Pool2dGeometry.of((N, C, H, W), (R, S), stride, padding, dil, ceil_mode)
    except ValueError:  # no output
        assume(False)


def pool_values(rng, shape, dtype, kind):
    if kind == "ties":  # few distinct values: the first maximum must win, as on cpu
        return rng.integers(-2, 3, shape).astype(dtype)
    x = randn(rng, shape, dtype)
    if kind == "nan" and x.size:
        x.flat[rng.integers(0, x.size, 2)] = np.nan
    return x


# ---- max pooling --------------------------------------------------------------------------------
@given(
    case=pool_inputs(), seed=st.integers(0, 2**16), kind=st.sampled_from(["normal", "ties", "nan"])
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d(device, dtype, case, seed, kind):
    g = case
    rng = np.random.default_rng(seed)
    x = pool_values(rng, g.x_shape, dtype, kind)
    backend = get_backend(device)
    y, argmax = host(device, backend.max_pool2d_forward(on(device, x), g))
    y_ref, argmax_ref = cpu.max_pool2d_forward(x, g)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    assert argmax.dtype == np.int64
    dout = randn(rng, y.shape, dtype)
    dx_ref = cpu.max_pool2d_backward(dout, argmax_ref, g)
    for version in (1, 2):
        dx = host(
            device, backend.max_pool2d_backward(*on(device, dout, argmax), g, version=version)
        )
        close(dx, dx_ref, dtype)


def test_max_pool2d_alexnet_overlapping_windows(device):
    """3x3 windows with stride 2 (AlexNet): every interior pixel is read by up to 4 windows."""
    x = np.random.default_rng(0).standard_normal((2, 3, 27, 27))
    backend = get_backend(device)
    g = Pool2dGeometry.of(x.shape, (3, 3), (2, 2))
    assert g.out_size == (13, 13)
    y, argmax = host(device, backend.max_pool2d_forward(on(device, x), g))
    y_ref, argmax_ref = cpu.max_pool2d_forward(x, g)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dout = np.random.default_rng(1).standard_normal(y.shape)
    dx = host(device, backend.max_pool2d_backward(*on(device, dout, argmax), g))
    close(dx, cpu.max_pool2d_backward(dout, argmax_ref, g), np.float64)


@pytest.mark.parametrize(
    "x_shape, args",
    [
        ((1, 2, 1, 1), ((2, 2), (1, 1), (1, 1), (2, 2))),
        # rows are fine but the columns -1 and 1 miss the one column: torch's index h*W + 1 then
        # names
        # pixel (h + 1, 0), which must not get the gradient
        ((2, 3, 4, 1), ((1, 2), (1, 1), (0, 1), (1, 2))),
    ],
)
def test_max_pool2d_window_of_padding_only(device, x_shape, args):
    """Dilation can leave a window with no input pixel: -inf, torch's index, and no gradient."""
    x = np.random.default_rng(0).standard_normal(x_shape)
    g = Pool2dGeometry.of(x_shape, *args)
    backend = get_backend(device)
    y, argmax = host(device, backend.max_pool2d_forward(on(device, x), g))
    y_ref, argmax_ref = cpu.max_pool2d_forward(x, g)
    assert np.isneginf(y_ref).all()
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dout = np.ones(y.shape)
    for version in (1, 2):
        dx = host(
            device, backend.max_pool2d_backward(*on(device, dout, argmax), g, version=version)
        )
        np.testing.assert_array_equal(dx, np.zeros(x_shape))


# ---- average pooling ----------------------------------------------------------------------------
@given(
    case=pool_inputs(dilation=False),
    seed=st.integers(0, 2**16),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(-3, 7).filter(bool)),
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d(device, dtype, case, seed, count_include_pad, divisor_override):
    g = replace(case, count_include_pad=count_include_pad, divisor_override=divisor_override)
    rng = np.random.default_rng(seed)
    x = randn(rng, g.x_shape, dtype)
    backend = get_backend(device)
    y = host(device, backend.avg_pool2d_forward(on(device, x), g))
    close(y, cpu.avg_pool2d_forward(x, g), dtype)
    dout = randn(rng, y.shape, dtype)
    dx = host(device, backend.avg_pool2d_backward(on(device, dout), g))
    close(dx, cpu.avg_pool2d_backward(dout, g), dtype)


@given(
    N=st.integers(1, 3),
    C=st.integers(1, 40),
    H=st.integers(1, 12),
    W=st.integers(1, 12),
    P=st.integers(0, 14),
    Q=st.integers(0, 14),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_avg_pool2d(device, dtype, N, C, H, W, P, Q, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (N, C, H, W), dtype)
    backend = get_backend(device)
    g = Pool2dGeometry.adaptive(x.shape, (P, Q))
    y = host(device, backend.adaptive_avg_pool2d_forward(on(device, x), g))
    close(y, cpu.adaptive_avg_pool2d_forward(x, g), dtype)
    dout = randn(rng, y.shape, dtype)
    dx = host(device, backend.adaptive_avg_pool2d_backward(on(device, dout), g))
    close(dx, cpu.adaptive_avg_pool2d_backward(dout, g), dtype)


# ---- local response normalization ---------------------------------------------------------------
@given(
    N=st.integers(1, 2),
    C=st.one_of(st.integers(1, 12), st.integers(30, 70)),
    HW=st.integers(1, 40),
    size=st.sampled_from([3, 5, 7, 1, 2, 4, 9]),
    alpha=st.sampled_from([1e-4, 0.5, 2.0, 10.0]),
    beta=st.sampled_from([0.5, 0.75, 1.0]),
    k=st.sampled_from([1.0, 2.0]),
    seed=st.integers(0, 2**16),
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_local_response_norm(device, dtype, N, C, HW, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, (N, C, HW, 1), dtype, scale=2.0)
    backend = get_backend(device)
    y, scale = host(
        device, backend.local_response_norm_forward(on(device, x), size, alpha, beta, k)
    )
    y_ref, scale_ref = cpu.local_response_norm_forward(x, size, alpha, beta, k)
    close(scale, scale_ref, dtype)
    close(y, y_ref, dtype)
    dout = randn(rng, x.shape, dtype)
    dx = host(
        device, backend.local_response_norm_backward(*on(device, dout, x, scale), size, alpha, beta)
    )
    dx_ref = cpu.local_response_norm_backward(dout, x, scale_ref, size, alpha, beta)
    terms = np.abs(dout * scale_ref**-beta).max() + np.abs(dx_ref).max()  # what cancels in dx
    close(dx, dx_ref, dtype, scale=terms)


def test_local_response_norm_window_is_not_shifted(device):
    """One nonzero channel: just the channels whose window holds it are normalised (even size)."""
    x = np.zeros((1, 9, 1, 1))
    x[0, 4] = 3.0
    x[0, :, 0, 0] += 1e-3 * np.arange(9)
    backend = get_backend(device)
    for size in (3, 4, 5, 7):
        y, scale = host(
            device, backend.local_response_norm_forward(on(device, x), size, 10.0, 0.75, 1.0)
        )
        y_ref, scale_ref = cpu.local_response_norm_forward(x, size, 10.0, 0.75, 1.0)
        close(scale, scale_ref, np.float64)
        close(y, y_ref, np.float64)


# ---- batch normalization ------------------------------------------------------------------------
@st.composite
def batch_norm_inputs(draw):
    N, C = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    H, W = draw(st.sampled_from([(1, 1), (1, 3), (2, 2), (5, 3), (17, 16)]))
    assume(N * H * W > 1)
    offset = draw(
        st.sampled_from([0.0, 1.0, 1e3, -1e4])
    )  # large means: the variance must be stable
    spread = draw(st.sampled_from([0.01, 1.0, 10.0]))
    return (
        (N, C, H, W),
        offset,
        spread,
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.sampled_from([0.1, 0.9])),
    )


def batch_norm_scale(x, weight, dtype):
    """How far x̂ may be off, relative to close()'s atol: no implementation locates x - mean better
    than ~eps·max|x| (x itself is rounded that much), which is eps·max|x|/std in x̂. 1 for data of
    moderate mean; a one-pass variance E[x²] - mean² would be off by ~eps·(max|x|/std)² instead."""
    eps, atol = (2.2e-16, 1e-10) if np.dtype(dtype) == np.float64 else (1.2e-7, 1e-5)
    std = x.astype(np.float64).std(axis=(0, 2, 3)).min()
    w = 1.0 if weight is None else max(np.abs(weight).max(), 1.0)
    return max(1.0, 16 * eps * w * np.abs(x).max() / max(std, 1e-30) / atol)


@given(case=batch_norm_inputs(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_training(device, dtype, case, seed):
    shape, offset, spread, affine, running, momentum = case
    if np.dtype(dtype) == np.float32:
        spread = max(spread, 1.0)
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = randn(rng, shape, dtype, scale=spread, offset=offset)
    weight, bias = (randn(rng, (C,), dtype), randn(rng, (C,), dtype)) if affine else (None, None)
    rm, rv = (
        (randn(rng, (C,), dtype), rng.uniform(0.5, 2, C).astype(dtype)) if running else (None, None)
    )
    backend = get_backend(device)
    rm_d, rv_d = on(device, rm, rv)
    y, mean, invstd = host(
        device,
        backend.batch_norm_forward_training(
            *on(device, x, weight, bias), rm_d, rv_d, momentum, 1e-5
        ),
    )
    rm_ref, rv_ref = (None, None) if rm is None else (rm.copy(), rv.copy())
    y_ref, mean_ref, invstd_ref = cpu.batch_norm_forward_training(
        x, weight, bias, rm_ref, rv_ref, momentum, 1e-5
    )
    scale = batch_norm_scale(x, weight, dtype)
    close(mean, mean_ref, dtype, scale=abs(offset) + spread)
    close(invstd, invstd_ref, dtype, scale=scale * invstd_ref.max())
    close(y, y_ref, dtype, scale=scale)
    if running:
        close(host(device, rm_d), rm_ref, dtype, scale=abs(offset) + spread)
        close(host(device, rv_d), rv_ref, dtype, scale=scale * spread**2)

    dout = randn(rng, shape, dtype)
    dx, dweight, dbias = host(
        device,
        backend.batch_norm_backward(*on(device, dout, x, weight, mean_ref, invstd_ref), True),
    )
    dx_ref, dweight_ref, dbias_ref = cpu.batch_norm_backward(
        dout, x, weight, mean_ref, invstd_ref, True
    )
    M = x.size // C
    g = (1.0 if weight is None else np.abs(weight).max()) * invstd_ref.max()
    close(dbias, dbias_ref, dtype, scale=M)
    close(dweight, dweight_ref, dtype, scale=M * scale)
    close(dx, dx_ref, dtype, scale=g * scale)


@given(case=batch_norm_inputs(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_inference(device, dtype, case, seed):
    shape, offset, spread, affine, _, _ = case
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = randn(rng, shape, dtype, scale=spread, offset=offset)
    weight, bias = (randn(rng, (C,), dtype), randn(rng, (C,), dtype)) if affine else (None, None)
    rm = (offset + spread * rng.standard_normal(C)).astype(dtype)
    rv = (spread**2 * rng.uniform(0.5, 2, C)).astype(dtype)
    backend = get_backend(device)
    y, mean, invstd = host(
        device, backend.batch_norm_forward_inference(*on(device, x, weight, bias, rm, rv), 1e-5)
    )
    y_ref, mean_ref, invstd_ref = cpu.batch_norm_forward_inference(x, weight, bias, rm, rv, 1e-5)
    scale = batch_norm_scale(x, weight, dtype)
    np.testing.assert_array_equal(mean, mean_ref)
    close(invstd, invstd_ref, dtype)
    close(y, y_ref, dtype, scale=scale)
    dout = randn(rng, shape, dtype)
    dx, dweight, dbias = host(
        device,
        backend.batch_norm_backward(*on(device, dout, x, weight, mean_ref, invstd_ref), False),
    )
    dx_ref, dweight_ref, dbias_ref = cpu.batch_norm_backward(
        dout, x, weight, mean_ref, invstd_ref, False
    )
    M = x.size // C
    close(dx, dx_ref, dtype)
    close(dbias, dbias_ref, dtype, scale=M)
    close(dweight, dweight_ref, dtype, scale=M * scale)


def test_batch_norm_one_pixel_per_channel_and_huge_mean(device):
    """(N, C, 1, 1), N > 1, values 1e8 + O(1): two-pass statistics keep every digit in float64."""
    rng = np.random.default_rng(0)
    x = 1e8 + rng.standard_normal((8, 5, 1, 1))
    backend = get_backend(device)
    y, mean, invstd = host(
        device,
        backend.batch_norm_forward_training(on(device, x), None, None, None, None, 0.1, 1e-5),
    )
    exact = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
    np.testing.assert_allclose(y, exact, rtol=1e-6, atol=1e-6)
    close(
        invstd, cpu.batch_norm_forward_training(x, None, None, None, None, 0.1, 1e-5)[2], np.float64
    )


def test_batch_norm_many_values_per_channel(device):
    """M = 2·64·64 values per channel: many iterations of every thread's strided loop."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64))
    backend = get_backend(device)
    y, mean, invstd = host(
        device,
        backend.batch_norm_forward_training(on(device, x), None, None, None, None, 0.1, 1e-5),
    )
    y_ref, mean_ref, invstd_ref = cpu.batch_norm_forward_training(
        x, None, None, None, None, 0.1, 1e-5
    )
    close(y, y_ref, np.float64)
    close(mean, mean_ref, np.float64)
