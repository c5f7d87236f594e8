"""The TEMPORARY conv2d of the "cuda" device (minicnn/backends/_xp_conv.py, until issue 4), run on
NumPy arrays here: it must agree with the cpu backend for every stride/padding/dilation/groups."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.backends import _xp_conv as xconv
from minicnn.backends import numpy_backend as cpu


@given(N=st.integers(1, 3), G=st.integers(1, 3), Cg=st.integers(1, 3), Kg=st.integers(1, 3),
       H=st.integers(1, 9), W=st.integers(1, 9), R=st.integers(1, 4), S=st.integers(1, 4),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_xp_conv_matches_cpu(N, G, Cg, Kg, H, W, R, S, stride, padding, dilation, bias, seed):
    hyper = (stride, padding, dilation, G)
    if H + 2 * padding[0] < dilation[0] * (R - 1) + 1 or W + 2 * padding[1] < dilation[1] * (S - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, G * Cg, H, W))
    w = rng.standard_normal((G * Kg, Cg, R, S))
    b = rng.standard_normal(G * Kg) if bias else None
    y = xconv.conv2d_forward(x, w, b, *hyper)
    np.testing.assert_allclose(y, cpu.conv2d_forward(x, w, b, *hyper), rtol=1e-10, atol=1e-10)
    dout = rng.standard_normal(y.shape)
    for got, want in zip(xconv.conv2d_backward(dout, x, w, *hyper), cpu.conv2d_backward(dout, x, w, *hyper)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_xp_conv_chunks_the_batch(monkeypatch):
    monkeypatch.setattr(xconv, "COLS_BUDGET_BYTES", 1)  # one image per chunk
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    hyper = ((1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(xconv.conv2d_forward(x, w, None, *hyper), cpu.conv2d_forward(x, w, None, *hyper))
    dout = rng.standard_normal((3, 4, 5, 5))
    dx, dw, db = xconv.conv2d_backward(dout, x, w, *hyper, needs=(True, True, False))
    assert db is None
    np.testing.assert_allclose(dw, cpu.conv2d_backward_weight(dout, x, w.shape, *hyper))
