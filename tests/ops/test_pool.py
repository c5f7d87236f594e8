"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d against minicnn.reference's loops,
gradcheck, ties, float32, unbatched input. Errors: test_pool_errors.py; torch:
test_pool_torch.py."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck, separated
from conftest import assert_close
from kernel_devices import ALL_DEVICES, DTYPE_NAMES
from pool_cases import avg_args, has_empty_window, max_args, pool_cases, random_input


# ---- output sizes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,k,s,p,d,ceil,expected",
    [
        (55, 3, 2, 0, 1, False, 27),
        (27, 3, 2, 0, 1, False, 13),
        (13, 3, 2, 0, 1, False, 6),  # AlexNet
        (112, 3, 2, 1, 1, False, 56),  # ResNet
        (6, 2, 2, 0, 1, True, 3),
        (7, 2, 2, 0, 1, True, 4),
        (7, 2, 2, 0, 1, False, 3),
        (5, 3, 2, 1, 1, True, 3),  # the extra ceil window would start in the right padding: dropped
        (2, 3, 2, 0, 1, True, 1),  # ceil_mode keeps a window larger than the input
        (7, 2, 3, 1, 2, False, 3),
        (4, 1, 5, 0, 1, False, 1),
        (4, 1, 5, 0, 1, True, 1),
    ],
)
def test_output_size(n, k, s, p, d, ceil, expected):
    assert ref.pool_output_size(n, k, s, p, d, ceil) == expected
    x = minicnn.zeros(1, 2, n, n, dtype="float64")
    y = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
    assert y.shape == (1, 2, expected, expected)
    if d == 1:
        assert F.avg_pool2d(x, k, s, p, ceil_mode=ceil).shape == (1, 2, expected, expected)


# ---- max pooling --------------------------------------------------------------------------------
@given(case=pool_cases(), seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool2d_matches_naive_loop(case, seed, ties):
    c = case
    assume(not has_empty_window(c))
    xv = random_input(c, seed, ties)
    x = minicnn.tensor(xv, requires_grad=True)
    y, idx = F.max_pool2d(x, **max_args(c), return_indices=True)
    y_ref, idx_ref = ref.max_pool2d_forward(xv, **max_args(c))
    np.testing.assert_array_equal(y.numpy(), y_ref)
    np.testing.assert_array_equal(idx.numpy(), idx_ref)
    dout = np.random.default_rng(seed + 1).standard_normal(y.shape)
    y.backward(dout)
    assert_close(x.grad, ref.max_pool2d_backward(dout, xv, **max_args(c)))


@pytest.mark.parametrize(
    "shape,kw",
    [
        ((2, 2, 7, 7), dict(kernel_size=3, stride=2)),  # AlexNet, overlapping
        ((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ((1, 1, 7, 6), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
        ((1, 1, 5, 5), dict(kernel_size=2, stride=3, ceil_mode=True)),  # stride > kernel
        ((3, 5, 5), dict(kernel_size=2, stride=1, padding=1)),  # unbatched
    ],
)
def test_max_pool2d_gradcheck(shape, kw):
    x = minicnn.tensor(separated(shape), requires_grad=True)
    assert gradcheck(lambda t: F.max_pool2d(t, **kw), (x,), tol=1e-6)


def test_max_pool2d_ties_go_to_the_first_element_of_each_window():
    x = minicnn.zeros(1, 1, 5, 5, dtype="float64", requires_grad=True)
    y, idx = F.max_pool2d(x, 3, stride=2, return_indices=True)  # overlapping windows
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[0, 2], [10, 12]])
    y.backward(np.ones(y.shape))
    g = x.grad.numpy()[0, 0]
    expected = np.zeros((5, 5))
    expected[[0, 0, 2, 2], [0, 2, 0, 2]] = 1.0
    np.testing.assert_array_equal(g, expected)
    # one element per window; an element shared by two windows gets both gradients
    x2 = minicnn.tensor(np.array([[[[1.0, 5.0, 5.0, 5.0, 1.0]]]]), requires_grad=True)
    y2, idx2 = F.max_pool2d(x2, (1, 3), stride=(1, 1), return_indices=True)
    np.testing.assert_array_equal(idx2.numpy().ravel(), [1, 1, 2])
    y2.backward(np.array([[[[1.0, 10.0, 100.0]]]]))
    np.testing.assert_array_equal(x2.grad.numpy().ravel(), [0, 11, 100, 0, 0])


def test_max_pool2d_padding_counts_as_minus_infinity():
    xv = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3) - 100  # all negative: padding 0 would win
    y, idx = F.max_pool2d(minicnn.tensor(xv), 3, stride=1, padding=1, return_indices=True)
    assert y.numpy().max() < -100
    y_ref, idx_ref = ref.max_pool2d_forward(xv, 3, stride=1, padding=1)
    np.testing.assert_array_equal(y.numpy(), y_ref)
    np.testing.assert_array_equal(idx.numpy(), idx_ref)
    # a window of -inf inputs points at its first in-input element, as torch
    y, idx = F.max_pool2d(
        minicnn.tensor(np.full((1, 1, 3, 3), -np.inf)), 2, 1, 1, return_indices=True
    )
    np.testing.assert_array_equal(
        idx.numpy()[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5], [6, 6, 7, 8]]
    )


def test_max_pool2d_nan_propagates():
    xv = np.arange(16.0).reshape(1, 1, 4, 4)
    xv[0, 0, 0, 1] = np.nan
    xv[0, 0, 1, 0] = np.nan
    y, idx = F.max_pool2d(minicnn.tensor(xv), 2, return_indices=True)
    y_ref, idx_ref = ref.max_pool2d_forward(xv, 2)
    np.testing.assert_array_equal(y.numpy(), y_ref)  # NaN == NaN here
    np.testing.assert_array_equal(idx.numpy(), idx_ref)
    assert idx.numpy()[0, 0, 0, 0] == 4  # the last NaN, as torch


def test_max_pool2d_window_of_only_padding():
    """kernel 2, dilation 3, padding 1 on a 2x2 input: the window reads (-1, 2) along each axis."""
    x = minicnn.tensor(np.arange(4.0).reshape(1, 1, 2, 2), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, stride=1, padding=1, dilation=3, return_indices=True)
    assert y.numpy().ravel().tolist() == [-np.inf] and idx.numpy().ravel().tolist() == [6]
    y_ref, idx_ref = ref.max_pool2d_forward(x.numpy(), 2, stride=1, padding=1, dilation=3)
    assert y_ref.ravel().tolist() == [-np.inf] and idx_ref.ravel().tolist() == [6]
    y.backward(np.ones(y.shape))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((1, 1, 2, 2)))  # a constant: no gradient


def test_max_pool2d_indices_and_dtypes():
    for dtype in ("float32", "float64"):
        x = minicnn.tensor(separated((2, 3, 6, 6), seed=3), dtype=dtype, requires_grad=True)
        y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        assert y.dtype == np.dtype(dtype) and idx.dtype == np.int64 and not idx.requires_grad
        assert y.requires_grad and idx.shape == y.shape == (2, 3, 3, 3)
        y.sum().backward()
        assert x.grad.dtype == np.dtype(dtype)
    with minicnn.no_grad():
        y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert not y.requires_grad and idx.shape == (2, 3, 3, 3)


# ---- average pooling ----------------------------------------------------------------------------
@given(
    case=pool_cases(dilation=False),
    seed=st.integers(0, 2**16),
    include=st.booleans(),
    override=st.sampled_from([None, None, 1, 3, -2]),
)
def test_avg_pool2d_matches_naive_loop(case, seed, include, override):
    c = case
    xv = random_input(c, seed)
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.avg_pool2d(x, **avg_args(c), count_include_pad=include, divisor_override=override)
    dout = np.random.default_rng(seed + 1).standard_normal(y.shape)
    kw = dict(avg_args(c), count_include_pad=include, divisor_override=override)
    y_ref, dx_ref = ref.avg_pool2d_forward(xv, **kw), ref.avg_pool2d_backward(dout, xv.shape, **kw)
    assert_close(y, y_ref)
    y.backward(dout)
    assert_close(x.grad, dx_ref)


def test_avg_pool2d_divisor_of_windows_past_the_padded_border():
    """W = 6, kernel 3, stride 2, padding 1, ceil_mode: windows [-1, 2), [1, 4), [3, 6), [5, 8). The
    last runs past the padded extent [-1, 7): torch's count_include_pad divisor clips it to [5, 7)
    (2 columns); without padding counted, to the input [5, 6) (1 column)."""
    x = minicnn.tensor(np.arange(1.0, 7.0).reshape(1, 1, 1, 6))
    kw = dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1), ceil_mode=True)
    np.testing.assert_allclose(F.avg_pool2d(x, **kw).numpy().ravel(), [1, 3, 5, 3])
    np.testing.assert_allclose(
        F.avg_pool2d(x, **kw, count_include_pad=False).numpy().ravel(), [1.5, 3, 5, 6]
    )
    np.testing.assert_allclose(
        F.avg_pool2d(x, **kw, divisor_override=4).numpy().ravel(), [0.75, 2.25, 3.75, 1.5]
    )
    x = minicnn.tensor(np.arange(1.0, 6.0).reshape(1, 1, 1, 5))  # [4, 6) → 5 / 1
    y = F.avg_pool2d(x, (1, 2), ceil_mode=True)
    np.testing.assert_allclose(y.numpy().ravel(), [1.5, 3.5, 5.0])


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=(1, 3), stride=(4, 1), divisor_override=5),
    ],
)
def test_avg_pool2d_gradcheck(kw):
    x = minicnn.tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool2d(t, **kw), (x,), tol=1e-6)


# ---- adaptive average pooling -------------------------------------------------------------------
@given(
    N=st.integers(1, 2),
    C=st.integers(1, 2),
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    P=st.integers(1, 12),
    Q=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_adaptive_avg_pool2d_matches_naive_loop(N, C, H, W, P, Q, seed):
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((N, C, H, W))
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, (P, Q))
    dout = rng.standard_normal((N, C, P, Q))
    y_ref = ref.adaptive_avg_pool2d_forward(xv, (P, Q))
    dx_ref = ref.adaptive_avg_pool2d_backward(dout, xv.shape)
    assert_close(y, y_ref)
    y.backward(dout)
    assert_close(x.grad, dx_ref)


@pytest.mark.parametrize(
    "size,expected",
    [
        (1, (1, 1)),
        (3, (3, 3)),
        ((None, 2), (7, 2)),
        ((4, None), (4, 5)),
        ((None, None), (7, 5)),
        ([2, 9], (2, 9)),
        (0, (0, 0)),
    ],
)
def test_adaptive_avg_pool2d_output_size(size, expected):
    x = minicnn.tensor(np.random.default_rng(0).standard_normal((2, 3, 7, 5)), requires_grad=True)
    y = F.adaptive_avg_pool2d(x, size)
    assert y.shape == (2, 3) + expected
    y.backward(np.ones(y.shape))
    assert x.grad.shape == x.shape


def test_adaptive_avg_pool2d_global_is_the_mean():
    xv = np.random.default_rng(0).standard_normal((2, 3, 6, 5))
    assert_close(F.adaptive_avg_pool2d(minicnn.tensor(xv), 1), xv.mean(axis=(2, 3), keepdims=True))


def test_adaptive_avg_pool2d_gradcheck():
    x = minicnn.tensor(np.random.default_rng(2).standard_normal((1, 2, 5, 7)), requires_grad=True)
    for size in [(3, 4), (7, 9), 1]:
        assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, size), (x,), tol=1e-6)


# ---- shared behaviour: float32, unbatched, empty batch ------------------------------------------
POOLS = {
    "max": lambda t: F.max_pool2d(t, 3, stride=2, padding=1, ceil_mode=True),
    "avg": lambda t: F.avg_pool2d(
        t, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False
    ),
    "adaptive": lambda t: F.adaptive_avg_pool2d(t, (3, 4)),
}
OUT_SHAPE = {
    "max": (2, 3, 4, 4),
    "avg": (2, 3, 4, 4),
    "adaptive": (2, 3, 3, 4),
}  # of a (2, 3, 7, 6) input


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", POOLS)
def test_float32_agrees_with_float64(name, device):
    xv = separated((2, 3, 7, 6), seed=5)
    dout = np.random.default_rng(6).standard_normal(OUT_SHAPE[name])
    grads, outs = {}, {}
    for dtype in ("float32", "float64"):
        x = minicnn.tensor(xv, dtype=dtype, device=device, requires_grad=True)
        y = POOLS[name](x)
        assert y.dtype == np.dtype(dtype)
        y.backward(minicnn.tensor(dout, dtype=dtype, device=device))
        assert x.grad.dtype == np.dtype(dtype)
        outs[dtype], grads[dtype] = y.numpy(), x.grad.numpy()
    assert_close(outs["float32"], outs["float64"], np.float32)
    assert_close(grads["float32"], grads["float64"], np.float32)


@pytest.mark.parametrize("name", POOLS)
def test_unbatched_input_is_one_sample(name):
    xv = separated((3, 7, 6), seed=7)
    x3 = minicnn.tensor(xv, requires_grad=True)
    x4 = minicnn.tensor(xv[None], requires_grad=True)
    y3, y4 = POOLS[name](x3), POOLS[name](x4)
    assert y3.ndim == 3
    assert_close(y3, y4.numpy()[0])
    dout = np.random.default_rng(8).standard_normal(y3.shape)
    y3.backward(dout)
    y4.backward(dout[None])
    assert_close(x3.grad, x4.grad.numpy()[0])


def test_unbatched_max_pool2d_indices():
    xv = separated((2, 4, 4), seed=1)
    _, i3 = F.max_pool2d(minicnn.tensor(xv), 2, return_indices=True)
    _, i4 = F.max_pool2d(minicnn.tensor(xv[None]), 2, return_indices=True)
    assert i3.shape == (2, 2, 2)
    np.testing.assert_array_equal(i3.numpy(), i4.numpy()[0])


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name", POOLS)
def test_empty_batch(name, device, dtype):
    x = minicnn.zeros(0, 3, 7, 6, dtype=dtype, device=device, requires_grad=True)
    y = POOLS[name](x)
    assert y.shape == (0,) + OUT_SHAPE[name][1:] and y.dtype == np.dtype(dtype)
    y.backward(minicnn.zeros(*y.shape, dtype=dtype, device=device))
    assert x.grad.shape == x.shape and x.grad.dtype == np.dtype(dtype)
