"""The backends' batch norm with ReLU fused (interface.py: ``relu`` of the forwards,
``relu_output`` of batch_norm_backward) against batch norm then ReLU, on every device.

Forward: y = max(0, batch_norm(x)); backward: batch_norm_backward of dout · [y > 0]. The cpu
device runs one-pass C++ kernels (and composes the two ops when the C++ helpers are missing);
"emu" and "cuda" compose the batch norm and ReLU kernels.
"""

import numpy as np
import pytest

from minicnn.backends import _np_norm, get_backend

from kernel_devices import ALL_DEVICES, DTYPES, host, on

SHAPE = (3, 4, 5, 3)


def close(actual, expected, dtype):
    tol = 1e-12 if np.dtype(dtype) == np.float64 else 1e-5
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def inputs(dtype, seed=0):
    rng = np.random.default_rng(seed)
    C = SHAPE[1]
    x, dout = (rng.standard_normal(SHAPE).astype(dtype) for _ in range(2))
    weight, bias = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    running = rng.standard_normal(C).astype(dtype), rng.uniform(0.5, 2, C).astype(dtype)
    return x, weight, bias, running, dout


def forward(device, training, relu, x, weight, bias, rm, rv):
    """(y, mean, invstd) and the running statistics after the call, on the host."""
    b = get_backend(device)
    args = (*on(device, x, weight, bias), *on(device, rm.copy(), rv.copy()))
    out = (
        b.batch_norm_forward_training(*args, 0.1, 1e-5, relu)
        if training
        else b.batch_norm_forward_inference(*args, 1e-5, relu)
    )
    return host(device, out), host(device, args[3:])


def check_fused(device, dtype, training):
    x, weight, bias, (rm, rv), dout = inputs(dtype)
    (y, mean, invstd), running = forward(device, training, True, x, weight, bias, rm, rv)
    (z, mean0, invstd0), running0 = forward(device, training, False, x, weight, bias, rm, rv)
    assert (y >= 0).all() and (y > 0).any() and (y == 0).any()
    close(y, np.maximum(z, 0), dtype)
    for a, e in zip((mean, invstd, *running), (mean0, invstd0, *running0)):
        close(a, e, dtype)
    b = get_backend(device)
    saved = on(device, x, weight, mean, invstd)
    got = host(device, b.batch_norm_backward(on(device, dout), *saved, training, on(device, y)))
    masked = on(device, np.where(y > 0, dout, 0).astype(dtype))
    want = host(device, b.batch_norm_backward(masked, *saved, training))
    for a, e in zip(got, want):
        close(a, e, dtype)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_relu_fused_equals_batch_norm_then_relu(device, dtype, training):
    check_fused(device, dtype, training)


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_cpu_composes_without_the_cpp_helpers(monkeypatch, training):
    monkeypatch.setattr(_np_norm, "_C", None)
    check_fused("cpu", np.float64, training)
