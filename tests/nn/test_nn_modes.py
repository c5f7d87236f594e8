"""minicnn.nn.Module: train/eval, grads, dtypes, devices, hooks and repr (torch's format)."""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.backends import is_available
from nn_modules import Affine, Net, small_cnn


# ---- modes, grads, dtypes, devices --------------------------------------------------------------
def test_train_eval_flags():
    net = small_cnn()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.bn.training
    with pytest.raises(ValueError, match="expected to be a bool"):
        net.train("yes")


def test_zero_grad_and_requires_grad():
    m = Affine()
    (m(minicnn.ones(2, 3)).sum()).backward()
    assert m.scale.grad is not None
    m.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(m.scale.grad.numpy(), np.zeros(3))
    m.zero_grad()
    assert m.scale.grad is None
    assert m.requires_grad_(False) is m and not any(p.requires_grad for p in m.parameters())
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


def test_apply_order():
    seen = []
    net = Net()
    assert net.apply(lambda mod: seen.append(type(mod).__name__)) is net
    assert seen == ["Affine", "Affine", "Sequential", "Affine", "Net"]  # children first


def test_to_float64_in_place():
    net = small_cnn()
    w = net.conv.weight
    net(minicnn.randn(2, 2, 3, 3)).sum().backward()
    assert net.to(minicnn.float64) is net
    assert net.conv.weight is w
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.conv.weight.grad.dtype == np.float64
    assert net.bn.running_mean.dtype == np.float64 and net.bn.running_var.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64  # integer buffers are not cast
    out = net(minicnn.randn(2, 2, 3, 3, dtype=minicnn.float64))
    assert out.dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    net.double()
    assert net.fc.bias.dtype == np.float64
    net.to("float32")
    assert net.fc.bias.dtype == np.float32
    net.to(minicnn.zeros(1, dtype=minicnn.float64))  # like a tensor: its device and dtype
    assert net.fc.bias.dtype == np.float64
    net.to("cpu", dtype="float32")
    assert net.fc.bias.dtype == np.float32 and net.fc.bias.device == "cpu"


def test_to_device_errors_leave_the_module_unchanged():
    net = small_cnn()
    assert net.to("cpu") is net and net.cpu() is net
    for device in [d for d in ("cuda", "emu") if not is_available(d)]:
        with pytest.raises(RuntimeError, match="not available"):
            net.to(device, minicnn.float64)
    assert net.conv.weight.device == "cpu" and net.conv.weight.dtype == np.float32
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        net.to("tpu")
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        net.to(minicnn.int64)


def test_forward_hooks():
    m = Affine()
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    out = m(minicnn.ones(1, 3))
    assert calls == [(1, 3)] and out.numpy().sum() == 6
    h1.remove()
    h2.remove()
    assert m(minicnn.ones(1, 3)).numpy().sum() == 3 and len(calls) == 1


# ---- repr ----------------------------------------------------------------------------------------
def test_repr_nested():
    net = nn.Sequential(
        OrderedDict(
            [
                (
                    "features",
                    nn.Sequential(
                        nn.Conv2d(3, 8, 3, padding=1, bias=False),
                        nn.BatchNorm2d(8),
                        nn.ReLU(inplace=True),
                        nn.MaxPool2d(3, 2),
                    ),
                ),
                ("classifier", nn.ModuleList([nn.Dropout(), nn.Dropout(), nn.Linear(8, 4)])),
            ]
        )
    )
    assert (
        repr(net)
        == """Sequential(
  (features): Sequential(
    (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    (2): ReLU(inplace=True)
    (3): MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False)
  )
  (classifier): ModuleList(
    (0-1): 2 x Dropout(p=0.5, inplace=False)
    (2): Linear(in_features=8, out_features=4, bias=True)
  )
)"""
    )
    assert repr(nn.Identity()) == "Identity()" and repr(nn.ModuleList()) == "ModuleList()"


def all_layers_torch_style(nn_mod):
    """The same layer list built with minicnn.nn or torch.nn (identical constructor calls)."""
    return [
        nn_mod.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2),
        nn_mod.Conv2d(3, 3, 3, padding="same"),
        nn_mod.Conv2d(3, 3, 1, padding="valid"),
        nn_mod.BatchNorm2d(8, momentum=None, affine=False),
        nn_mod.BatchNorm1d(3, bias=False),
        nn_mod.AvgPool2d(3, 1, 1, ceil_mode=True),
        nn_mod.AdaptiveAvgPool2d((2, None)),
        nn_mod.AdaptiveAvgPool2d(6),
        nn_mod.LocalResponseNorm(5, alpha=1e-3, beta=0.5, k=2.0),
        nn_mod.Dropout(0.25),
        nn_mod.Flatten(0, 2),
        nn_mod.Linear(3, 2, bias=False),
        nn_mod.CrossEntropyLoss(label_smoothing=0.1),
        nn_mod.Softmax(dim=-1),
        nn_mod.LogSoftmax(1),
        nn_mod.ReLU(),
        nn_mod.MaxPool2d((2, 3), (1, 2), (1, 1), ceil_mode=True),
        nn_mod.ModuleDict({"a": nn_mod.ReLU(), "b": nn_mod.Identity()}),
    ]


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = all_layers_torch_style(nn), all_layers_torch_style(torch.nn)
    for a, b in zip(ours, theirs):
        assert repr(a) == repr(b)
    assert repr(nn.Sequential(*ours)) == repr(torch.nn.Sequential(*theirs))
