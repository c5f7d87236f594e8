"""The batch-norm kernels with several blocks per channel (csrc/kernels/batchnorm.cu) against the
cpu backend, on "emu" (and "cuda").

A channel's M = N·H·W values are cut into ranges of >= 1024 values, so these shapes have M > 2048:
2-3 ranges per channel, the last one short, planes larger and smaller than a block's 256 threads
(the (n, hw) walk steps across images), a large mean (Chan's merge of the ranges' (mean, M2) must
keep the variance), running statistics, and every backward. float64 tight, float32 with tolerance.
"""

import numpy as np
import pytest

from minicnn.backends import get_backend

from kernel_devices import DTYPES, KERNEL_DEVICES, host, on

cpu = get_backend("cpu")

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
SHAPES = {
    "3 ranges, planes > 256": (2, 3, 40, 37),
    "odd sizes": (3, 5, 31, 23),
    "4-pixel planes: the walk steps 64 images": (700, 2, 2, 2),
    "one channel, 1x1": (2500, 1, 1, 1),
}


def close(actual, expected, dtype, scale=1.0):
    rtol, atol = (1e-9, 1e-9) if np.dtype(dtype) == np.float64 else (2e-4, 2e-4)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def inputs(shape, dtype, offset, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (offset + rng.standard_normal(shape)).astype(dtype)
    weight, bias = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    running = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    return x, weight, bias, running, rng.standard_normal(shape).astype(dtype)


@devices
@dtypes
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=lambda o: f"mean {o:g}")
@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
def test_training_forward_and_backward(device, dtype, offset, shape):
    x, weight, bias, (rm, rv), dout = inputs(SHAPES[shape], dtype, offset)
    backend = get_backend(device)
    rm_d, rv_d = on(device, rm, rv)
    y, mean, invstd = host(
        device,
        backend.batch_norm_forward_training(*on(device, x, weight, bias), rm_d, rv_d, 0.1, 1e-5),
    )
    rm_ref, rv_ref = rm.copy(), rv.copy()
    y_ref, mean_ref, invstd_ref = cpu.batch_norm_forward_training(
        x, weight, bias, rm_ref, rv_ref, 0.1, 1e-5
    )
    loose = (
        1.0 if np.dtype(dtype) == np.float64 else 1 + offset / 10
    )  # float32 x itself is off by eps·|x|
    close(mean, mean_ref, dtype, 1 + offset)
    close(invstd, invstd_ref, dtype, loose)
    close(y, y_ref, dtype, loose * np.abs(weight).max())
    close(host(device, rm_d), rm_ref, dtype, 1 + offset)
    close(host(device, rv_d), rv_ref, dtype, loose)
    M = x.size // x.shape[1]
    dx, dweight, dbias = host(
        device,
        backend.batch_norm_backward(*on(device, dout, x, weight, mean_ref, invstd_ref), True),
    )
    dx_ref, dweight_ref, dbias_ref = cpu.batch_norm_backward(
        dout, x, weight, mean_ref, invstd_ref, True
    )
    close(dbias, dbias_ref, dtype, np.sqrt(M))
    close(dweight, dweight_ref, dtype, loose * np.sqrt(M))
    close(dx, dx_ref, dtype, loose * np.abs(weight).max())


@devices
@dtypes
@pytest.mark.parametrize("shape", list(SHAPES), ids=str)
def test_inference_forward_and_backward(device, dtype, shape):
    x, weight, bias, (rm, rv), dout = inputs(SHAPES[shape], dtype, 0.0, seed=1)
    backend = get_backend(device)
    y, mean, invstd = host(
        device, backend.batch_norm_forward_inference(*on(device, x, weight, bias, rm, rv), 1e-5)
    )
    y_ref, mean_ref, invstd_ref = cpu.batch_norm_forward_inference(x, weight, bias, rm, rv, 1e-5)
    close(y, y_ref, dtype, np.abs(weight).max())
    dx, dweight, dbias = host(
        device,
        backend.batch_norm_backward(*on(device, dout, x, weight, mean_ref, invstd_ref), False),
    )
    dx_ref, dweight_ref, dbias_ref = cpu.batch_norm_backward(
        dout, x, weight, mean_ref, invstd_ref, False
    )
    M = x.size // x.shape[1]
    close(dx, dx_ref, dtype, np.abs(weight).max())
    close(dbias, dbias_ref, dtype, np.sqrt(M))
    close(dweight, dweight_ref, dtype, np.sqrt(M))


@devices
def test_training_is_deterministic(device):
    x, weight, bias, _, dout = inputs(SHAPES["odd sizes"], np.float32, 3.0, seed=2)
    backend = get_backend(device)
    args = on(device, x, weight, bias)
    first = host(device, backend.batch_norm_forward_training(*args, None, None, 0.1, 1e-5))
    again = host(device, backend.batch_norm_forward_training(*args, None, None, 0.1, 1e-5))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
