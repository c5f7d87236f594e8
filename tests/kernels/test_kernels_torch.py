"""The ops on the kernel devices against PyTorch on the same inputs (float64, forward and gradient),
independently of the cpu backend. Skipped where PyTorch is not installed."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F

from kernel_devices import KERNEL_DEVICES

torch = pytest.importorskip("torch")
TF = torch.nn.functional

CASES = {
    "relu": ((2, 3, 5, 7), lambda f, x: f.relu(x)),
    "max_pool2d 3x3/2": ((2, 3, 13, 13), lambda f, x: f.max_pool2d(x, 3, 2)),
    "max_pool2d ceil, pad, dilation": (
        (1, 2, 11, 9),
        lambda f, x: f.max_pool2d(
            x, (3, 2), (2, 2), padding=(1, 1), dilation=(2, 1), ceil_mode=True
        ),
    ),
    "avg_pool2d ceil, pad, no pad count": (
        (2, 2, 9, 8),
        lambda f, x: f.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    "avg_pool2d count_include_pad": (
        (2, 2, 9, 8),
        lambda f, x: f.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True),
    ),
    "adaptive_avg_pool2d": ((2, 3, 10, 7), lambda f, x: f.adaptive_avg_pool2d(x, (4, 5))),
    "local_response_norm 5, alpha 3": (
        (2, 9, 4, 3),
        lambda f, x: f.local_response_norm(x, 5, 3.0, 0.75, 2.0),
    ),
    "local_response_norm 4": (
        (2, 7, 3, 3),
        lambda f, x: f.local_response_norm(x, 4, 1.0, 0.5, 1.0),
    ),
}


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_op_matches_torch(device, case):
    shape, fn = CASES[case]
    rng = np.random.default_rng(3)
    x_np, dy_np = rng.standard_normal(shape), None
    x = minicnn.tensor(x_np, device=device, requires_grad=True)
    y = fn(F, x)
    dy_np = rng.standard_normal(y.shape)
    y.backward(minicnn.tensor(dy_np, device=device))
    xt = torch.tensor(x_np, requires_grad=True)
    yt = fn(TF, xt)
    yt.backward(torch.tensor(dy_np))
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(device, training):
    rng = np.random.default_rng(4)
    x_np = 50.0 + rng.standard_normal((3, 4, 5, 2))
    w_np, b_np = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    rm_np, rv_np = 50.0 + rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    t = lambda a, g=False: minicnn.tensor(a, device=device, requires_grad=g)  # noqa: E731
    x, w, b, rm, rv = t(x_np, True), t(w_np, True), t(b_np, True), t(rm_np), t(rv_np)
    y = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2)
    dy_np = rng.standard_normal(y.shape)
    y.backward(minicnn.tensor(dy_np, device=device))
    tt = lambda a, g=False: torch.tensor(a, requires_grad=g)  # noqa: E731
    xt, wt, bt, rmt, rvt = tt(x_np, True), tt(w_np, True), tt(b_np, True), tt(rm_np), tt(rv_np)
    yt = TF.batch_norm(xt, rmt, rvt, wt, bt, training=training, momentum=0.2)
    yt.backward(torch.tensor(dy_np))
    for mine, theirs in [
        (y, yt),
        (x.grad, xt.grad),
        (w.grad, wt.grad),
        (b.grad, bt.grad),
        (rm, rmt),
        (rv, rvt),
    ]:
        np.testing.assert_allclose(mine.numpy(), theirs.detach().numpy(), rtol=1e-9, atol=1e-11)
