"""The one-kernel C++ batch norm (csrc/cpu/batchnorm.h, issue 16): the per-channel sums run in
vector lanes over a channel's rows (whole vectors, then single values for a row's tail) and are
flushed into double every 1024 values, the statistics and y in one task per channel, the gradient
sums and dx in one more. Checked against the float64 NumPy definition at row lengths that take
each path, and for equal bits at any thread count."""

import numpy as np
import pytest

from minicnn.backends import _np_norm
from tests.kernel_devices import cpu_threads as threads

pytest.importorskip("minicnn._C_cpu")

# rows of 1, 3, 4, 5, 8, 9, 49 values; (40, 2, 7, 7) passes 1024 values per channel (a flush
# mid-channel), (3, 70, 1, 1) puts many channels in one task
SHAPES = [(6, 3, 1, 1), (5, 4, 3, 1), (7, 2, 2, 2), (3, 5, 5, 1), (4, 3, 2, 4), (3, 2, 3, 3)]
SHAPES += [(40, 2, 7, 7), (3, 70, 1, 1)]


def _case(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.7).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-1.5, 1.5, C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    return x, dy, w, b


def _fused(x, dy, w, b, relu):
    rm, rv = np.zeros(x.shape[1], x.dtype), np.ones(x.shape[1], x.dtype)
    if relu:
        y, mean, invstd = _np_norm.batch_norm_relu_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
        grads = _np_norm.batch_norm_relu_backward(dy, y, x, w, mean, invstd, True)
    else:
        y, mean, invstd = _np_norm.batch_norm_forward_training(x, w, b, rm, rv, 0.1, 1e-5)
        grads = _np_norm.batch_norm_backward_training(dy, x, w, mean, invstd)
    return (y, mean, invstd, rm, rv) + tuple(grads)


def _reference(x, dy, w, b, relu):
    x64, dy64, w64, b64 = (a.astype(np.float64) for a in (x, dy, w, b))
    rm, rv = np.zeros(x.shape[1]), np.ones(x.shape[1])
    ref = _np_norm.batch_norm_forward_training_reference
    y, mean, invstd = ref(x64, w64, b64, rm, rv, 0.1, 1e-5)
    if relu:
        dy64 = dy64 * (y > 0)
        y = np.maximum(y, 0)
    grads = _np_norm.batch_norm_backward_training_reference(dy64, x64, w64, mean, invstd)
    return (y, mean, invstd, rm, rv) + tuple(grads)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_one_kernel_matches_the_float64_definition(shape, dtype, relu):
    case = _case(shape, dtype)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for got, want in zip(_fused(*case, relu), _reference(*case, relu)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# several blocks of channels per call (about 4 Ki values each), the last one short
@pytest.mark.parametrize("shape", [(40, 6, 7, 7), (16, 200, 2, 2), (4, 9, 16, 17)])
@pytest.mark.parametrize("relu", [False, True])
def test_the_same_bits_at_any_thread_count(shape, relu):
    case = _case(shape, np.float32, seed=3)
    runs = []
    for n in (1, 2, 3):
        with threads(n):
            runs.append(_fused(*case, relu))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_inference_backward_is_the_masked_affine_map():
    x, dy, w, b = _case((3, 4, 5, 2), np.float32)
    mean, invstd = np.full(4, 0.2, np.float32), np.full(4, 1.5, np.float32)
    y = np.maximum(x, 0)  # a mask with zeros and positives
    dx, dw, db = _np_norm.batch_norm_relu_backward(dy, y, x, w, mean, invstd, False)
    g = (w * invstd).reshape(1, -1, 1, 1)
    assert np.array_equal(dx, np.where(y <= 0, 0, dy) * g)
    xhat = (x - mean.reshape(1, -1, 1, 1)) * invstd.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(db, np.where(y <= 0, 0, dy).sum(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(dw, (np.where(y <= 0, 0, dy) * xhat).sum(axis=(0, 2, 3)), rtol=1e-4)


def test_errors_name_the_kernel_and_argument():
    C = _np_norm._C
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="batch_norm_forward: weight must be"):
        C.batch_norm_forward_f32(x, np.ones(2, np.float32), None, 1e-5)
    with pytest.raises(ValueError, match="batch_norm_backward: mask must be shaped like x"):
        v = np.ones(3, np.float32)
        C.batch_norm_backward_f32(x, x, v, v, None, np.zeros((2, 3, 5), np.float32), True)
