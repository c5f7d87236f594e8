"""linear: y = x W^T + b against minicnn.reference's loops, gradcheck, hypothesis, float32, errors,
and torch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from conftest import assert_close


def naive_linear(x, w, b, dout):
    """y, dx, dw, db by minicnn.reference's loops over rows m, outputs o and features i."""
    return (ref.linear_forward(x, w, b),) + ref.linear_backward(dout, x, w)


def run_linear(x_shape, O, bias=True, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((O, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    xt, wt = minicnn.tensor(x, requires_grad=True), minicnn.tensor(w, requires_grad=True)
    bt = minicnn.tensor(b, requires_grad=True) if bias else None
    y = F.linear(xt, wt, bt)
    dout = rng.standard_normal(y.shape).astype(dtype)
    y.backward(dout)
    got = (y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy() if bias else None)
    return (x, w, b, dout), got


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "x_shape, O", [((3,), 2), ((4, 3), 5), ((2, 3, 4), 3), ((1, 1), 1), ((0, 3), 2)]
)
def test_matches_naive(x_shape, O, bias):
    (x, w, b, dout), got = run_linear(x_shape, O, bias)
    assert got[0].shape == x_shape[:-1] + (O,)
    for g, e in zip(got, naive_linear(x, w, b, dout)):
        if g is not None:
            assert_close(g, e)


@given(
    st.lists(st.integers(1, 3), min_size=0, max_size=2),
    st.integers(1, 5),
    st.integers(1, 5),
    st.booleans(),
)
def test_hypothesis_matches_naive_and_float32(lead, I, O, bias):
    (x, w, b, dout), got = run_linear(tuple(lead) + (I,), O, bias)
    for g, e in zip(got, naive_linear(x, w, b, dout)):
        if g is not None:
            assert_close(g, e)
    _, got32 = run_linear(tuple(lead) + (I,), O, bias, dtype=np.float32)
    for g, e in zip(got32, got):
        if g is not None:
            assert g.dtype == np.float32
            assert_close(g, e, dtype=np.float32)


def test_gradcheck():
    rng = np.random.default_rng(1)
    x, w, b = (
        minicnn.tensor(rng.standard_normal(s), requires_grad=True)
        for s in ((2, 3, 4), (5, 4), (5,))
    )
    result = minicnn.gradcheck(F.linear, (x, w, b), tol=1e-6)
    assert result, str(result)


def test_only_needed_gradients():
    x = minicnn.randn(2, 3)
    w = minicnn.randn(4, 3, requires_grad=True)
    F.linear(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (4, 3)


def t(*shape, dtype=minicnn.float32):
    return minicnn.zeros(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((t(2, 3), t(4, 5)), ValueError, r"input \(2, 3\) has 3 features but weight \(4, 5\)"),
        ((t(2, 3), t(4, 3), t(3)), ValueError, r"bias must have shape \(4,\).*got \(3,\)"),
        ((t(2, 3), t(4, 3), t(1, 4)), ValueError, r"bias must be 1-D"),
        ((t(2, 3), t(3)), ValueError, r"weight must be 2-D"),
        ((t(), t(4, 3)), ValueError, r"at least 1 dimension"),
        ((t(2, 3, dtype=minicnn.int64), t(4, 3)), TypeError, r"input must be float32 or float64"),
        ((t(2, 3), t(4, 3, dtype=minicnn.float64)), TypeError, r"input float32, weight float64"),
        ((t(2, 3), t(4, 3), t(4, dtype=minicnn.float64)), TypeError, r"bias float64"),
        (([1.0, 2.0], t(4, 2)), TypeError, r"input must be a Tensor"),
    ],
)
def test_errors(args, exc, match):
    with pytest.raises(exc, match=match) as info:
        F.linear(*args)
    assert "linear" in str(info.value)


def test_error_mismatched_devices():
    x, w = t(2, 3), t(4, 3)
    w.device = "emu"
    with pytest.raises(ValueError, match="linear: .*'cpu' and 'emu'"):
        F.linear(x, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape", [(3,), (4, 3), (2, 2, 3)])
def test_matches_torch(x_shape, dtype):
    torch = pytest.importorskip("torch")
    (x, w, b, dout), got = run_linear(x_shape, 5, dtype=dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.linear(xt, wt, bt)
    y.backward(torch.tensor(dout))
    for g, e in zip(got, (y, xt.grad, wt.grad, bt.grad)):
        assert_close(g, e.detach().numpy(), dtype=dtype)
