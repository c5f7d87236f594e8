"""LRN's C++ passes (csrc/cpu/lrn.h, issue 16) against the NumPy definition in _np_norm, at 1, 2
and 3 threads, with a large alpha (a small one hides a wrong window) and even sizes."""

import numpy as np
import pytest

from minicnn.backends import _np_norm

_C = pytest.importorskip("minicnn._C_cpu")

CASES = [  # (shape, size, alpha, beta, k)
    ((2, 7, 3, 5), 5, 2.0, 0.75, 1.0),
    ((3, 6, 20, 20), 4, 1.5, 0.6, 2.0),  # even size: asymmetric window; several column blocks
    ((1, 3, 2, 2), 7, 3.0, 1.2, 0.5),  # window wider than C
    ((2, 9, 1, 1), 1, 0.7, 0.75, 1.0),
]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _with_threads(n, fn):
    before = _C.get_num_threads()
    _C.set_num_threads(n)
    try:
        return fn()
    finally:
        _C.set_num_threads(before)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_lrn_cpp_matches_the_numpy_definition(case, dtype, n_threads):
    shape, size, alpha, beta, k = case
    x, dy = _data(shape, dtype)
    y, scale = _with_threads(
        n_threads, lambda: _np_norm.local_response_norm_forward(x, size, alpha, beta, k)
    )
    y_ref, scale_ref = _np_norm.local_response_norm_forward_reference(x, size, alpha, beta, k)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    assert y.dtype == scale.dtype == dtype and y.shape == scale.shape == shape
    np.testing.assert_array_equal(scale, scale_ref)  # the same sums in the same order
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    dx = _with_threads(
        n_threads, lambda: _np_norm.local_response_norm_backward(dy, x, scale, size, alpha, beta)
    )
    dx_ref = _np_norm.local_response_norm_backward_reference(dy, x, scale, size, alpha, beta)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)


def test_lrn_cpp_does_not_depend_on_the_thread_count():
    x, dy = _data((3, 6, 20, 20), np.float32, seed=1)
    runs = []
    for n in (1, 2, 3):

        def both():
            y, s = _np_norm.local_response_norm_forward(x, 4, 1.5, 0.6, 2.0)
            return y, s, _np_norm.local_response_norm_backward(dy, x, s, 4, 1.5, 0.6)

        runs.append(_with_threads(n, both))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_lrn_cpp_refuses_bad_arguments():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="lrn_forward: size must be >= 1, got 0"):
        _C.lrn_forward_f32(x, 0, 1.0, 0.75, 1.0)
    with pytest.raises(ValueError, match="lrn_backward: dout and scale must be shaped like x"):
        _C.lrn_backward_f32(np.zeros((2, 3, 5), np.float32), x, x, 3, 1.0, 0.75)
