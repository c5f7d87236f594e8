"""The "cpu" device's C++ helpers that have no family file of their own: ReLU, the GEMM through
NumPy's BLAS on the helpers' thread pool, and the thread-count setting."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn.backends import _np_blas, _np_conv, get_backend, numpy_backend
from minicnn.ops.geometry import Conv2dGeometry

cpu = get_backend("cpu")

_C = pytest.importorskip("minicnn._C_cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_match_numpy(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype)
    x.flat[:4] = [np.nan, -0.0, 0.0, -np.inf]
    y = cpu.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert np.signbit(y.flat[1])  # -0.0 stays -0.0, as torch.relu
    dout = rng.standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(cpu.relu_backward(dout, y), np.where(y <= 0, 0, dout))
    strided = x[:, ::2]  # non-contiguous input
    np.testing.assert_array_equal(cpu.relu_forward(strided), np.maximum(strided, 0))


def test_relu_numpy_fallback_is_the_same(monkeypatch):
    x = np.array([-1.5, -0.0, 0.0, 2.0, np.nan, -np.inf, np.inf], np.float32)
    dout = np.arange(7, dtype=np.float32)
    y = cpu.relu_forward(x)
    dx = cpu.relu_backward(dout, y)
    monkeypatch.setattr(numpy_backend, "_C", None)
    y_np = cpu.relu_forward(x)
    np.testing.assert_array_equal(y_np, y)
    np.testing.assert_array_equal(np.signbit(y_np), np.signbit(y))
    np.testing.assert_array_equal(cpu.relu_backward(dout, y_np), dx)


@pytest.mark.skipif(_np_blas._BLAS_MODE is None, reason="NumPy's BLAS was not found")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_layouts_accumulation_and_threads(threads, dtype):
    rng = np.random.default_rng(1)
    before = _C.get_num_threads()
    _C.set_num_threads(threads)
    try:
        for M, K, N in [(1, 1, 1), (7, 300, 5), (130, 70, 700), (300, 257, 129)]:
            a, b = (
                rng.standard_normal((M, K)).astype(dtype),
                rng.standard_normal((K, N)).astype(dtype),
            )
            tol = 1e-4 if dtype == np.float32 else 1e-10
            for A in (a, np.ascontiguousarray(a.T).T):  # row-major and transposed
                for B in (b, np.ascontiguousarray(b.T).T):
                    out = np.empty((M, N), dtype)
                    _np_blas.gemm(A, B, out)
                    np.testing.assert_allclose(out, a @ b, rtol=tol, atol=tol * K)
                    _np_blas.gemm(A, B, out, accumulate=True)
                    np.testing.assert_allclose(out, 2 * (a @ b), rtol=tol, atol=tol * K)
            wide = np.empty((M, N + 3), dtype)[:, 1 : N + 1]  # out with a larger row stride
            _np_blas.gemm(a, b, wide)
            np.testing.assert_allclose(wide, a @ b, rtol=tol, atol=tol * K)
    finally:
        _C.set_num_threads(before)


def test_gemm_refuses_layouts_blas_cannot_take():
    if _np_blas._BLAS_MODE is None:
        pytest.skip("NumPy's BLAS was not found")
    a = np.ones((4, 6), np.float32)[:, ::2]  # strided columns
    out = np.empty((4, 5), np.float32)
    with pytest.raises(ValueError, match="row-major"):
        _C.gemm_f32(a, np.ones((3, 5), np.float32), out)
    np.testing.assert_array_equal(_np_blas.gemm(a, np.ones((3, 5), np.float32), out), 3.0)


def test_conv_without_our_gemm_gives_the_same(monkeypatch):
    rng = np.random.default_rng(2)
    x = minicnn.tensor(rng.standard_normal((3, 8, 7, 7)).astype(np.float32), requires_grad=True)
    w = minicnn.tensor(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), requires_grad=True)

    def run():
        x.grad = w.grad = None
        y = F.conv2d(x, w, padding=1, groups=2)
        y.backward(np.ones(y.shape, np.float32))
        return y.numpy(), x.grad.numpy(), w.grad.numpy()

    ours = run()
    monkeypatch.setattr(_np_blas, "_BLAS_MODE", None)
    for a, e in zip(ours, run()):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threshold", [0, 10**9])
def test_both_weight_gradient_orientations_agree(monkeypatch, threshold):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 9, 9)).astype(np.float32)
    dout = rng.standard_normal((4, 8, 5, 5)).astype(np.float32)
    g = Conv2dGeometry.of(x.shape, (8, 3, 3, 3), (2, 2), (1, 1), (1, 1), 2)
    expect = _np_conv.conv2d_backward_weight(dout, x, g)
    monkeypatch.setattr(_np_conv, "TRANSPOSED_DW_MIN_COLUMNS", threshold)
    np.testing.assert_allclose(
        _np_conv.conv2d_backward_weight(dout, x, g), expect, rtol=1e-5, atol=1e-5
    )


def test_set_num_threads_reaches_the_pool():
    before = cpu.get_num_threads()
    try:
        cpu.set_num_threads(3)
        assert _C.get_num_threads() == 3 and cpu.get_num_threads() == 3
        cpu.set_num_threads(0)  # at least one
        assert _C.get_num_threads() == 1
    finally:
        cpu.set_num_threads(before)


def test_pool_runs_tasks_on_the_requested_threads():
    before = _C.get_num_threads()
    try:
        _C.set_num_threads(3)
        assert _C.pool_threads_used(60, 1.0) == 3  # the caller + 2 workers, all took tasks
        _C.set_num_threads(1)
        assert _C.pool_threads_used(24, 0.1) == 1
    finally:
        _C.set_num_threads(before)
