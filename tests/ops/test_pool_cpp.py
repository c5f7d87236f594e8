"""The cpu device's C++ pooling kernels (csrc/cpu/pool.h) against the NumPy versions of the
backend, and the NumPy fallback against the C++ path."""

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis import given

import minicnn
import minicnn.functional as F
from minicnn.backends import _np_pool
from minicnn.ops.geometry import Pool2dGeometry
from conftest import assert_close
from test_pool import pool_cases, random_input


def geometry_of(case, x, **divisor):
    """The Pool2dGeometry the op would compute for a pool_cases() case (``divisor``: average
    pooling's count_include_pad and divisor_override)."""
    g = Pool2dGeometry.of(
        x.shape,
        (case["R"], case["S"]),
        case["stride"],
        case["pad"],
        case.get("dil", (1, 1)),
        case["ceil_mode"],
        **divisor,
    )
    assert g.out_size == (case["P"], case["Q"])
    return g


@given(pool_cases(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_hypothesis_cpp_max_pool_matches_numpy_reference(case, dtype, special):
    if _np_pool._C is None:
        pytest.skip("minicnn._C_cpu is not built")
    x = random_input(case, 3, ties=True).astype(dtype)
    if special:  # NaN and -inf inputs follow torch's rules in both
        x.flat[::5] = np.nan
        x.flat[1::7] = -np.inf
    geo = ((case["R"], case["S"]), case["stride"], case["pad"], case["dil"])
    out_size = (case["P"], case["Q"])
    g = geometry_of(case, x)
    y, idx = _np_pool.max_pool2d_forward(x, g)
    y_ref, idx_ref = _np_pool.max_pool2d_forward_reference(x, *geo, out_size)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    dout = np.random.default_rng(4).standard_normal(y.shape).astype(dtype)
    dx = _np_pool.max_pool2d_backward(dout, idx, g)
    assert dx.dtype == dtype
    assert_close(dx, _np_pool.max_pool2d_backward_reference(dout, idx_ref, x.shape, *geo), dtype)


@given(
    pool_cases(dilation=False),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.sampled_from([None, 3]),
)
def test_hypothesis_cpp_avg_pool_matches_numpy_reference(case, dtype, include, override):
    if _np_pool._C is None:
        pytest.skip("minicnn._C_cpu is not built")
    x = random_input(case, 5).astype(dtype)
    geo = ((case["R"], case["S"]), case["stride"], case["pad"])
    out_size = (case["P"], case["Q"])
    g = geometry_of(case, x, count_include_pad=include, divisor_override=override)
    y = _np_pool.avg_pool2d_forward(x, g)
    assert_close(
        y, _np_pool.avg_pool2d_forward_reference(x, *geo, out_size, include, override), dtype
    )
    dout = np.random.default_rng(6).standard_normal(y.shape).astype(dtype)
    dx = _np_pool.avg_pool2d_backward(dout, g)
    assert dx.dtype == dtype
    assert_close(
        dx, _np_pool.avg_pool2d_backward_reference(dout, x.shape, *geo, include, override), dtype
    )


@pytest.mark.parametrize(
    "H, W, P, Q", [(4, 6, 2, 3), (5, 5, 1, 1), (3, 3, 3, 3), (2, 2, 7, 7), (6, 4, 4, 3)]
)
def test_adaptive_avg_pool_fast_path_matches_the_matrices(H, W, P, Q):
    x = np.random.default_rng(7).standard_normal((2, 3, H, W))
    g = Pool2dGeometry.adaptive(x.shape, (P, Q))
    y = _np_pool.adaptive_avg_pool2d_forward(x, g)
    assert_close(y, _np_pool.adaptive_avg_pool2d_forward_reference(x, (P, Q)))
    dout = np.random.default_rng(8).standard_normal(y.shape)
    assert_close(
        _np_pool.adaptive_avg_pool2d_backward(dout, g),
        _np_pool.adaptive_avg_pool2d_backward_reference(dout, x.shape),
    )


def test_pool_numpy_fallback_gives_the_same_as_cpp(monkeypatch):
    x = minicnn.tensor(
        np.random.default_rng(9).standard_normal((2, 3, 9, 8)).astype(np.float32),
        requires_grad=True,
    )

    def run():
        x.grad = None
        y = F.max_pool2d(x, 3, 2, 1, ceil_mode=True) * 2 + F.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
        y.sum().backward()
        return y.numpy(), x.grad.numpy()

    with_cpp = run()
    monkeypatch.setattr(_np_pool, "_C", None)
    for a, e in zip(with_cpp, run()):
        assert_close(a, e, np.float32)
