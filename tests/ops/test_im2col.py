"""im2col / col2im: the C++ helper (minicnn._C_cpu) against the NumPy reference, bit for bit.

The C++ helper writes the "folded" layout (C*R*S, N*P*Q) that conv2d uses; the NumPy reference
writes the per-image layout (N, C*R*S, P*Q), which ``folded`` moves. im2col is pure data movement,
so the two must agree exactly; col2im sums overlapping windows in the same order in both (kernel
row r, then column s), so it must agree exactly too. col2im is checked to be the adjoint of
im2col: <im2col(x), c> == <x, col2im(c)>.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.backends import _np_conv
from minicnn.backends._np_conv import col2im_reference, im2col_reference, output_size
from minicnn.ops.geometry import Conv2dGeometry

_C = pytest.importorskip("minicnn._C_cpu")

# (N, C, H, W, R, S, stride, padding, dilation)
CASES = [
    (2, 3, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1)),  # the common 3x3 "same"
    (1, 2, 9, 9, 2, 2, (3, 3), (0, 0), (1, 1)),  # stride > kernel: skipped pixels
    (2, 2, 8, 7, 3, 2, (2, 1), (2, 1), (2, 3)),  # dilation, unequal everything
    (1, 4, 5, 5, 1, 1, (1, 1), (0, 0), (1, 1)),  # 1x1
    (1, 3, 31, 31, 11, 11, (4, 4), (2, 2), (1, 1)),  # AlexNet conv1 shape, 11x11 / 4
    (1, 1, 3, 3, 3, 3, (1, 1), (4, 4), (1, 1)),  # padding larger than the kernel
    (3, 1, 1, 1, 1, 1, (2, 2), (0, 0), (1, 1)),  # a single pixel
    (1, 2, 5, 13, 5, 3, (1, 5), (0, 2), (1, 2)),  # odd sizes, stride > kernel in one axis only
    (2, 3, 7, 9, 3, 2, (2, 1), (0, 0), (1, 2)),  # unpadded stride-1 columns: runs of the plane
    (2, 3, 4, 5, 1, 1, (1, 1), (0, 1), (1, 1)),  # padded 1x1: element by element
]


def naive_im2col(x, R, S, stride, padding, dilation):
    """cols[n, (c R + r) S + s, p Q + q] = x[n, c, p sh - ph + r dh, q sw - pw + s dw] or 0."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    P, Q = output_size(H, W, R, S, stride, padding, dilation)
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


def geometry(x_shape, R, S, stride, padding, dilation):
    return Conv2dGeometry.of(x_shape, (1, x_shape[1], R, S), stride, padding, dilation)


def folded(per_image):
    """(N, L, M) -> (L, N*M): the batch moved next to the columns."""
    return np.ascontiguousarray(per_image.transpose(1, 0, 2)).reshape(per_image.shape[1], -1)


def per_image(cols, N):
    """(L, N*M) -> (N, L, M)."""
    return np.ascontiguousarray(cols.reshape(cols.shape[0], N, -1).transpose(1, 0, 2))


def cpp_im2col(x, R, S, stride, padding, dilation):
    fn = _C.im2col_f32 if x.dtype == np.float32 else _C.im2col_f64
    return fn(x, geometry(x.shape, R, S, stride, padding, dilation))


def cpp_col2im(cols, x_shape, R, S, stride, padding, dilation):
    fn = _C.col2im_f32 if cols.dtype == np.float32 else _C.col2im_f64
    return fn(cols, geometry(x_shape, R, S, stride, padding, dilation))


def _check_case(N, C, H, W, R, S, stride, padding, dilation, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    cols = cpp_im2col(x, R, S, stride, padding, dilation)
    assert cols.dtype == dtype
    assert np.array_equal(cols, folded(im2col_reference(x, R, S, stride, padding, dilation)))
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = cpp_col2im(c, x.shape, R, S, stride, padding, dilation)
    assert back.dtype == dtype
    assert np.array_equal(
        back, col2im_reference(per_image(c, N), x.shape, R, S, stride, padding, dilation)
    )
    return x, cols, c, back


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_cpp_matches_reference_exactly(case, dtype):
    _check_case(*case, dtype)


@pytest.mark.parametrize("case", CASES[:4] + CASES[5:])
def test_reference_matches_naive_definition(case):
    N, C, H, W, R, S, stride, padding, dilation = case
    x = np.random.default_rng(1).standard_normal((N, C, H, W))
    assert np.array_equal(
        im2col_reference(x, R, S, stride, padding, dilation),
        naive_im2col(x, R, S, stride, padding, dilation),
    )


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
    assert np.array_equal(
        cpp_im2col(x, 2, 2, (1, 1), (1, 1), (1, 1)),
        folded(im2col_reference(x, 2, 2, (1, 1), (1, 1), (1, 1))),
    )


def test_cpp_errors():
    x = np.zeros((1, 1, 3, 3), np.float32)
    g = geometry(x.shape, 2, 2, (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\) = \(1, 1, 3, 3\)"):
        _C.im2col_f32(np.zeros((1, 1, 3, 4), np.float32), g)
    with pytest.raises(ValueError, match=">= 1"):
        _C.im2col_f32(x, _C.Conv2dGeometry(**{**fields(g), "sh": 0}))
    with pytest.raises(ValueError, match="Conv2dGeometry: missing field R"):
        _C.im2col_f32(x, {k: v for k, v in fields(g).items() if k != "R"})
    with pytest.raises(ValueError, match=r"cols must be \(C\*R\*S, N\*P\*Q\) = \(4, 4\)"):
        _C.col2im_f32(np.zeros((1, 9), np.float32), g)


def fields(g):
    return {f: getattr(g, f) for f in "N C H W K R S P Q sh sw ph pw dh dw G".split()}


@pytest.mark.parametrize("case", CASES)
def test_numpy_fallback_is_the_same(monkeypatch, case):
    N, C, H, W, R, S, stride, padding, dilation = case
    x = np.random.default_rng(6).standard_normal((N, C, H, W)).astype(np.float32)
    g = geometry(x.shape, R, S, stride, padding, dilation)
    cols = _np_conv.im2col(x, g)
    back = _np_conv.col2im(cols, g)
    monkeypatch.setattr(_np_conv, "_C", None)
    assert np.array_equal(_np_conv.im2col(x, g), cols)
    assert np.array_equal(_np_conv.col2im(cols, g), back)


def test_out_arrays_are_written_in_place_and_checked():
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 5)).astype(np.float32)
    geo = (3, 2, (1, 2), (1, 0), (1, 1))
    g = geometry(x.shape, *geo)
    expect = folded(im2col_reference(x, *geo))
    out = np.full(expect.shape, np.nan, np.float32)
    assert _C.im2col_f32(x, g, out=out) is out
    assert np.array_equal(out, expect)
    dx = np.full(x.shape, np.nan, np.float32)
    _C.col2im_f32(expect, g, out=dx)
    assert np.array_equal(dx, col2im_reference(per_image(expect, 2), x.shape, *geo))
    for bad in (
        np.empty(expect.shape, np.float64),
        np.empty(expect.shape[::-1], np.float32).T,
        np.empty((expect.shape[0], expect.shape[1] + 1), np.float32),
    ):
        with pytest.raises(ValueError, match="out must be"):
            _C.im2col_f32(x, g, out=bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_moves_transpose_and_channel_sums(dtype):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 5, 7)).astype(dtype)  # (N, K, L)
    folded = _np_conv.unfold_batch(a)
    assert np.array_equal(folded, a.transpose(1, 0, 2).reshape(5, 21))
    bias = rng.standard_normal(5).astype(dtype)
    assert np.array_equal(_np_conv.fold_batch(folded, 3), a)
    np.testing.assert_allclose(_np_conv.fold_batch(folded, 3, bias), a + bias[:, None], rtol=1e-6)
    assert np.array_equal(_np_conv.transpose(a), a.transpose(0, 2, 1))
    big = rng.standard_normal((2, 70, 45)).astype(dtype)  # tiles and edges
    assert np.array_equal(_np_conv.transpose(big), big.transpose(0, 2, 1))
    np.testing.assert_allclose(
        _np_conv.conv2d_backward_bias(a[..., None]), a.sum(axis=(0, 2)), rtol=1e-5
    )


def test_results_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(9).standard_normal((4, 16, 9, 9)).astype(np.float32)
    G3 = geometry(x.shape, 3, 3, (1, 1), (1, 1), (1, 1))
    before = _C.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            _C.set_num_threads(threads)
            cols = _np_conv.im2col(x, G3)
            results.append((cols, _np_conv.col2im(cols, G3)))
        for cols, back in results[1:]:
            assert np.array_equal(cols, results[0][0]) and np.array_equal(back, results[0][1])
    finally:
        _C.set_num_threads(before)


def test_thread_pool_works_in_a_forked_child():
    import os

    x = np.random.default_rng(10).standard_normal((4, 8, 9, 9)).astype(np.float32)
    G3 = geometry(x.shape, 3, 3, (1, 1), (1, 1), (1, 1))
    before = _C.get_num_threads()
    _C.set_num_threads(2)
    try:
        expect = _np_conv.im2col(x, G3)  # parent's workers start
        pid = os.fork()
        if pid == 0:  # the child has no workers of its own until it needs them
            ok = np.array_equal(_np_conv.im2col(x, G3), expect)
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        _C.set_num_threads(before)
