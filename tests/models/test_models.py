"""minicnn.models: parameter counts (torchvision's published numbers, and hand counts of the paper
variants, in model_counts.py), forward shapes and checkpoint keys of every builder at small inputs,
the registry, architecture details and minimum input sizes. GoogLeNet's aux outputs, training steps,
round trips and torchvision's logits: test_models_training.py.

Big models are built without their slow N(0, σ²) re-initialisation where the test does not need
it (``init_weights=False`` for VGG) and run only at 32-79 px with batch 1-2 to keep the file fast.
"""

import sys

import numpy as np
import pytest

import minicnn
from minicnn import models
from conftest import assert_close
from model_counts import (
    PAPER_ALEXNET,
    TORCHVISION_COUNTS,
    cifar_resnet_params,
    densenet_params,
    googlenet_params,
)


@pytest.fixture
def lazy_init(monkeypatch):
    """Conv2d/Linear start from lazily zeroed memory instead of random draws, for the >50M-parameter
    models whose counts and shapes are all a test needs (drawing 100M+ randoms takes seconds)."""

    def zero(self):
        for t in (self.weight, self.bias):
            if t is not None:
                t._data = np.zeros(t.shape, t.dtype)

    for layer in (minicnn.nn.Conv2d, minicnn.nn.Linear):
        monkeypatch.setattr(layer, "reset_parameters", zero)


@pytest.fixture(scope="module")
def paper_alexnet():
    """Built once (61M N(0, 0.01²) weights take a while); tests must not modify it."""
    return models.alexnet().eval()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_hand_formulas_reproduce_torchvision_counts():
    """model_counts.py's formulas on torchvision's layouts give torchvision's published numbers."""
    assert googlenet_params(paper=False, aux=False) == 6_624_904
    assert densenet_params((6, 12, 24, 16), 32, 64, False, 1000) == 7_978_856
    assert densenet_params((6, 12, 36, 24), 48, 96, False, 1000) == 28_681_000


TV = {"variant": "torchvision"}
NO_INIT = {"init_weights": False}  # VGG: skip the slow N(0, 0.01²) redraw of 120M FC weights

# (builder, kwargs, expected parameters, forward input side)
CASES = [
    ("alexnet", {}, PAPER_ALEXNET, 67),
    ("alexnet", TV, TORCHVISION_COUNTS["alexnet"], 64),
    *[
        (v, NO_INIT, TORCHVISION_COUNTS[v], 32)
        for v in (
            "vgg11",
            "vgg11_bn",
            "vgg13",
            "vgg13_bn",
            "vgg16",
            "vgg16_bn",
            "vgg19",
            "vgg19_bn",
        )
    ],
    ("googlenet", {}, googlenet_params(paper=True, aux=True), 32),
    ("googlenet", {"aux_logits": False}, googlenet_params(paper=True, aux=False), 32),
    ("googlenet", {**TV, "aux_logits": False}, TORCHVISION_COUNTS["googlenet"], 32),
    ("googlenet", TV, googlenet_params(paper=False, aux=True), 32),
    *[
        (r, {}, TORCHVISION_COUNTS[r], 32)
        for r in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    ],
    ("resnet50", {"variant": "paper"}, TORCHVISION_COUNTS["resnet50"], 32),
    *[(f"resnet{d}", {}, cifar_resnet_params(d), 32) for d in (20, 32, 44, 56, 110)],
    ("resnet20", {"shortcut": "B"}, cifar_resnet_params(20, "B"), 32),
    *[
        (d, {}, TORCHVISION_COUNTS[d], 32)
        for d in ("densenet121", "densenet161", "densenet169", "densenet201")
    ],
    ("densenet_bc_100", {}, densenet_params((16, 16, 16), 12, 24, True, 10), 32),
]


def _id(case):
    name, kw = case[0], case[1]
    return name + "".join(f"-{k}={v}" for k, v in kw.items() if k != "init_weights")


# A sample of torchvision's checkpoint keys, so converted torchvision weights keep loading.
KEY_SAMPLES = {
    "alexnet-variant=torchvision": [
        "features.0.weight",
        "features.10.bias",
        "classifier.1.weight",
        "classifier.6.bias",
    ],
    "vgg11_bn": [
        "features.0.weight",
        "features.1.running_mean",
        "features.1.num_batches_tracked",
        "features.4.weight",
        "classifier.0.weight",
        "classifier.6.bias",
    ],
    "vgg16": ["features.28.weight", "classifier.3.bias"],
    "googlenet-variant=torchvision": [
        "conv1.conv.weight",
        "conv1.bn.num_batches_tracked",
        "inception3a.branch2.1.conv.weight",
        "inception4e.branch4.1.bn.running_var",
        "aux1.conv.conv.weight",
        "aux2.fc2.bias",
        "fc.weight",
    ],
    "resnet50": [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer4.2.bn3.num_batches_tracked",
        "fc.bias",
    ],
    "densenet121": [
        "features.conv0.weight",
        "features.norm0.running_var",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition3.conv.weight",
        "features.norm5.bias",
        "classifier.weight",
    ],
}


def _classes(model):
    head = model.fc if hasattr(model, "fc") else model.classifier
    return (head if isinstance(head, minicnn.nn.Linear) else head[-1]).out_features


@pytest.mark.parametrize("name,kwargs,expected,side", CASES, ids=[_id(c) for c in CASES])
def test_parameter_count_forward_shape_and_keys(
    name, kwargs, expected, side, paper_alexnet, request
):
    if expected > 50e6 and (name, kwargs) != ("alexnet", {}):
        request.getfixturevalue("lazy_init")
    model = (
        paper_alexnet
        if (name, kwargs) == ("alexnet", {})
        else models.get_model(name, **kwargs).eval()
    )
    assert n_params(model) == expected
    keys = KEY_SAMPLES.get(_id((name, kwargs)), [])
    state = model.state_dict()
    assert [k for k in keys if k not in state] == []
    batch = 2 if expected < 30e6 else 1
    with minicnn.no_grad():
        y = model(minicnn.randn(batch, 3, side, side))
        assert y.shape == (batch, _classes(model)) and y.dtype == minicnn.float32
        assert np.isfinite(y.numpy()).all()
        if name.startswith("vgg"):  # five 2x2 pools: 32 is the smallest side
            with pytest.raises(ValueError, match=rf"{name}: input of 31x32 .* at least 32x32"):
                model(minicnn.randn(1, 3, 31, 32))


def test_paper_counts_match_the_papers():
    """Rounded as the papers print them: AlexNet ~61M (60.97M), CIFAR ResNets (sec. 4.2),
    DenseNet-BC (L=100, k=12) 0.8M (Table 2)."""
    assert PAPER_ALEXNET == 60_965_224
    for depth, millions in ((20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)):
        assert cifar_resnet_params(depth) / 1e6 == pytest.approx(millions, rel=0.02)
    assert densenet_params((16, 16, 16), 12, 24, True, 10) / 1e6 == pytest.approx(0.8, rel=0.05)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("alexnet", TV),
        ("googlenet", {}),
        ("googlenet", TV),
        ("resnet18", {}),
        ("resnet20", {}),
        ("densenet121", {}),
        ("densenet_bc_100", {}),
    ],
)
def test_num_classes(name, kwargs):
    model = models.get_model(name, num_classes=7, **kwargs).eval()
    side = max(model.min_input_size, 32)
    with minicnn.no_grad():
        assert model(minicnn.randn(1, 3, side, side)).shape == (1, 7)


# ---- registry ------------------------------------------------------------------------------------
ALL_BUILDERS = [
    "alexnet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet_bc_100",
    "googlenet",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]


def test_registry():
    assert sorted(models.list_models()) == sorted(ALL_BUILDERS)
    assert models.list_models("resnet")[:3] == ["resnet18", "resnet20", "resnet32"]  # numeric order
    assert models.list_models("googlenet") == ["googlenet"]
    assert models.get_model_builder("resnet50") is models.resnet50
    assert models.model_family("vgg16_bn") == "vgg"
    assert models.get_model("resnet20", num_classes=3).fc.out_features == 3
    with pytest.raises(KeyError, match="Unknown model .resnet51.; did you mean .*resnet50"):
        models.get_model("resnet51")
    with pytest.raises(ValueError, match="unknown family 'inception'"):
        models.list_models("inception")


# ---- architecture details ------------------------------------------------------------------------
def test_paper_alexnet_layers(paper_alexnet):
    m = paper_alexnet
    convs = [l for l in m.features if isinstance(l, minicnn.nn.Conv2d)]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert (
        convs[0].kernel_size == (11, 11)
        and convs[0].stride == (4, 4)
        and convs[0].padding == (0, 0)
    )
    pools = [l for l in m.features if isinstance(l, minicnn.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3  # overlapping pooling
    # Init (sec. 5): N(0, 0.01²) weights; biases 1 in conv2, conv4, conv5, fc6, fc7, else 0.
    layers = convs + [l for l in m.classifier if isinstance(l, minicnn.nn.Linear)]
    assert [float(l.bias.numpy()[0]) for l in layers] == [0, 1, 0, 1, 1, 1, 1, 0]
    assert np.std(layers[5].weight.numpy()) == pytest.approx(0.01, rel=0.01)


def test_paper_alexnet_lrn_is_the_papers_formula(paper_alexnet):
    """b = a / (k + α Σ a²)^β with the paper's k=2, n=5, α=1e-4 (not divided by n), β=0.75."""
    lrn = paper_alexnet.features[2]
    a = np.random.default_rng(0).standard_normal((1, 7, 2, 2)) * 30
    sq = np.pad(a**2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, i : i + 7] for i in range(5))
    assert_close(lrn(minicnn.tensor(a)), a / (2 + 1e-4 * window) ** 0.75)


def test_resnet_stride_placement():
    v15, paper = models.resnet50(), models.resnet50(variant="paper")
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)
    assert list(v15.state_dict()) == list(paper.state_dict())


def test_zero_pad_shortcut_is_option_a():
    m = models.resnet20()
    shortcut = m.layer2[0].downsample
    assert isinstance(shortcut, models.resnet.ZeroPadShortcut) and n_params(shortcut) == 0
    x = np.random.default_rng(0).standard_normal((2, 16, 7, 7))
    expected = np.concatenate([x[:, :, ::2, ::2], np.zeros((2, 16, 4, 4))], axis=1)
    assert_close(shortcut(minicnn.tensor(x)), expected)
    assert isinstance(models.resnet20(shortcut="B").layer2[0].downsample, minicnn.nn.Sequential)


def test_init_conventions():
    """torchvision's inits: ResNet convs N(0, 2/fan_out), BN (1, 0); DenseNet convs N(0, 2/fan_in),
    classifier bias 0; torchvision GoogLeNet N(0, 0.01²) truncated; VGG FC N(0, 0.01²) (small)."""
    r = models.resnet20()
    w = r.layer3[1].conv1.weight.numpy()  # 64 x 64 x 3 x 3: fan_out = 576
    assert w.std() == pytest.approx(np.sqrt(2 / 576), rel=0.03)
    assert (r.bn1.weight.numpy() == 1).all() and (r.bn1.bias.numpy() == 0).all()
    d = models.densenet_bc(40)
    w = d.features.denseblock3.denselayer6.conv1.weight.numpy()  # 48 x c_in x 1 x 1
    assert w.std() == pytest.approx(np.sqrt(2 / w.shape[1]), rel=0.05)
    assert (d.classifier.bias.numpy() == 0).all()
    g = models.googlenet(variant="torchvision")
    w = g.inception4e.branch2[1].conv.weight.numpy()
    assert w.std() == pytest.approx(0.01, rel=0.02) and np.abs(w).max() < 0.06
    assert r.layer1[0].bn2.weight.numpy().min() == 1
    assert (models.resnet20(zero_init_residual=True).layer1[0].bn2.weight.numpy() == 0).all()


# ---- input sizes ---------------------------------------------------------------------------------
MIN_SIZES = [  # (builder, kwargs, smallest side, module whose check_input to switch off)
    ("alexnet", {}, 67, "alexnet"),
    ("alexnet", TV, 63, "alexnet"),
    ("googlenet", {}, 31, "googlenet"),
    ("googlenet", TV, 15, "googlenet"),
    ("densenet121", {}, 29, "densenet"),
    ("densenet_bc_100", {}, 4, "densenet"),
]


@pytest.mark.parametrize("name,kwargs,side,module", MIN_SIZES, ids=[_id(c) for c in MIN_SIZES])
def test_minimum_input_size(name, kwargs, side, module, monkeypatch, paper_alexnet):
    model = (
        paper_alexnet
        if (name, kwargs) == ("alexnet", {})
        else models.get_model(name, **kwargs).eval()
    )
    assert model.min_input_size == side
    with minicnn.no_grad():
        assert model(minicnn.randn(1, 3, side, side)).shape == (1, _classes(model))
        with pytest.raises(ValueError, match=rf"{name}.*{side - 1}x{side}.*at least {side}x{side}"):
            model(minicnn.randn(1, 3, side - 1, side))
        # The bound is tight: without the check, the layers themselves fail one pixel below it.
        # (sys.modules: ``minicnn.models.alexnet`` is the builder, as in torchvision.)
        monkeypatch.setattr(
            sys.modules[f"minicnn.models.{module}"], "check_input", lambda *a, **k: None
        )
        with pytest.raises(ValueError):
            model(minicnn.randn(1, 3, side - 1, side - 1))


def test_paper_alexnet_rejects_64px(paper_alexnet):
    with pytest.raises(
        ValueError, match=r"alexnet\(variant='paper'\): input of 64x64 .* at least 67x67"
    ):
        paper_alexnet(minicnn.randn(1, 3, 64, 64))


def test_resnets_accept_tiny_inputs():
    with minicnn.no_grad():
        assert models.resnet18(num_classes=4).eval()(minicnn.randn(1, 3, 1, 1)).shape == (1, 4)
        assert models.resnet20().eval()(minicnn.randn(1, 3, 5, 5)).shape == (1, 10)


def test_bad_inputs_and_variants():
    with pytest.raises(
        ValueError, match=r"expected a \(N, C, H, W\) input, got shape \(3, 32, 32\)"
    ):
        models.resnet20()(minicnn.randn(3, 32, 32))
    with pytest.raises(TypeError, match="must be a minicnn Tensor"):
        models.resnet20()(np.zeros((1, 3, 32, 32)))
    for build, msg in [
        (lambda: models.alexnet(variant="caffe"), r"alexnet: unknown variant 'caffe'"),
        (lambda: models.googlenet(variant="v3"), r"googlenet: unknown variant 'v3'"),
        (lambda: models.resnet50(variant="v1"), r"resnet50: unknown variant 'v1'.*'paper'"),
        (lambda: models.resnet20(shortcut="C"), r"resnet20: unknown shortcut 'C'"),
        (lambda: models.resnet.CifarResNet(21), r"depth must be 6n \+ 2"),
        (lambda: models.densenet_bc(99), r"depth must be 6n \+ 4"),
    ]:
        with pytest.raises(ValueError, match=msg):
            build()
