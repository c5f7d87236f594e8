"""The engine's gradient sums on the cpu helpers' pool (issue 16): add_into is NumPy's += bit for
bit at any thread count, never writes through a copy, and a tensor used several times gets the
sum of its gradients while arrays the engine does not own stay untouched."""

import numpy as np
import pytest

import minicnn
from minicnn.backends.numpy_backend import CpuBackend, add_into

_C = pytest.importorskip("minicnn._C_cpu")
BIG = (4, 16, 32, 33)  # > CpuBackend.THREADED_MIN_SIZE values, odd last dim


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_add_into_is_numpys_iadd(dtype, n_threads):
    assert np.prod(BIG) >= CpuBackend.THREADED_MIN_SIZE
    rng = np.random.default_rng(n_threads)
    a, b = rng.standard_normal(BIG).astype(dtype), rng.standard_normal(BIG).astype(dtype)
    expected = a + b
    before = _C.get_num_threads()
    _C.set_num_threads(n_threads)
    try:
        out = add_into(a, b)
    finally:
        _C.set_num_threads(before)
    assert out is a and np.array_equal(a, expected)


def test_add_into_falls_back_to_numpy_for_what_the_helper_does_not_take():
    a = np.ones((64, 600), np.float32)[:, ::2]  # not contiguous: NumPy's +=, in place
    add_into(a, np.full(a.shape, 2, np.float32))
    assert (a == 3).all()
    small = np.ones(3)
    assert add_into(small, np.ones(3)) is small and (small == 2).all()


def test_the_in_place_helper_refuses_read_only_or_mismatched_arrays():
    a = np.zeros(BIG, np.float32)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="add_: a must be a writeable C-contiguous array"):
        _C.add__f32(a, np.zeros(BIG, np.float32))
    with pytest.raises(ValueError, match="add_: a and b must have the same shape"):
        _C.add__f32(np.zeros(BIG, np.float32), np.zeros(5, np.float32))


def test_a_big_tensor_used_three_times_gets_the_sum_and_inputs_stay_untouched():
    rng = np.random.default_rng(0)
    xv = rng.standard_normal(BIG).astype(np.float32)
    x = minicnn.tensor(xv, requires_grad=True)
    g = rng.standard_normal(BIG).astype(np.float32)
    g_copy = g.copy()
    y = x * 2.0 + x * 3.0 + x.relu()
    y.backward(minicnn.tensor(g))
    expected = g * np.float32(2.0) + g * np.float32(3.0) + np.where(xv > 0, g, 0)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)
    assert np.array_equal(g, g_copy)  # the caller's gradient is never written to
    y2 = x * 2.0 + x * 3.0 + x.relu()  # a second backward accumulates into .grad in place
    y2.backward(minicnn.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), 2 * expected, rtol=1e-6)
