"""conv2d's dx and dw in one parallel_for (csrc/cpu/conv_backward.h conv2d_backward_panels, used
by _np_conv.conv2d_backward when both are needed): the same bits as the two passes alone, for
every way dx is made (col2im of panels, the convolution of dout, one-panel layers that run the
passes one by one), against float64 NumPy formulas, and the same bits at 1, 2 and 3 threads.
Also the forward's cuts for small maps and its transposed GEMM for few output channels
(csrc/cpu/conv.h output_block, kSkinnyRows)."""

import numpy as np
import pytest

from minicnn.backends import _np_blas, _np_conv
from minicnn.ops.geometry import Conv2dGeometry
from tests.kernel_devices import cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")
pytestmark = pytest.mark.skipif(_np_blas._BLAS_MODE is None, reason="NumPy's BLAS was not found")

# (x shape, w shape, stride, padding, groups)
CASES = {
    "1x1 on 2x2 maps, col2im": ((8, 64, 2, 2), (128, 64, 1, 1), (1, 1), (0, 0), 1),
    "3x3, dx as a convolution": ((2, 16, 9, 9), (8, 16, 3, 3), (1, 1), (1, 1), 1),
    "3x3 one panel, one pass at a time": ((4, 128, 8, 8), (128, 128, 3, 3), (1, 1), (1, 1), 1),
    "first layer, column slices": ((4, 3, 32, 32), (8, 3, 5, 5), (2, 2), (2, 2), 1),
    "grouped 3x3 strided": ((3, 8, 7, 6), (6, 4, 3, 3), (2, 1), (1, 1), 2),
    "one image": ((1, 12, 6, 6), (10, 12, 3, 3), (1, 1), (1, 1), 1),
}


def _args(case, dtype=np.float32, seed=0):
    xs, ws, stride, padding, groups = case
    rng = np.random.default_rng(seed)
    g = Conv2dGeometry.of(xs, ws, stride, padding, (1, 1), groups)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    return rng.standard_normal(g.y_shape).astype(dtype), x, w, g


def _reference(dout, x, w, g):
    """(dx, dw) in float64 from the NumPy im2col/col2im (per-image layout)."""
    cols = _np_conv.im2col_reference(x.astype(np.float64), g.R, g.S, g.stride, g.padding, (1, 1))
    cols = cols.reshape(g.N, g.G, -1, g.P * g.Q)  # (N, G, Cg R S, PQ)
    d = dout.astype(np.float64).reshape(g.N, g.G, g.Kg, g.P * g.Q)  # (N, G, Kg, PQ)
    wg = w.astype(np.float64).reshape(g.G, g.Kg, -1)  # (G, Kg, Cg R S)
    dw = np.einsum("ngkp,ngrp->gkr", d, cols).reshape(g.w_shape)
    dcols = np.einsum("gkr,ngkp->ngrp", wg, d).reshape(g.N, -1, g.P * g.Q)
    dx = _np_conv.col2im_reference(dcols, g.x_shape, g.R, g.S, g.stride, g.padding, (1, 1))
    return dx, dw


def _both(dout, x, w, g):
    dx, dw, db = _np_conv.conv2d_backward(dout, x, w, g, needs=(True, True, False))
    assert db is None
    return dx, dw


@pytest.mark.parametrize("name", list(CASES))
def test_both_gradients_equal_the_passes_alone_and_numpy(name):
    dout, x, w, g = _args(CASES[name])
    with threads(2):
        dx, dw = _both(dout, x, w, g)
        alone = (
            _np_conv.conv2d_backward_data(dout, w, g),
            _np_conv.conv2d_backward_weight(dout, x, g),
        )
    np.testing.assert_array_equal(dx, alone[0])
    np.testing.assert_array_equal(dw, alone[1])
    dx_ref, dw_ref = _reference(dout, x, w, g)
    np.testing.assert_allclose(dx, dx_ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_both_gradients_do_not_depend_on_the_thread_count(name):
    dout, x, w, g = _args(CASES[name], seed=1)
    results = []
    for n in (1, 2, 3):
        with threads(n):
            results.append(_both(dout, x, w, g))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b)


def test_both_gradients_in_float64():
    dout, x, w, g = _args(CASES["3x3, dx as a convolution"], np.float64)
    dx_ref, dw_ref = _reference(dout, x, w, g)
    with threads(2):
        dx, dw = _both(dout, x, w, g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-11, atol=1e-11)


def test_both_gradients_of_an_empty_batch():
    dout, x, w, g = _args(((0, 4, 5, 5), (3, 4, 3, 3), (1, 1), (1, 1), 1))
    dx, dw = _C.conv2d_backward_f32(dout, x, w, g)
    assert dx.shape == g.x_shape
    np.testing.assert_array_equal(dw, np.zeros(g.w_shape, np.float32))


def test_both_gradients_refuse_a_half_given_transposed_kernel():
    dout, x, w, g = _args(CASES["3x3, dx as a convolution"])
    wt = _np_conv._transposed_kernel(w, g.G)
    with pytest.raises(ValueError, match="conv2d_backward: wt and geometry_t must be given"):
        _C.conv2d_backward_f32(dout, x, w, g, wt)
    with pytest.raises(ValueError, match=r"conv2d_backward: w must have shape \(8, 16, 3, 3\)"):
        _C.conv2d_backward_f32(dout, x, w[:, :4], g)
    with pytest.raises(ValueError, match="conv2d_backward: geometry_t must map dout's shape"):
        _C.conv2d_backward_f32(dout, x, w, g, wt, g)


# Forwards cut in the ways conv.h adds for the small maps: 1x1 layers whose columns are one
# panel, too short to cut by input channels, cut by blocks of >= 256 output channels (2 blocks
# over images of 2x2; 3 blocks in one image; 2 groups); and few output channels over a long
# reduction, multiplied as out^T = cols^T w^T (a panel over two images; two panels in one).
FORWARD_CASES = [
    ((2, 32, 2, 2), (512, 32, 1, 1), (0, 0), 1),
    ((1, 16, 4, 4), (768, 16, 1, 1), (0, 0), 1),
    ((2, 64, 2, 2), (1024, 32, 1, 1), (0, 0), 2),
    ((2, 64, 9, 9), (8, 64, 3, 3), (1, 1), 1),
    ((1, 64, 20, 20), (32, 64, 3, 3), (1, 1), 1),
]


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_small_map_cuts_match_numpy_at_any_thread_count(case):
    xs, ws, padding, groups = case
    rng = np.random.default_rng(2)
    g = Conv2dGeometry.of(xs, ws, (1, 1), padding, (1, 1), groups)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    cols = _np_conv.im2col_reference(x.astype(np.float64), g.R, g.S, (1, 1), padding, (1, 1))
    cols = cols.reshape(g.N, groups, -1, g.P * g.Q)  # (N, G, Cg R S, PQ)
    wg = w.astype(np.float64).reshape(groups, g.Kg, -1)  # (G, Kg, Cg R S)
    y_ref = np.einsum("gkr,ngrp->ngkp", wg, cols).reshape(g.y_shape) + b.reshape(1, -1, 1, 1)
    results = []
    for n in (1, 2, 3):
        with threads(n):
            results.append(_C.conv2d_forward_f32(x, w, b, g))
    np.testing.assert_allclose(results[0], y_ref, rtol=2e-4, atol=2e-4)
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])
