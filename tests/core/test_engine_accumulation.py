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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_sums_of_channel_slices_are_numpys_without_a_copy(dtype, n_threads):
    """Cat's backward hands out dout[:, c0:c1]: add_into and add_arrays read such slices in place
    on the pool (the same numbers as NumPy's + and +=); other layouts still give NumPy's."""
    from minicnn.backends.numpy_backend import _rows_contiguous, add_arrays

    rng = np.random.default_rng(n_threads)
    d = rng.standard_normal((4, 40, 17, 19)).astype(dtype)
    u, v = d[:, 3:19], d[:, 20:36]  # (4, 16, 17, 19) views, rows of 16·17·19 values
    assert _rows_contiguous(v) and not v.flags.c_contiguous
    assert not _rows_contiguous(d[:, :, 1:]) and not _rows_contiguous(d[::-1, :16])
    before = _C.get_num_threads()
    _C.set_num_threads(n_threads)
    try:
        summed = add_arrays(u, v)
        acc = np.ascontiguousarray(u)
        out = add_into(acc, v)
        odd = add_arrays(u[:, :, 1:], v[:, :, 1:])  # rows not contiguous: NumPy's +
        direct = _C.add_f32 if dtype == np.float32 else _C.add_f64
        strided = direct(d[:, 1:5, 1:], d[::-1, 4:8, 1:])  # copied first, as forcecast does
    finally:
        _C.set_num_threads(before)
    assert summed.flags.c_contiguous and np.array_equal(summed, u + v)
    assert out is acc and np.array_equal(acc, u + v)
    assert np.array_equal(odd, u[:, :, 1:] + v[:, :, 1:])
    assert np.array_equal(strided, d[:, 1:5, 1:] + d[::-1, 4:8, 1:])
    with pytest.raises(ValueError, match="add_: a must be a writeable C-contiguous"):
        _C.add__f32(np.zeros((4, 16, 17, 19), np.float64), v.astype(np.float32))


def test_a_tensor_in_several_cats_gets_the_sum_of_its_slices():
    """DenseNet's pattern: x feeds two concatenations, its gradient is the sum of two views
    (above THREADED_MIN_SIZE values: the threaded add)."""
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((2, 64, 12, 12)).astype(np.float32) for _ in range(3)]
    x, y, z = (minicnn.tensor(a, requires_grad=True) for a in arrays)
    w1, w2 = (rng.standard_normal((2, 128, 12, 12)).astype(np.float32) for _ in range(2))
    (
        (minicnn.cat([x, y], 1) * minicnn.tensor(w1)).sum()
        + (minicnn.cat([z, x], 1) * minicnn.tensor(w2)).sum()
    ).backward()
    assert np.array_equal(x.grad.numpy(), w1[:, :64] + w2[:, 64:])
    assert np.array_equal(y.grad.numpy(), w1[:, 64:])
