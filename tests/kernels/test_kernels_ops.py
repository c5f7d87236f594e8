"""The ops and layers on the kernel devices ("emu", and "cuda" when usable): tensors created on and
moved to the device, gradchecks of every op on every device x dtype (float64 finite differences;
float32 against float64), and a whole small CNN, forward and backward, equal to the same CNN on
"cpu".
"""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import nn
from minicnn import gradcheck_suite
from minicnn.gradcheck import separated
from minicnn.gradcheck_suite import Case

from kernel_devices import ALL_DEVICES, DTYPE_NAMES, KERNEL_DEVICES

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)


# ---- tensors on the device -----------------------------------------------------------------------
@devices
def test_tensor_creation_and_transfer(device):
    data = np.arange(6.0).reshape(2, 3)
    t = minicnn.tensor(data.tolist(), device=device)
    assert t.device == device and t.dtype == minicnn.float32
    np.testing.assert_array_equal(t.numpy(), data)
    moved = minicnn.tensor(data, dtype=minicnn.float64).to(device)
    assert moved.device == device and moved.dtype == minicnn.float64
    back = moved.to("cpu")
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.numpy(), data)
    z = minicnn.zeros(2, 2, device=device)
    assert z.device == device and z.numpy().sum() == 0
    assert "device='%s'" % device in repr(t)


@devices
def test_moving_to_the_device_copies(device):
    src = minicnn.tensor([1.0, 2.0])
    t = src.to(device)
    t._data[0] = 5.0
    assert src.numpy()[0] == 1.0 and t.numpy()[0] == 5.0


@devices
def test_mixing_devices_is_an_error(device):
    a = minicnn.ones(2, 3)
    b = minicnn.ones(2, 3, device=device)
    with pytest.raises(ValueError, match=f"'cpu' and '{device}'"):
        a + b
    w = minicnn.ones(4, 3, 3, 3, device=device)
    with pytest.raises(ValueError, match="one device"):
        F.conv2d(minicnn.ones(1, 3, 5, 5), w)


@devices
def test_transfer_is_differentiable(device):
    x = minicnn.tensor(separated((2, 3)), requires_grad=True)
    y = F.relu(x.to(device)) * 2.0
    y.sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), np.where(x.numpy() > 0, 2.0, 0.0))


@devices
def test_non_contiguous_input(device):
    """A transposed view reaches the kernel as a contiguous copy."""
    x = minicnn.tensor(
        np.random.default_rng(0).standard_normal((2, 3, 5, 4)), dtype=minicnn.float64
    )
    xt = x.to(device).transpose(2, 3)
    expected = F.max_pool2d(x.transpose(2, 3), 2, 1)
    np.testing.assert_array_equal(F.max_pool2d(xt, 2, 1).numpy(), expected.numpy())
    np.testing.assert_array_equal(F.relu(xt).numpy(), F.relu(x.transpose(2, 3)).numpy())


# ---- gradchecks: every op, written once, on every device x dtype ---------------------------------
def _conv(case, x_shape, w_shape, bias, **kwargs):
    shapes = (x_shape, w_shape, w_shape[:1]) if bias else (x_shape, w_shape)
    return Case("conv2d", case, lambda *inputs: F.conv2d(*inputs, **kwargs), shapes)


# The kernels' hard cases, beside the cases of ``minicnn gradcheck`` (minicnn.gradcheck_suite).
KERNEL_CASES = [
    Case("relu", "4-D", F.relu, ((2, 3, 4, 5),)),
    Case(
        "max_pool2d",
        "ceil, padding, dilation",
        lambda x: F.max_pool2d(x, (3, 2), (2, 3), padding=1, dilation=(1, 2), ceil_mode=True),
        ((1, 2, 8, 7),),
    ),
    Case(
        "avg_pool2d",
        "divisor_override",
        lambda x: F.avg_pool2d(x, 2, 1, divisor_override=3),
        ((1, 3, 5, 5),),
    ),
    Case("adaptive_avg_pool2d", "up", lambda x: F.adaptive_avg_pool2d(x, (5, 4)), ((1, 2, 3, 2),)),
    Case(
        "local_response_norm",
        "5, large alpha",
        lambda x: F.local_response_norm(x, 5, alpha=2.0, beta=0.75, k=1.0),
        ((2, 7, 3, 3),),
    ),
    Case(
        "local_response_norm",
        "4 (even), 3-D",
        lambda x: F.local_response_norm(x[None], 4, alpha=1.0),
        ((6, 4, 3),),
    ),
    Case(
        "batch_norm",
        "one pixel per channel",
        lambda x: F.batch_norm(x, None, None, training=True),
        ((5, 3, 1, 1),),
    ),
    _conv(
        "stride 2, dilation 2, rectangular",
        (1, 2, 7, 8),
        (3, 2, 3, 2),
        True,
        stride=2,
        dilation=(2, 1),
    ),
    _conv(
        "groups 2, asymmetric stride",
        (2, 4, 6, 5),
        (6, 2, 2, 3),
        False,
        stride=(1, 2),
        groups=2,
        padding=(1, 0),
    ),
    _conv(
        "groups 2, stride 2, bias", (2, 4, 6, 5), (6, 2, 3, 3), True, stride=2, padding=1, groups=2
    ),
    _conv("1x1 stride 2", (2, 3, 5, 5), (2, 3, 1, 1), True, stride=2),
]
# Ops with kernels of ours; the others (softmax, cat, matmul, ...) run the same NumPy code on
# "cpu" and "emu" and CuPy's on "cuda": they are checked on "cpu".
KERNEL_OPS = {
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "local_response_norm",
    "batch_norm",
    "relu",
}
GRADCHECK_PARAMS = [
    pytest.param(d.values[0], case, id=f"{d.id}-{case.op}-{case.case}", marks=d.marks)
    for d in ALL_DEVICES
    for case in gradcheck_suite.cases() + KERNEL_CASES
    if d.values[0] == "cpu" or case.op in KERNEL_OPS
]


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
@pytest.mark.parametrize("device,case", GRADCHECK_PARAMS)
def test_gradcheck(device, case, dtype):
    """float64: central differences against the backward on ``device``; float32: the float32
    backward there against the float64 one (relative error, gradcheck_suite.float32_error)."""
    if dtype == "float64":
        result, _ = gradcheck_suite.check(case, device=device)
        assert result.passed, str(result)
    else:
        assert gradcheck_suite.float32_error(case, device) <= 1e-4


# ---- a whole CNN ---------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """Every layer with a kernel of ours, AlexNet-style front, DenseNet-style transition, pooled
    head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.LocalResponseNorm(5, alpha=1e-2, k=2.0),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(8, 12, 3, padding=1, bias=False),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.AvgPool2d(2, 2, padding=1, count_include_pad=False),
            nn.AdaptiveAvgPool2d((2, 2)),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(48, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def run_cnn(device, dtype, x, target, state):
    minicnn.manual_seed(0)
    model = SmallCNN().to(dtype)
    model.load_state_dict(state)
    model.to(device)
    model.train()
    logits = model(minicnn.tensor(x, dtype=dtype, device=device))
    loss = F.cross_entropy(logits, minicnn.tensor(target, device=device))
    loss.backward()
    grads = {name: p.grad.numpy().copy() for name, p in model.named_parameters()}
    buffers = {name: b.numpy().copy() for name, b in model.named_buffers()}
    return logits.numpy().copy(), loss.item(), grads, buffers


@devices
@pytest.mark.parametrize("dtype", [minicnn.float64, minicnn.float32], ids=["float64", "float32"])
def test_small_cnn_forward_backward_equals_cpu(device, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 23, 23))
    target = rng.integers(0, 10, 4)
    minicnn.manual_seed(0)
    state = SmallCNN().to(dtype).state_dict()
    ref = run_cnn("cpu", dtype, x, target, state)
    out = run_cnn(device, dtype, x, target, state)
    rtol, atol = (1e-9, 1e-11) if dtype == minicnn.float64 else (2e-3, 2e-5)
    np.testing.assert_allclose(out[0], ref[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(out[1], ref[1], rtol=rtol)
    for name in ref[2]:
        np.testing.assert_allclose(
            out[2][name], ref[2][name], rtol=rtol, atol=atol * 10, err_msg=name
        )
    for name in ref[3]:
        np.testing.assert_allclose(out[3][name], ref[3][name], rtol=rtol, atol=atol, err_msg=name)


@devices
def test_eval_mode_uses_running_stats(device):
    minicnn.manual_seed(0)
    model = SmallCNN().to(minicnn.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 19, 19))
    model.eval()
    ref = model(minicnn.tensor(x, dtype=minicnn.float64)).numpy()
    model.to(device)
    out = model(minicnn.tensor(x, dtype=minicnn.float64, device=device)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
