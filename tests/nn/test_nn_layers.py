"""minicnn.nn layers: constructors, attributes, parameter counts, torch keys and forward passes."""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import nn
from minicnn.reference import conv2d_forward, max_pool2d_forward
from conftest import assert_close
from test_nn import small_cnn


# ---- layers: constructor checks, attributes, parameter counts ------------------------------------
@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: nn.Conv2d(0, 4, 3), ValueError, "Conv2d: in_channels must be >= 1, got 0"),
        (lambda: nn.Conv2d(4, -1, 3), ValueError, "Conv2d: out_channels must be >= 1, got -1"),
        (
            lambda: nn.Conv2d(6, 8, 3, groups=4),
            ValueError,
            r"Conv2d: in_channels \(6\) must be divisible by groups \(4\)",
        ),
        (
            lambda: nn.Conv2d(4, 6, 3, groups=4),
            ValueError,
            r"Conv2d: out_channels \(6\) must be divisible by groups \(4\)",
        ),
        (lambda: nn.Conv2d(4, 4, 3, groups=0), ValueError, "Conv2d: groups must be >= 1, got 0"),
        (lambda: nn.Conv2d(4, 4, 0), ValueError, "Conv2d: kernel_size must be >= 1"),
        (lambda: nn.Conv2d(4, 4, 3, stride=0), ValueError, "Conv2d: stride must be >= 1"),
        (lambda: nn.Conv2d(4, 4, 3, padding=-1), ValueError, "Conv2d: padding must be >= 0"),
        (
            lambda: nn.Conv2d(4, 4, 3, padding="full"),
            ValueError,
            "Conv2d: padding must be .* 'same', got 'full'",
        ),
        (
            lambda: nn.Conv2d(4, 4, 3, stride=2, padding="same"),
            ValueError,
            "not supported for strided",
        ),
        (
            lambda: nn.Conv2d(4, 4, 3, padding_mode="reflect"),
            ValueError,
            "padding_mode 'reflect' is not supported",
        ),
        (lambda: nn.Conv2d(4.0, 4, 3), TypeError, "Conv2d: in_channels must be an int, got 4.0"),
        (
            lambda: nn.Conv2d(4, 4, (3, 3, 3)),
            TypeError,
            "Conv2d: kernel_size must be an int or a pair",
        ),
        (lambda: nn.Linear(0, 3), ValueError, "Linear: in_features must be >= 1, got 0"),
        (lambda: nn.Linear(3, 0), ValueError, "Linear: out_features must be >= 1, got 0"),
        (lambda: nn.BatchNorm2d(0), ValueError, "BatchNorm2d: num_features must be >= 1, got 0"),
        (
            lambda: nn.BatchNorm2d(3, momentum=1.5),
            ValueError,
            r"BatchNorm2d: momentum must be in \[0, 1\], got 1.5",
        ),
        (lambda: nn.BatchNorm1d(3, eps=-1.0), ValueError, "BatchNorm1d: eps must be in"),
        (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be >= 1"),
        (lambda: nn.MaxPool2d(2, stride=0), ValueError, "MaxPool2d: stride must be >= 1"),
        (
            lambda: nn.MaxPool2d(2, padding=2),
            ValueError,
            r"MaxPool2d: padding should be at most half of kernel_size, got padding=\(2, 2\)",
        ),
        (lambda: nn.MaxPool2d(3, dilation=0), ValueError, "MaxPool2d: dilation must be >= 1"),
        (
            lambda: nn.AvgPool2d(3, padding=(1, 2)),
            ValueError,
            r"AvgPool2d: padding should be at most half of kernel_size, got padding=\(1, 2\)",
        ),
        (
            lambda: nn.AvgPool2d(3, divisor_override=0),
            ValueError,
            "AvgPool2d: divisor_override must be >= 1",
        ),
        (
            lambda: nn.AdaptiveAvgPool2d(0),
            ValueError,
            "AdaptiveAvgPool2d: output_size must be >= 1, got 0",
        ),
        (
            lambda: nn.AdaptiveAvgPool2d((1, 2, 3)),
            ValueError,
            "AdaptiveAvgPool2d: output_size must be an int or a pair",
        ),
        (
            lambda: nn.AdaptiveAvgPool2d(1.5),
            TypeError,
            "AdaptiveAvgPool2d: output_size must be ints or None",
        ),
        (
            lambda: nn.LocalResponseNorm(0),
            ValueError,
            "LocalResponseNorm: size must be >= 1, got 0",
        ),
        (
            lambda: nn.Dropout(1.5),
            ValueError,
            r"Dropout: p \(the dropout probability\) must be in \[0, 1\], got 1.5",
        ),
        (lambda: nn.Dropout(-0.1), ValueError, "Dropout: p"),
        (
            lambda: nn.CrossEntropyLoss(reduction="avg"),
            ValueError,
            "CrossEntropyLoss: reduction must be one of",
        ),
        (
            lambda: nn.CrossEntropyLoss(label_smoothing=2.0),
            ValueError,
            "CrossEntropyLoss: label_smoothing must be in",
        ),
        (
            lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0]),
            ValueError,
            "CrossEntropyLoss: weight must be a 1-D Tensor",
        ),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_layer_attributes_and_defaults():
    conv = nn.Conv2d(4, 8, 3, groups=2, bias=False)
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (0, 0)
    assert conv.dilation == (1, 1) and conv.groups == 2 and conv.bias is None
    assert conv.padding_mode == "zeros" and conv.weight.shape == (8, 2, 3, 3)
    assert nn.Conv2d(1, 1, 3, padding="same").padding == "same"
    lin = nn.Linear(5, 2)
    assert lin.weight.shape == (2, 5) and lin.bias.shape == (2,)
    assert nn.Linear(5, 2, dtype=minicnn.float64).weight.dtype == np.float64
    assert nn.Conv2d(1, 2, 3, dtype=minicnn.float64).bias.dtype == np.float64
    pool = nn.MaxPool2d(3)
    assert pool.kernel_size == 3 and pool.stride == 3 and pool.padding == 0 and pool.dilation == 1
    assert nn.AvgPool2d((2, 3)).stride == (2, 3)
    bn = nn.BatchNorm2d(5)
    assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (1e-5, 0.1, True, True)
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.zeros(5))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(5))
    assert not bn.running_mean.requires_grad
    bn64 = nn.BatchNorm2d(2, dtype=minicnn.float64)
    assert bn64.running_var.dtype == np.float64 and bn64.num_batches_tracked.dtype == np.int64
    assert nn.BatchNorm2d(5, affine=False).weight is None
    assert nn.BatchNorm2d(5, track_running_stats=False).running_mean is None
    lrn = nn.LocalResponseNorm(5)
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 1.0)
    assert (nn.Flatten().start_dim, nn.Flatten().end_dim) == (1, -1)
    ce = nn.CrossEntropyLoss()
    assert (ce.weight, ce.ignore_index, ce.reduction, ce.label_smoothing) == (
        None,
        -100,
        "mean",
        0.0,
    )
    weighted = nn.CrossEntropyLoss(weight=minicnn.ones(3))
    assert list(weighted.state_dict()) == ["weight"]  # a buffer, as in torch
    assert nn.CrossEntropyLoss(size_average=False).reduction == "sum"
    assert nn.CrossEntropyLoss(reduce=False).reduction == "none"
    assert nn.Identity(3, foo="bar")(7) == 7


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def lenet():
    return nn.Sequential(
        OrderedDict(
            [
                ("c1", nn.Conv2d(1, 6, 5)),
                ("r1", nn.ReLU()),
                ("s2", nn.MaxPool2d(2)),
                ("c3", nn.Conv2d(6, 16, 5)),
                ("r3", nn.ReLU()),
                ("s4", nn.MaxPool2d(2)),
                ("flat", nn.Flatten()),
                ("f5", nn.Linear(400, 120)),
                ("r5", nn.ReLU()),
                ("f6", nn.Linear(120, 84)),
                ("r6", nn.ReLU()),
                ("out", nn.Linear(84, 10)),
            ]
        )
    )


def test_parameter_counts():
    # LeNet-5: 156 + 2416 + 48120 + 10164 + 850
    assert n_params(lenet()) == 61706
    assert n_params(nn.Conv2d(4, 8, 3, groups=2)) == 8 * 2 * 9 + 8  # the two AlexNet towers
    assert n_params(nn.Conv2d(4, 8, 3)) == 8 * 4 * 9 + 8
    assert n_params(nn.BatchNorm2d(8)) == 16 and n_params(nn.BatchNorm2d(8, affine=False)) == 0
    # VGG's argument: two 3x3 convs (18 C²) vs one 5x5 (25 C²), no bias
    c = 16
    two = nn.Sequential(nn.Conv2d(c, c, 3, bias=False), nn.Conv2d(c, c, 3, bias=False))
    assert n_params(two) == 18 * c * c and n_params(nn.Conv2d(c, c, 5, bias=False)) == 25 * c * c
    # GoogLeNet's 1x1 reduction: 256 -> 64 -> 3x3 -> 128 vs a direct 3x3
    assert (
        n_params(nn.Conv2d(256, 64, 1, bias=False)) + n_params(nn.Conv2d(64, 128, 3, bias=False))
        == 256 * 64 + 64 * 128 * 9
        < n_params(nn.Conv2d(256, 128, 3, bias=False))
    )


def test_state_dict_keys_and_shapes_match_torch():
    torch = pytest.importorskip("torch")
    tnet = _torch_small_cnn(torch)
    ours = small_cnn().state_dict()
    theirs = tnet.state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape) and ours[k].dtype == theirs[k].numpy().dtype
    assert n_params(lenet()) == sum(p.numel() for p in _torch_lenet(torch).parameters())


def _torch_small_cnn(torch):
    """small_cnn()'s twin in torch.nn, with the same state_dict keys."""
    tnn = torch.nn
    return tnn.Sequential(
        OrderedDict(
            [
                ("conv", tnn.Conv2d(2, 4, 3, padding=1)),
                ("bn", tnn.BatchNorm2d(4)),
                ("relu", tnn.ReLU()),
                ("pool", tnn.AdaptiveAvgPool2d(1)),
                ("flat", tnn.Flatten()),
                ("fc", tnn.Linear(4, 3)),
            ]
        )
    )


def _torch_lenet(torch):
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120),
        tnn.ReLU(),
        tnn.Linear(120, 84),
        tnn.ReLU(),
        tnn.Linear(84, 10),
    )


# ---- layers forward (over minicnn.functional) ----------------------------------------------------
def test_conv2d_forward_vs_naive():
    conv = nn.Conv2d(
        4,
        6,
        (3, 2),
        stride=(2, 1),
        padding=(1, 2),
        dilation=(1, 2),
        groups=2,
        dtype=minicnn.float64,
    )
    x = minicnn.randn(2, 4, 5, 4, dtype=minicnn.float64)
    ref = conv2d_forward(
        x.numpy(),
        conv.weight.numpy(),
        conv.bias.numpy(),
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
    )
    assert_close(conv(x), ref)


@pytest.mark.parametrize("kernel_size", [3, 4, (2, 3)])
def test_conv2d_same_padding_keeps_the_size(kernel_size):
    conv = nn.Conv2d(2, 3, kernel_size, padding="same", dtype=minicnn.float64)
    x = minicnn.randn(1, 2, 5, 6, dtype=minicnn.float64)
    y = conv(x)
    assert y.shape == (1, 3, 5, 6)
    # torch: the extra padding of an even kernel goes to the bottom/right
    k = conv.kernel_size
    xp = np.pad(
        x.numpy(), ((0, 0), (0, 0), ((k[0] - 1) // 2, k[0] // 2), ((k[1] - 1) // 2, k[1] // 2))
    )
    ref = conv2d_forward(xp, conv.weight.numpy(), conv.bias.numpy())
    assert_close(y, ref)


def test_conv2d_valid_padding_and_no_bias():
    conv = nn.Conv2d(2, 3, 3, padding="valid", bias=False, dtype=minicnn.float64)
    x = minicnn.randn(1, 2, 4, 5, dtype=minicnn.float64)
    assert_close(conv(x), conv2d_forward(x.numpy(), conv.weight.numpy(), None))


def test_linear_forward_and_backward():
    lin = nn.Linear(4, 3, dtype=minicnn.float64)
    x = minicnn.randn(5, 4, dtype=minicnn.float64)
    y = lin(x)
    assert_close(y, x.numpy() @ lin.weight.numpy().T + lin.bias.numpy())
    y.sum().backward()
    assert_close(lin.weight.grad, np.ones((5, 3)).T @ x.numpy())
    assert_close(lin.bias.grad, np.full(3, 5.0))
    assert nn.Linear(4, 3, bias=False)(minicnn.randn(2, 4)).shape == (2, 3)


def test_batchnorm2d_train_updates_running_stats():
    bn = nn.BatchNorm2d(3, momentum=0.3, dtype=minicnn.float64)
    x = minicnn.randn(4, 3, 2, 5, dtype=minicnn.float64) * 2 + 1
    a = x.numpy()
    y = bn(x)
    mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    ref = (a - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    assert_close(y, ref)
    m = a.shape[0] * a.shape[2] * a.shape[3]
    assert_close(bn.running_mean, 0.3 * mean)
    assert_close(bn.running_var, 0.7 + 0.3 * var * m / (m - 1))  # unbiased variance
    assert bn.num_batches_tracked.item() == 1
    bn(x)
    assert bn.num_batches_tracked.item() == 2
    bn.eval()
    y_eval = bn(x)
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    assert_close(y_eval, (a - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5))
    assert bn.num_batches_tracked.item() == 2  # eval counts nothing


def test_batchnorm_momentum_none_is_a_cumulative_average():
    bn = nn.BatchNorm2d(2, momentum=None, dtype=minicnn.float64)
    batches = [minicnn.randn(3, 2, 2, 2, dtype=minicnn.float64) + i for i in range(3)]
    for x in batches:
        bn(x)
    means = [x.numpy().mean(axis=(0, 2, 3)) for x in batches]
    assert_close(bn.running_mean, np.mean(means, axis=0))
    assert bn.num_batches_tracked.item() == 3


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    bn = nn.BatchNorm2d(2, track_running_stats=False, affine=False, dtype=minicnn.float64).eval()
    x = minicnn.randn(3, 2, 2, 2, dtype=minicnn.float64)
    a = x.numpy()
    ref = (a - a.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
        a.var(axis=(0, 2, 3), keepdims=True) + 1e-5
    )
    assert_close(bn(x), ref)


def test_batchnorm_input_checks():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(minicnn.randn(2, 3))
    with pytest.raises(
        ValueError,
        match=r"BatchNorm2d: expected 3 channels \(num_features\), "
        r"got input of shape \(2, 4, 1, 1\)",
    ):
        nn.BatchNorm2d(3)(minicnn.randn(2, 4, 1, 1))
    with pytest.raises(ValueError, match="BatchNorm1d: expected 2-D or 3-D input"):
        nn.BatchNorm1d(3)(minicnn.randn(2, 3, 1, 1))
    with pytest.raises(TypeError, match="BatchNorm2d: input must be a Tensor"):
        nn.BatchNorm2d(3)(np.zeros((2, 3, 1, 1)))


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batchnorm1d(shape):
    bn = nn.BatchNorm1d(3, dtype=minicnn.float64)
    x = minicnn.randn(*shape, dtype=minicnn.float64)
    a = x.numpy()
    axes = (0,) if a.ndim == 2 else (0, 2)
    ref = (a - a.mean(axis=axes, keepdims=True)) / np.sqrt(a.var(axis=axes, keepdims=True) + 1e-5)
    y = bn(x)
    assert y.shape == shape
    assert_close(y, ref)
    assert_close(bn.running_mean, 0.1 * a.mean(axis=axes))


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.5)
    x = minicnn.ones(200, 50)
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    net = nn.Sequential(nn.Dropout(0.9)).eval()  # switched through the container
    np.testing.assert_array_equal(net(x).numpy(), x.numpy())
    assert np.all(nn.Dropout(0.0)(x).numpy() == 1)


@pytest.mark.parametrize(
    "layer,call",
    [
        (nn.MaxPool2d(3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1)),
        (nn.MaxPool2d(2, ceil_mode=True), lambda x: F.max_pool2d(x, 2, 2, ceil_mode=True)),
        (
            nn.AvgPool2d(3, 2, 1, count_include_pad=False),
            lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
        ),
        (nn.AdaptiveAvgPool2d((2, 3)), lambda x: F.adaptive_avg_pool2d(x, (2, 3))),
        (
            nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0),
            lambda x: F.local_response_norm(x, 3, 0.5, 0.75, 2.0),
        ),
        (nn.ReLU(), lambda x: F.relu(x)),
        (nn.Flatten(), lambda x: x.reshape(2, -1)),
        (nn.Softmax(dim=1), lambda x: F.softmax(x, 1)),
        (nn.LogSoftmax(dim=1), lambda x: F.log_softmax(x, 1)),
    ],
)
def test_layers_pass_their_arguments(layer, call):
    x = minicnn.randn(2, 4, 5, 5, dtype=minicnn.float64)
    assert_close(layer(x), call(x))


def test_max_pool_vs_naive():
    x = minicnn.randn(1, 2, 5, 5, dtype=minicnn.float64)
    y = nn.MaxPool2d(3, 2)(x).numpy()
    assert_close(y, max_pool2d_forward(x.numpy(), 3, 2)[0])


def test_cross_entropy_loss():
    logits = minicnn.randn(4, 3, dtype=minicnn.float64)
    target = minicnn.tensor([0, 2, 1, 2])
    a = logits.numpy()
    logp = a - a.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    nll = -logp[np.arange(4), [0, 2, 1, 2]]
    assert_close(nn.CrossEntropyLoss()(logits, target), nll.mean())
    assert_close(nn.CrossEntropyLoss(reduction="sum")(logits, target), nll.sum())
    assert_close(nn.CrossEntropyLoss(reduction="none")(logits, target), nll)
    w = np.array([1.0, 2.0, 0.5])
    weighted = nn.CrossEntropyLoss(weight=minicnn.tensor(w, dtype=minicnn.float64))(logits, target)
    tw = w[[0, 2, 1, 2]]
    assert_close(weighted, (tw * nll).sum() / tw.sum())
    ignored = nn.CrossEntropyLoss(ignore_index=2)(logits, target)
    assert_close(ignored, nll[[0, 2]].mean())
    smooth = nn.CrossEntropyLoss(label_smoothing=0.3)(logits, target)
    assert_close(smooth, (0.7 * nll - 0.3 * logp.mean(1)).mean())


def test_small_cnn_forward_backward_and_eval():
    net = small_cnn()
    x = minicnn.randn(2, 2, 5, 5)
    loss = nn.CrossEntropyLoss()(net(x), minicnn.tensor([0, 2]))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    assert net.bn.num_batches_tracked.item() == 1
    net.eval()
    y1, y2 = net(x), net(x)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert net.bn.num_batches_tracked.item() == 1


# ---- optional: same outputs as torch.nn with the same weights ------------------------------------
def test_forward_matches_torch_with_loaded_weights():
    torch = pytest.importorskip("torch")
    tnet = _torch_small_cnn(torch).double()
    net = small_cnn().double()
    net.load_state_dict({k: v.numpy() for k, v in tnet.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 5))
    for train in (True, False):
        tnet.train(train)
        net.train(train)
        expected = tnet(torch.from_numpy(x)).detach().numpy()
        assert_close(net(minicnn.tensor(x)), expected, rtol=1e-9, atol=1e-9)
    theirs = {k: v.numpy() for k, v in tnet.state_dict().items()}
    for k, v in net.state_dict().items():
        assert_close(v, theirs[k], rtol=1e-9, atol=1e-12)
