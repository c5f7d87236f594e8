"""conv2d's backward in panels (csrc/cpu/conv_backward.h): dw and dx against float64 NumPy
formulas and the batch-chunk path, for every way the layer is cut (channel blocks, column slices
with partial sums, image blocks of small maps, 1x1 columns read from x), and the same bits at 1, 2
and 3 threads (the README's promise)."""

import numpy as np
import pytest

from minicnn.backends import _np_blas, _np_conv
from minicnn.ops.geometry import Conv2dGeometry
from tests.kernel_devices import cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")
pytestmark = pytest.mark.skipif(_np_blas._BLAS_MODE is None, reason="NumPy's BLAS was not found")


# (x shape, w shape, stride, padding, dilation, groups) and the path each one takes.
CASES = {
    "3x3, channel blocks": ((2, 64, 7, 9), (8, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    "2x2 maps, image blocks": ((16, 12, 2, 2), (6, 12, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    "first layer, column slices": ((4, 3, 64, 64), (8, 3, 5, 5), (1, 1), (2, 2), (1, 1), 1),
    "1x1, columns are x": ((5, 24, 3, 3), (10, 24, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    "1x1 one image, wide": ((1, 8, 24, 24), (4, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    "strided 1x1": ((3, 6, 6, 5), (4, 6, 1, 1), (2, 2), (0, 0), (1, 1), 1),
    "grouped 5x5": ((2, 4, 9, 8), (6, 2, 5, 5), (2, 1), (2, 3), (1, 1), 2),
    "dilated": ((2, 3, 11, 10), (5, 3, 3, 2), (1, 2), (2, 0), (2, 3), 1),
    "depthwise": ((4, 6, 5, 5), (6, 1, 3, 3), (1, 1), (1, 1), (1, 1), 6),
    "wider than a panel": ((4, 32, 24, 24), (8, 32, 3, 3), (1, 1), (1, 1), (1, 1), 1),
}


def _args(case, dtype, seed=0):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    g = Conv2dGeometry.of(xs, ws, stride, padding, dilation, groups)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    dout = rng.standard_normal(g.y_shape).astype(dtype)
    return dout, x, w, g


def _reference(dout, x, w, g):
    """(dw, dx) in float64 from the NumPy im2col/col2im (per-image layout)."""
    cols = _np_conv.im2col_reference(
        x.astype(np.float64), g.R, g.S, g.stride, g.padding, g.dilation
    )
    cols = cols.reshape(g.N, g.G, -1, g.P * g.Q)  # (N, G, Cg R S, PQ)
    d = dout.astype(np.float64).reshape(g.N, g.G, g.Kg, g.P * g.Q)  # (N, G, Kg, PQ)
    wg = w.astype(np.float64).reshape(g.G, g.Kg, -1)  # (G, Kg, Cg R S)
    dw = np.einsum("ngkp,ngrp->gkr", d, cols).reshape(g.w_shape)
    dcols = np.einsum("gkr,ngkp->ngrp", wg, d).reshape(g.N, -1, g.P * g.Q)
    dx = _np_conv.col2im_reference(dcols, g.x_shape, g.R, g.S, g.stride, g.padding, g.dilation)
    return dw, dx


def _kernels(dtype):
    suffix = "f32" if dtype == np.float32 else "f64"
    return getattr(_C, f"conv2d_backward_weight_{suffix}"), getattr(
        _C, f"conv2d_backward_data_{suffix}"
    )


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_panels_match_numpy(name, dtype):
    dout, x, w, g = _args(CASES[name], dtype)
    weight, data = _kernels(dtype)
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    dw_ref, dx_ref = _reference(dout, x, w, g)
    with threads(2):
        dw, dx = weight(dout, x, g), data(dout, w, g)
        chunks = (
            _np_conv.conv2d_backward_weight_chunks(dout, x, g),
            _np_conv.conv2d_backward_data_chunks(dout, w, g),
        )
    np.testing.assert_allclose(dw, dw_ref, **tol)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(dw, chunks[0], **tol)
    np.testing.assert_allclose(dx, chunks[1], **tol)


@pytest.mark.parametrize("name", list(CASES))
def test_backward_panels_do_not_depend_on_the_thread_count(name):
    dout, x, w, g = _args(CASES[name], np.float32, seed=1)
    results = []
    for n in (1, 2, 3):
        with threads(n):
            results.append(_np_conv.conv2d_backward(dout, x, w, g))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_array_equal(a, b)


def test_backward_panels_of_an_empty_batch_are_zero():
    dout, x, w, g = _args(((0, 4, 5, 5), (3, 4, 3, 3), (1, 1), (1, 1), (1, 1), 1), np.float32)
    weight, data = _kernels(np.float32)
    np.testing.assert_array_equal(weight(dout, x, g), np.zeros(g.w_shape, np.float32))
    assert data(dout, w, g).shape == g.x_shape


def test_backward_panels_refuse_wrong_shapes():
    dout, x, w, g = _args(CASES["3x3, channel blocks"], np.float32)
    weight, data = _kernels(np.float32)
    with pytest.raises(
        ValueError, match=r"conv2d_backward_weight: dout must have shape \(2, 8, 7, 9\)"
    ):
        weight(dout[:, :3], x, g)
    with pytest.raises(ValueError, match=r"conv2d_backward_weight: x must have shape"):
        weight(dout, x[:1], g)
    with pytest.raises(
        ValueError, match=r"conv2d_backward_data: w must have shape \(8, 64, 3, 3\)"
    ):
        data(dout, w[:, :2], g)


def test_pool_probe_reports_latency_and_joins():
    with threads(2):
        median, p90, mean, joined = _C.pool_probe(50, 5.0)
    assert 0 <= median <= p90 and mean >= 0 and 0.0 <= joined <= 1.0
