"""conv2d: forward and gradients against the naive loops of minicnn.reference, gradcheck,
hypothesis over the hyperparameters, float32 vs float64, the C++ and NumPy im2col paths, every
error, and torch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.backends import _np_conv
from minicnn.ops.geometry import Conv2dGeometry
from conftest import assert_close
from kernel_devices import ALL_DEVICES, DTYPE_NAMES


# ---- the oracle: minicnn.reference ---------------------------------------------------------------
def naive_conv2d(x, w, b, stride, padding, dilation, groups, dout=None):
    """minicnn.reference's loops: y, and with ``dout`` also (y, dx, dw, db).

    padding is ((top, bottom), (left, right)), so torch's asymmetric 'same' is covered.
    """
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = ref.conv2d_forward(x, w, b, **kw)
    return y if dout is None else (y,) + ref.conv2d_backward(dout, x, w, **kw)


def sym(padding):
    return tuple((p, p) for p in padding)


def make(shape, seed, dtype=np.float64, requires_grad=True):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return a, minicnn.tensor(a, requires_grad=requires_grad)


def run_conv(x_shape, w_shape, bias=True, dtype=np.float64, seed=0, **kw):
    """minicnn's y, dx, dw, db for random inputs and a random cotangent, plus the raw arrays."""
    x, xt = make(x_shape, seed, dtype)
    w, wt = make(w_shape, seed + 1, dtype)
    b, bt = make(w_shape[:1], seed + 2, dtype) if bias else (None, None)
    y = F.conv2d(xt, wt, bt, **kw)
    dout = np.random.default_rng(seed + 3).standard_normal(y.shape).astype(dtype)
    y.backward(dout)
    grads = (xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy() if bias else None)
    return (x, w, b, dout), (y.numpy(),) + grads


# ---- forward and backward vs the naive loops ----------------------------------------------------
# (x_shape, w_shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 2, 7, 7), (2, 2, 2, 2), (3, 3), (0, 0), (1, 1), 1),  # stride > kernel
    ((2, 4, 6, 5), (6, 2, 3, 2), (2, 1), (1, 2), (2, 1), 2),  # groups, dilation, asymmetric
    ((1, 3, 5, 5), (3, 1, 3, 3), (1, 1), (1, 1), (1, 1), 3),  # depthwise
    ((2, 3, 4, 4), (5, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1),  # 1x1 (no im2col)
    ((1, 2, 5, 5), (2, 2, 1, 1), (2, 2), (1, 1), (1, 1), 1),  # 1x1 strided and padded
    ((1, 1, 13, 13), (2, 1, 11, 11), (4, 4), (2, 2), (1, 1), 1),  # 11x11 / 4 (AlexNet conv1)
]


def check_against_naive(x_shape, w_shape, stride, padding, dilation, groups, bias):
    """conv2d's output and gradients (cpu) against the naive loops of minicnn.reference."""
    (x, w, b, dout), got = run_conv(
        x_shape, w_shape, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    want = naive_conv2d(x, w, b, stride, sym(padding), dilation, groups, dout)
    for g, e in zip(got, want):
        if g is not None:
            assert_close(g, e)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CASES)
def test_forward_and_grads_match_naive(x_shape, w_shape, stride, padding, dilation, groups, bias):
    check_against_naive(x_shape, w_shape, stride, padding, dilation, groups, bias)


@pytest.mark.parametrize(
    "kernel, dilation",
    [((2, 2), (1, 1)), ((4, 3), (1, 1)), ((2, 3), (3, 2)), ((3, 3), (2, 2)), ((1, 4), (1, 1))],
)
def test_same_padding_matches_naive(kernel, dilation):
    x_shape, w_shape = (1, 2, 5, 6), (3, 2) + kernel
    (x, w, b, dout), got = run_conv(x_shape, w_shape, padding="same", dilation=dilation)
    assert got[0].shape[2:] == x_shape[2:]
    total = [d * (k - 1) for d, k in zip(dilation, kernel)]
    pad = tuple((t // 2, t - t // 2) for t in total)  # the odd one out goes bottom/right
    for g, e in zip(got, naive_conv2d(x, w, b, (1, 1), pad, dilation, 1, dout)):
        assert_close(g, e)


def test_valid_padding_and_int_arguments():
    (x, w, b, dout), got = run_conv(
        (1, 2, 6, 6), (2, 2, 3, 3), padding="valid", stride=2, dilation=1
    )
    assert_close(got[0], naive_conv2d(x, w, b, (2, 2), sym((0, 0)), (1, 1), 1))


def test_unbatched_input():
    x, xt = make((2, 5, 5), 0)
    w, wt = make((3, 2, 3, 3), 1)
    y = F.conv2d(xt, wt, padding=1)
    assert y.shape == (3, 5, 5)
    assert_close(y, naive_conv2d(x[None], w, None, (1, 1), sym((1, 1)), (1, 1), 1)[0])
    y.sum().backward()
    assert xt.grad.shape == (2, 5, 5)


def test_unbatched_input_errors_name_its_own_shape():
    with pytest.raises(ValueError, match=r"conv2d: input \(4, 5, 5\) has 4 channels"):
        F.conv2d(t(4, 5, 5), t(3, 3, 3, 3))


def test_non_contiguous_input():
    x, xt = make((2, 3, 6, 5), 0)
    w, wt = make((4, 3, 3, 2), 1)
    y = F.conv2d(xt.transpose(2, 3), wt, stride=(2, 1), padding=1)
    assert_close(y, naive_conv2d(x.transpose(0, 1, 3, 2), w, None, (2, 1), sym((1, 1)), (1, 1), 1))


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("device", ALL_DEVICES)
def test_empty_batch(device, dtype):
    """N = 0: a (0, K, P, Q) output, a (0, C, H, W) input gradient, zero weight and bias grads."""
    x = minicnn.zeros(0, 2, 5, 5, dtype=dtype, device=device, requires_grad=True)
    w = minicnn.ones(3, 2, 3, 3, dtype=dtype, device=device, requires_grad=True)
    b = minicnn.ones(3, dtype=dtype, device=device, requires_grad=True)
    y = F.conv2d(x, w, b)
    assert y.shape == (0, 3, 3, 3) and y.dtype == np.dtype(dtype)
    y.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((3, 2, 3, 3)))
    np.testing.assert_array_equal(b.grad.numpy(), np.zeros(3))


# ---- hypothesis over shapes and hyperparameters -------------------------------------------------
@st.composite
def conv_configs(draw):
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 2))
    K = groups * draw(st.integers(1, 2))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H = draw(st.integers(max(1, dilation[0] * (R - 1) + 1 - 2 * padding[0]), 7))
    W = draw(st.integers(max(1, dilation[1] * (S - 1) + 1 - 2 * padding[1]), 7))
    N = draw(st.integers(1, 2))
    return (N, C, H, W), (K, C // groups, R, S), stride, padding, dilation, groups


@given(conv_configs(), st.booleans())
def test_hypothesis_matches_naive(config, bias):
    x_shape, w_shape, stride, padding, dilation, groups = config
    check_against_naive(x_shape, w_shape, stride, padding, dilation, groups, bias)


@given(conv_configs())
def test_hypothesis_float32_agrees_with_float64(config):
    x_shape, w_shape, stride, padding, dilation, groups = config
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    _, got32 = run_conv(x_shape, w_shape, dtype=np.float32, **kw)
    _, got64 = run_conv(x_shape, w_shape, dtype=np.float64, **kw)
    for a, e in zip(got32, got64):
        assert a.dtype == np.float32
        assert_close(a, e, dtype=np.float32)


# ---- gradcheck ----------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CASES[:6])
def test_gradcheck(x_shape, w_shape, stride, padding, dilation, groups):
    _, xt = make(x_shape, 5)
    _, wt = make(w_shape, 6)
    _, bt = make(w_shape[:1], 7)
    fn = lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    result = minicnn.gradcheck(fn, (xt, wt, bt), tol=1e-6)
    assert result, str(result)


def test_gradcheck_same_even_kernel():
    _, xt = make((1, 2, 4, 5), 8)
    _, wt = make((2, 2, 2, 4), 9)
    result = minicnn.gradcheck(lambda x, w: F.conv2d(x, w, padding="same"), (xt, wt), tol=1e-6)
    assert result, str(result)


# ---- only the gradients that are needed; both im2col paths; batch chunking ----------------------
def test_only_needed_gradients_are_computed(monkeypatch):
    calls = []

    def spy(name):
        real = getattr(_np_conv, name)

        def wrapped(*args):
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(_np_conv, name, wrapped)

    for name in ("conv2d_backward_data", "conv2d_backward_weight", "conv2d_backward_bias"):
        spy(name)
    _, xt = make((1, 2, 5, 5), 0, requires_grad=False)
    _, wt = make((3, 2, 3, 3), 1)
    _, bt = make((3,), 2, requires_grad=False)
    F.conv2d(xt, wt, bt).sum().backward()
    assert calls == ["conv2d_backward_weight"]
    assert xt.grad is None and bt.grad is None and wt.grad is not None


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CASES)
def test_numpy_fallback_matches_cpp(
    monkeypatch, x_shape, w_shape, stride, padding, dilation, groups
):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    _, with_cpp = run_conv(x_shape, w_shape, dtype=np.float32, **kw)
    monkeypatch.setattr(_np_conv, "_C", None)
    _, with_numpy = run_conv(x_shape, w_shape, dtype=np.float32, **kw)
    for a, e in zip(with_cpp, with_numpy):
        assert_close(a, e, dtype=np.float32, rtol=1e-6, atol=1e-6)


def test_batch_chunks_give_the_same_result(monkeypatch):
    kw = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    _, whole = run_conv((5, 4, 6, 7), (4, 2, 3, 3), **kw)
    monkeypatch.setattr(_np_conv, "COLS_BUDGET_BYTES", 1)  # one image per chunk
    _, chunked = run_conv((5, 4, 6, 7), (4, 2, 3, 3), **kw)
    for a, e in zip(whole, chunked):
        assert_close(a, e)


# ---- errors -------------------------------------------------------------------------------------
def t(*shape, dtype=minicnn.float32):
    return minicnn.zeros(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (
            (t(2, 3, 5), t(4, 3, 3, 3)),
            {},
            ValueError,
            r"weight \(4, 3, 3, 3\) .*expects 4|2 channels",
        ),
        ((t(3, 5, 5, 1, 1), t(4, 3, 3, 3)), {}, ValueError, r"input must be 3-D or 4-D"),
        ((t(1, 3, 5, 5), t(4, 3, 3)), {}, ValueError, r"weight must be 4-D"),
        (
            (t(1, 4, 5, 5), t(4, 3, 3, 3)),
            {},
            ValueError,
            r"\(1, 4, 5, 5\) has 4 channels .*\(4, 3, 3, 3\)",
        ),
        ((t(1, 4, 5, 5), t(4, 2, 3, 3)), {"groups": 3}, ValueError, r"divisible by groups=3"),
        ((t(1, 3, 5, 5), t(4, 1, 3, 3)), {"groups": 3}, ValueError, r"out_channels 4 .*groups=3"),
        ((t(1, 3, 5, 5), t(3, 1, 3, 3)), {"groups": 0}, ValueError, r"groups must be a positive"),
        (
            (t(1, 3, 5, 5), t(3, 3, 3, 3), t(4)),
            {},
            ValueError,
            r"bias must have shape \(3,\).*got \(4,\)",
        ),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3), t(3, 1)), {}, ValueError, r"bias must be 1-D"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"stride": 0}, ValueError, r"conv2d: stride must be >= 1"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"stride": (1, -1)}, ValueError, r"stride must be >= 1"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"dilation": 0}, ValueError, r"dilation must be >= 1"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"padding": -1}, ValueError, r"padding must be >= 0"),
        (
            (t(1, 3, 5, 5), t(3, 3, 3, 3)),
            {"padding": (1, 2, 3)},
            TypeError,
            r"padding must be an int",
        ),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"stride": 1.5}, TypeError, r"stride must be an int"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"padding": "full"}, ValueError, r"'valid' or 'same'"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"padding": "same", "stride": 2}, ValueError, r"strided"),
        ((t(1, 3, 5, 5), t(3, 3, 6, 3)), {}, ValueError, r"kernel larger than the padded input"),
        ((t(1, 3, 5, 5), t(3, 3, 3, 3)), {"dilation": 3}, ValueError, r"spans 7 x 7"),
        ((t(1, 3, 2, 5), t(3, 3, 3, 3)), {}, ValueError, r"\(1, 3, 2, 5\) padded to 2 x 5"),
        ((t(1, 3, 5, 5), t(0, 3, 3, 3)), {}, ValueError, r"at least one output channel"),
        (
            (t(1, 3, 5, 5, dtype=minicnn.int64), t(3, 3, 3, 3)),
            {},
            TypeError,
            r"input must be float32",
        ),
        (
            (t(1, 3, 5, 5), t(3, 3, 3, 3, dtype=minicnn.float64)),
            {},
            TypeError,
            r"input float32, weight float64",
        ),
        (
            (t(1, 3, 5, 5), t(3, 3, 3, 3), t(3, dtype=minicnn.float64)),
            {},
            TypeError,
            r"bias float64",
        ),
        ((np.zeros((1, 3, 5, 5)), t(3, 3, 3, 3)), {}, TypeError, r"input must be a Tensor"),
    ],
)
def test_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match) as info:
        F.conv2d(*args, **kwargs)
    assert "conv2d" in str(info.value)


def test_error_mismatched_devices():
    x, w = t(1, 3, 5, 5), t(3, 3, 3, 3)
    w.device = "emu"  # no emu backend yet: fake the device, the check comes first
    with pytest.raises(ValueError, match="conv2d: .*'cpu' and 'emu'"):
        F.conv2d(x, w)


# ---- optional: torch ----------------------------------------------------------------------------
TORCH_CASES = CASES + [
    ((2, 3, 6, 7), (4, 3, 2, 2), (1, 1), "same", (1, 1), 1),
    ((1, 4, 7, 6), (4, 2, 4, 3), (1, 1), "same", (2, 1), 2),
    ((1, 2, 5, 5), (2, 1, 2, 4), (1, 1), "same", (1, 1), 2),
    ((2, 2, 6, 6), (3, 2, 3, 3), (2, 2), "valid", (1, 1), 1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", TORCH_CASES)
def test_matches_torch(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    torch = pytest.importorskip("torch")
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    (x, w, b, dout), got = run_conv(x_shape, w_shape, dtype=dtype, **kw)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    y.backward(torch.tensor(dout))
    for g, e in zip(got, (y, xt.grad, wt.grad, bt.grad)):
        assert_close(g, e.detach().numpy(), dtype=dtype)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding, dilation, groups",
    [
        ((2, 6, 7, 8), (4, 6, 3, 3), (1, 1), (1, 1), 1),  # K < C, "same"
        ((2, 4, 9, 9), (4, 2, 3, 2), (2, 1), (2, 1), 2),  # grouped, dilated, uneven padding
        ((3, 8, 5, 5), (2, 8, 5, 5), (0, 2), (1, 1), 1),
    ],
)  # 5x5, no padding on one axis
def test_data_gradient_as_convolution_matches_col2im(
    monkeypatch, x_shape, w_shape, padding, dilation, groups
):
    """backward-data by the convolution of dout (stride 1, K <= C) equals col2im(w^T @ dout)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    g = Conv2dGeometry.of(x_shape, w_shape, (1, 1), padding, dilation, groups)
    y = _np_conv.conv2d_forward(x, w, None, g)
    dout = rng.standard_normal(y.shape)
    assert _np_conv._data_grad_as_conv(g) is not None
    as_conv = _np_conv.conv2d_backward_data(dout, w, g)
    monkeypatch.setattr(_np_conv, "_data_grad_as_conv", lambda g: None)
    with_col2im = _np_conv.conv2d_backward_data(dout, w, g)
    assert_close(as_conv, with_col2im)


def test_arrays_unpickled_from_another_process_are_accepted():
    # an unpickled array has an equal but distinct dtype object; the C++ helpers once compared
    # dtypes by identity and refused it (what DataLoader workers send back)
    import pickle

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = minicnn.randn(4, 3, 3, 3)
    xp = pickle.loads(pickle.dumps(x, protocol=5))
    got = F.conv2d(minicnn.tensor(xp), w, padding=1)
    assert_close(got, F.conv2d(minicnn.tensor(x), w, padding=1), np.float32)
