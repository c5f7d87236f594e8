"""conv2d's forward on the "cpu" device for layers whose columns fit one panel (the small maps
of the last stages): it is cut by blocks of input channels, each task's partial product added in
block order afterwards (csrc/cpu/conv.h reduction_blocks), so that every core has work. Checked
against float64 NumPy formulas, and for the same bits at 1, 2 and 3 threads (backward too)."""

import numpy as np
import pytest

from minicnn.backends import _np_blas, _np_conv
from minicnn.ops.geometry import Conv2dGeometry
from tests.kernel_devices import cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")
pytestmark = pytest.mark.skipif(_np_blas._BLAS_MODE is None, reason="NumPy's BLAS was not found")

# (x shape, w shape, stride, padding, dilation, groups), each one panel per group: 1x1 on 2x2
# maps (2 blocks of 512 channels), grouped 3x3 (2 blocks per group), strided 3x3 cut unevenly
# (61 + 60 channels).
CASES = [
    ((4, 1024, 2, 2), (16, 1024, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((3, 256, 3, 3), (8, 128, 3, 3), (1, 1), (1, 1), (1, 1), 2),
    ((2, 121, 5, 5), (6, 121, 3, 3), (2, 2), (1, 1), (1, 1), 1),
]


def _args(case, dtype, seed=0):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    g = Conv2dGeometry.of(xs, ws, stride, padding, dilation, groups)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b, rng.standard_normal(g.y_shape).astype(dtype), g


def _reference(x, w, b, dout, g):
    """(y, dw) in float64 from the NumPy im2col (per-image layout)."""
    cols = _np_conv.im2col_reference(
        x.astype(np.float64), g.R, g.S, g.stride, g.padding, g.dilation
    )
    cols = cols.reshape(g.N, g.G, -1, g.P * g.Q)  # (N, G, Cg R S, PQ)
    wg = w.astype(np.float64).reshape(g.G, g.Kg, -1)  # (G, Kg, Cg R S)
    y = np.einsum("gkr,ngrp->ngkp", wg, cols).reshape(g.y_shape) + b.reshape(1, -1, 1, 1)
    d = dout.astype(np.float64).reshape(g.N, g.G, g.Kg, g.P * g.Q)
    dw = np.einsum("ngkp,ngrp->gkr", d, cols).reshape(g.w_shape)
    return y, dw


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_blocks_match_numpy(case, dtype):
    x, w, b, dout, g = _args(case, dtype)
    suffix = "f32" if dtype == np.float32 else "f64"
    forward = getattr(_C, f"conv2d_forward_{suffix}")
    weight = getattr(_C, f"conv2d_backward_weight_{suffix}")
    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    y_ref, dw_ref = _reference(x, w, b, dout, g)
    with threads(2):
        y, dw = forward(x, w, b, g), weight(dout, x, g)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(dw, dw_ref, **tol)


@pytest.mark.parametrize("case", CASES)
def test_channel_blocks_do_not_depend_on_the_thread_count(case):
    x, w, b, dout, g = _args(case, np.float32, seed=1)
    results = []
    for n in (1, 2, 3):
        with threads(n):
            y = _np_conv.conv2d_forward(x, w, b, g)
            results.append((y,) + _np_conv.conv2d_backward(dout, x, w, g))
    for got in results[1:]:
        for a, b_ in zip(got, results[0]):
            np.testing.assert_array_equal(a, b_)
