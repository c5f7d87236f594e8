"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d against minicnn.reference's loops,
gradcheck, ties, float32, unbatched input, every error, and (optionally) torch."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck, separated
from conftest import assert_close


# ---- the oracle: minicnn.reference (explicit loops over the output pixels) ----------------------
def has_empty_window(case):
    """Whether some max-pool window reads only padding (torch then returns -inf): where the
    reference's max of a finite input is -inf."""
    y, _ = ref.max_pool2d_forward(np.zeros((1, 1, case["H"], case["W"])), **max_args(case))
    return bool(np.isinf(y).any())


# ---- hypothesis strategies ----------------------------------------------------------------------
@st.composite
def pool_cases(draw, dilation=True):
    """Kernel, stride (also > kernel), padding (≤ kernel // 2), dilation, ceil_mode and an input
    size at or near the smallest that gives an output."""
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    pad = (draw(st.integers(0, R // 2)), draw(st.integers(0, S // 2)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    sizes = []
    for r, s, p, d in zip((R, S), stride, pad, dil):
        lo = max(1, d * (r - 1) + 1 - 2 * p - (s - 1 if ceil_mode else 0))
        sizes.append(draw(st.integers(lo, lo + 5)))
    H, W = sizes
    P = ref.pool_output_size(H, R, stride[0], pad[0], dil[0], ceil_mode)
    Q = ref.pool_output_size(W, S, stride[1], pad[1], dil[1], ceil_mode)
    assume(P >= 1 and Q >= 1)
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return dict(
        N=N, C=C, H=H, W=W, R=R, S=S, stride=stride, pad=pad, dil=dil, ceil_mode=ceil_mode, P=P, Q=Q
    )


def random_input(case, seed, ties=False):
    rng = np.random.default_rng(seed)
    shape = (case["N"], case["C"], case["H"], case["W"])
    return rng.integers(-2, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)


def max_args(c):
    return dict(
        kernel_size=(c["R"], c["S"]),
        stride=c["stride"],
        padding=c["pad"],
        dilation=c["dil"],
        ceil_mode=c["ceil_mode"],
    )


def avg_args(c):
    return dict(
        kernel_size=(c["R"], c["S"]), stride=c["stride"], padding=c["pad"], ceil_mode=c["ceil_mode"]
    )


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


@pytest.mark.parametrize("name", POOLS)
def test_float32_agrees_with_float64(name):
    xv = separated((2, 3, 7, 6), seed=5)
    dout = np.random.default_rng(6).standard_normal(OUT_SHAPE[name])
    grads, outs = {}, {}
    for dtype in ("float32", "float64"):
        x = minicnn.tensor(xv, dtype=dtype, requires_grad=True)
        y = POOLS[name](x)
        assert y.dtype == np.dtype(dtype)
        y.backward(dout.astype(dtype))
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


@pytest.mark.parametrize("name", POOLS)
def test_empty_batch(name):
    x = minicnn.zeros(0, 3, 7, 6, dtype="float64", requires_grad=True)
    y = POOLS[name](x)
    assert y.shape == (0,) + OUT_SHAPE[name][1:]
    y.backward(np.zeros(y.shape))
    assert x.grad.shape == x.shape


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


# ---- optional: torch ----------------------------------------------------------------------------
def _torch_grads(torch_fn, xv, dout):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(xv, requires_grad=True)
    out = torch_fn(xt)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(dout))
    return out, xt.grad.numpy()


@given(case=pool_cases(), seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool2d_matches_torch(case, seed, ties):
    torch = pytest.importorskip("torch")
    c = case
    assume(not has_empty_window(c))
    xv = random_input(c, seed, ties)
    dout = np.random.default_rng(seed + 1).standard_normal((c["N"], c["C"], c["P"], c["Q"]))
    (yt, it), gt = _torch_grads(
        lambda t: torch.nn.functional.max_pool2d(t, **max_args(c), return_indices=True), xv, dout
    )
    x = minicnn.tensor(xv, requires_grad=True)
    y, idx = F.max_pool2d(x, **max_args(c), return_indices=True)
    y.backward(dout)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), it.numpy())
    assert_close(x.grad, gt)


def test_max_pool2d_matches_torch_on_nan_inf_and_only_padding_windows():
    torch = pytest.importorskip("torch")
    xv = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    xv[0, 0, 1, 1] = xv[0, 0, 2, 3] = np.nan
    xv[0, 1, :2, :2] = -np.inf
    for kw in [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, stride=1, padding=1),
        dict(kernel_size=2, stride=2, padding=1, dilation=4, ceil_mode=True),
    ]:
        yt, it = torch.nn.functional.max_pool2d(torch.tensor(xv), **kw, return_indices=True)
        y, idx = F.max_pool2d(minicnn.tensor(xv), **kw, return_indices=True)
        np.testing.assert_array_equal(y.numpy(), yt.numpy())
        np.testing.assert_array_equal(idx.numpy(), it.numpy())


@given(
    case=pool_cases(dilation=False),
    seed=st.integers(0, 2**16),
    include=st.booleans(),
    override=st.sampled_from([None, None, 2, -3]),
)
def test_avg_pool2d_matches_torch(case, seed, include, override):
    torch = pytest.importorskip("torch")
    c = case
    xv = random_input(c, seed)
    dout = np.random.default_rng(seed + 1).standard_normal((c["N"], c["C"], c["P"], c["Q"]))
    kw = dict(avg_args(c), count_include_pad=include, divisor_override=override)
    yt, gt = _torch_grads(lambda t: torch.nn.functional.avg_pool2d(t, **kw), xv, dout)
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.avg_pool2d(x, **kw)
    y.backward(dout)
    assert_close(y, yt.detach().numpy())
    assert_close(x.grad, gt)


@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    P=st.integers(1, 12),
    Q=st.integers(1, 12),
    keep_h=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_adaptive_avg_pool2d_matches_torch(H, W, P, Q, keep_h, seed):
    """(torch's backward refuses an empty output, which minicnn allows: P, Q ≥ 1 here.)"""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((2, 3, H, W))
    size = (None if keep_h else P, Q)
    dout = rng.standard_normal((2, 3, H if keep_h else P, Q))
    yt, gt = _torch_grads(lambda t: torch.nn.functional.adaptive_avg_pool2d(t, size), xv, dout)
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, size)
    y.backward(dout)
    assert_close(y, yt.detach().numpy())
    assert_close(x.grad, gt)
