"""minicnn.autocast: the policy table of minicnn/amp/autocast.py, nesting, enabled=False, the
decorator, per-device scope, and float32 master weights with float32 gradients."""

import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import nn

f16, bf16, f32, f64 = minicnn.float16, minicnn.bfloat16, minicnn.float32, minicnn.float64
LOW, FLOAT32 = "low", "float32"


def _t(*shape, dtype=f32):
    return minicnn.randn(*shape, dtype=dtype)


def _bn(x):
    return F.batch_norm(x, minicnn.zeros(3), minicnn.ones(3), minicnn.ones(3), training=True)


# op -> (call on float32 inputs, expected output dtype under autocast); the module docstring's table
POLICY = {
    "conv2d": (lambda: F.conv2d(_t(1, 3, 5, 5), _t(2, 3, 3, 3), _t(2)), LOW),
    "linear": (lambda: F.linear(_t(2, 3), _t(4, 3), _t(4)), LOW),
    "matmul": (lambda: _t(2, 3) @ _t(3, 4), LOW),
    "sum": (lambda: _t(2, 3).half().sum(), FLOAT32),
    "mean": (lambda: _t(2, 3).bfloat16().mean(dim=1), FLOAT32),
    "softmax": (lambda: F.softmax(_t(2, 3).half(), dim=1), FLOAT32),
    "log_softmax": (lambda: F.log_softmax(_t(2, 3).half(), dim=1), FLOAT32),
    "cross_entropy": (
        lambda: F.cross_entropy(_t(2, 3).half(), minicnn.tensor([0, 2])),
        FLOAT32,
    ),
    "nll_loss": (lambda: F.nll_loss(_t(2, 3).half(), minicnn.tensor([0, 2])), FLOAT32),
    "batch_norm": (lambda: _bn(_t(2, 3, 4, 4).half()), "float16"),  # half x, float32 stats
    "add": (lambda: _t(2, 3).half() + _t(2, 3), FLOAT32),  # the widest input
    "relu": (lambda: F.relu(_t(2, 3).half()), "float16"),
    "max_pool2d": (lambda: F.max_pool2d(_t(1, 2, 4, 4).half(), 2), "float16"),
    "cat": (lambda: minicnn.cat([_t(2).half(), _t(2)]), FLOAT32),
}


@pytest.mark.parametrize("dtype", [f16, bf16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("op", sorted(POLICY))
def test_the_policy_table(op, dtype):
    call, expected = POLICY[op]
    with minicnn.autocast("cpu", dtype=dtype):
        out = call()
    want = dtype if expected == LOW else f32 if expected == FLOAT32 else np.dtype(expected)
    assert out.dtype == want, f"{op} under autocast({dtype}) gave {out.dtype}"


def test_outside_autocast_nothing_is_cast():
    assert F.conv2d(_t(1, 3, 5, 5), _t(2, 3, 3, 3)).dtype == f32
    assert _t(2, 3).half().sum().dtype == f16


def test_float64_is_left_alone():
    with minicnn.autocast("cpu"):
        assert F.linear(_t(2, 3, dtype=f64), _t(4, 3, dtype=f64)).dtype == f64


def test_defaults_nesting_and_enabled_false():
    assert minicnn.autocast("cpu").fast_dtype == bf16  # torch's defaults
    assert minicnn.autocast("cuda").fast_dtype == f16
    with minicnn.autocast("cpu", dtype=bf16):
        with minicnn.autocast("cpu", dtype=f16):
            assert F.linear(_t(2, 3), _t(4, 3)).dtype == f16
            with minicnn.autocast("cpu", enabled=False):
                assert F.linear(_t(2, 3), _t(4, 3)).dtype == f32
            assert F.linear(_t(2, 3), _t(4, 3)).dtype == f16
        assert F.linear(_t(2, 3), _t(4, 3)).dtype == bf16
    assert not minicnn.amp.is_autocast_enabled("cpu")


def test_autocast_is_per_device_type():
    with minicnn.autocast("cuda"):  # needs no GPU: it only sets the mode for "cuda" tensors
        assert minicnn.amp.is_autocast_enabled("cuda")
        assert F.linear(_t(2, 3), _t(4, 3)).dtype == f32


def test_as_a_decorator_and_re_entrant():
    @minicnn.autocast("cpu", dtype=f16)
    def forward(depth):
        if depth:
            forward(depth - 1)
        return F.linear(_t(2, 3), _t(4, 3))

    assert forward(2).dtype == f16
    assert not minicnn.amp.is_autocast_enabled("cpu")


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="float16 or bfloat16, got float32"):
        minicnn.autocast("cpu", dtype=f32)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        minicnn.autocast("tpu")


def test_master_weights_stay_float32_and_get_float32_gradients():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)
    )
    x, y = _t(2, 3, 5, 5), minicnn.tensor([1, 4])
    with minicnn.autocast("cpu", dtype=bf16):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    assert logits.dtype == bf16 and loss.dtype == f32
    loss.backward()
    for name, p in model.named_parameters():
        assert p.dtype == f32 and p.grad is not None and p.grad.dtype == f32, name
    assert model[1].running_mean.dtype == f32
    # the gradients are those of the float32 model up to bfloat16's rounding
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    ref = model[0].weight.grad.numpy()
    with minicnn.autocast("cpu", dtype=bf16):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
    low = model[0].weight.grad.numpy()
    assert np.abs(low - ref).max() <= 0.1 * np.abs(ref).max()
