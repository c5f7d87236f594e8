"""im2col / col2im: the C++ helper (minicnn._C_cpu) against the NumPy reference, bit for bit.

im2col is pure data movement, so the two must agree exactly; col2im sums overlapping windows in the
same order in both (kernel row r, then column s), so it must agree exactly too. col2im is checked to
be the adjoint of im2col: <im2col(x), c> == <x, col2im(c)>.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.backends import _np_conv
from minicnn.backends._np_conv import col2im_reference, conv2d_output_size, im2col_reference

_C = pytest.importorskip("minicnn._C_cpu")

# (N, C, H, W, R, S, stride, padding, dilation)
CASES = [
    (2, 3, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1)),     # the common 3x3 "same"
    (1, 2, 9, 9, 2, 2, (3, 3), (0, 0), (1, 1)),     # stride > kernel: skipped pixels
    (2, 2, 8, 7, 3, 2, (2, 1), (2, 1), (2, 3)),     # dilation, unequal everything
    (1, 4, 5, 5, 1, 1, (1, 1), (0, 0), (1, 1)),     # 1x1
    (1, 3, 31, 31, 11, 11, (4, 4), (2, 2), (1, 1)),  # AlexNet conv1 shape, 11x11 / 4
    (1, 1, 3, 3, 3, 3, (1, 1), (4, 4), (1, 1)),     # padding larger than the kernel
    (3, 1, 1, 1, 1, 1, (2, 2), (0, 0), (1, 1)),     # a single pixel
    (1, 2, 5, 13, 5, 3, (1, 5), (0, 2), (1, 2)),    # odd sizes, stride > kernel in one axis only
]


def naive_im2col(x, R, S, stride, padding, dilation):
    """cols[n, (c R + r) S + s, p Q + q] = x[n, c, p sh - ph + r dh, q sw - pw + s dw] or 0."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    cols = np.zeros((N, C * R * S, P * Q), x.dtype)
    for n in range(N):
        for c in range(C):
            for r in range(R):
                for s in range(S):
                    for p in range(P):
                        for q in range(Q):
                            h, w = p * sh - ph + r * dh, q * sw - pw + s * dw
                            if 0 <= h < H and 0 <= w < W:
                                cols[n, (c * R + r) * S + s, p * Q + q] = x[n, c, h, w]
    return cols


def cpp_im2col(x, R, S, stride, padding, dilation):
    fn = _C.im2col_f32 if x.dtype == np.float32 else _C.im2col_f64
    return fn(x, R, S, *stride, *padding, *dilation)


def cpp_col2im(cols, x_shape, R, S, stride, padding, dilation):
    fn = _C.col2im_f32 if cols.dtype == np.float32 else _C.col2im_f64
    return fn(cols, *x_shape, R, S, *stride, *padding, *dilation)


def _check_case(N, C, H, W, R, S, stride, padding, dilation, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    cols = cpp_im2col(x, R, S, stride, padding, dilation)
    assert cols.dtype == dtype
    assert np.array_equal(cols, im2col_reference(x, R, S, stride, padding, dilation))
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = cpp_col2im(c, x.shape, R, S, stride, padding, dilation)
    assert back.dtype == dtype
    assert np.array_equal(back, col2im_reference(c, x.shape, R, S, stride, padding, dilation))
    return x, cols, c, back


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_cpp_matches_reference_exactly(case, dtype):
    _check_case(*case, dtype)


@pytest.mark.parametrize("case", CASES[:4] + CASES[5:])
def test_reference_matches_naive_definition(case):
    N, C, H, W, R, S, stride, padding, dilation = case
    x = np.random.default_rng(1).standard_normal((N, C, H, W))
    assert np.array_equal(im2col_reference(x, R, S, stride, padding, dilation),
                          naive_im2col(x, R, S, stride, padding, dilation))


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_the_adjoint_of_im2col(case):
    x, cols, c, back = _check_case(*case, np.float64, seed=2)
    lhs, rhs = float((cols * c).sum()), float((x * back).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@st.composite
def geometries(draw):
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    H = draw(st.integers(max(1, dilation[0] * (R - 1) + 1 - 2 * padding[0]), 12))
    W = draw(st.integers(max(1, dilation[1] * (S - 1) + 1 - 2 * padding[1]), 12))
    return draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W, R, S, stride, padding, dilation


@given(geometries(), st.sampled_from([np.float32, np.float64]))
def test_hypothesis_cpp_matches_reference(geometry, dtype):
    x, cols, c, back = _check_case(*geometry, dtype)
    if dtype == np.float64:
        lhs, rhs = float((cols * c).sum()), float((x * back).sum())
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_non_contiguous_input_is_copied():
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8))[:, :, ::2, ::2]
    assert np.array_equal(cpp_im2col(x, 2, 2, (1, 1), (1, 1), (1, 1)),
                          im2col_reference(x, 2, 2, (1, 1), (1, 1), (1, 1)))


def test_backend_wrappers_use_cpp_and_fall_back(monkeypatch):
    x = np.random.default_rng(4).standard_normal((2, 2, 6, 5)).astype(np.float32)
    geo = (3, 2, (2, 1), (1, 0), (1, 2))
    with_cpp = _np_conv.im2col(x, *geo)
    monkeypatch.setattr(_np_conv, "_C", None)
    assert np.array_equal(_np_conv.im2col(x, *geo), with_cpp)
    assert _np_conv.col2im(with_cpp, x.shape, *geo).dtype == np.float32


def test_cpp_errors():
    x = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="kernel larger"):
        _C.im2col_f32(x, 4, 4, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match=">= 1"):
        _C.im2col_f32(x, 3, 3, 0, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        _C.im2col_f32(np.zeros((3, 3), np.float32), 1, 1, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="cols must be"):
        _C.col2im_f32(np.zeros((1, 9, 2), np.float32), 1, 1, 3, 3, 3, 3, 1, 1, 0, 0, 1, 1)
