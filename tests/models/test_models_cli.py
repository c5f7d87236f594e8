"""``minicnn models`` (the registry's table), ``summary``'s views and ``gradcheck --device``."""

import json

import numpy as np
import pytest

import minicnn
from minicnn import models
from minicnn.cli import main
from minicnn.summary import skip_init, summary


# ---- the registry's variants and the table ------------------------------------------------------
def test_model_variants_default_first():
    assert list(models.model_variants("alexnet")) == ["paper", "torchvision"]
    assert list(models.model_variants("resnet50")) == ["torchvision", "paper"]
    assert models.model_variants("resnet20") == {
        "A": {"shortcut": "A"},
        "B": {"shortcut": "B"},
        "plain": {"shortcut": "plain"},
    }
    assert models.model_variants("vgg16") == {"": {}}
    assert models.variant_kwargs("googlenet", "torchvision") == {"variant": "torchvision"}
    with pytest.raises(
        ValueError,
        match="resnet20 has no variant 'paper'; its variants "
        r"\(shortcut=\) are A, B, plain",
    ):
        models.variant_kwargs("resnet20", "paper")
    with pytest.raises(ValueError, match="vgg16 has no variants"):
        models.variant_kwargs("vgg16", "paper")


def test_plain_cifar_resnet_has_no_shortcut_and_fewer_ops():
    plain, res = summary(models.resnet20(shortcut="plain")), summary(models.resnet20())
    assert plain.params == res.params  # option A shortcuts have no parameters
    assert not any(r.type == "add" for r in plain.rows) and any(r.type == "Add" for r in res.rows)
    assert plain.depth == res.depth == 20


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("alexnet", {}),
        ("alexnet", {"variant": "torchvision"}),
        ("googlenet", {}),
        ("densenet_bc_100", {}),
        ("vgg11", {}),
        ("resnet20", {}),
    ],
)
def test_searched_min_input_size_is_the_models_own_and_tight(name, kwargs):
    with skip_init():
        model = models.get_model(name, **kwargs)
    with minicnn.no_grad(), np.errstate(all="ignore"):
        found = models._registry.search_min_input_size(model, model.default_input_size[1])
        assert found == model.min_input_size
        model.eval()(minicnn.zeros(1, 3, found, found))
        if found > 1:
            with pytest.raises(ValueError):
                model(minicnn.zeros(1, 3, found - 1, found - 1))


def test_model_table_rows_are_computed():
    rows = models.model_table(["alexnet", "resnet20"])
    assert [(r["name"], r["variant"]) for r in rows] == [
        ("alexnet", "paper"),
        ("alexnet", "torchvision"),
        ("resnet20", "A"),
        ("resnet20", "B"),
        ("resnet20", "plain"),
    ]
    with skip_init():
        tv = summary(models.alexnet(variant="torchvision"))
    assert rows[1]["params"] == tv.params == 61_100_840 and rows[1]["macs"] == tv.macs
    assert rows[0]["default_input_size"] == (3, 227, 227) and rows[0]["min_input_size"] == 67
    assert rows[3]["params"] > rows[2]["params"] == rows[4]["params"]  # B adds 1x1 projections


def test_models_command_table_and_json(capsys):
    assert main(["models", "--family", "alexnet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "Model",
        "Variant",
        "Family",
        "Params",
        "MACs",
        "Input",
        "Min",
        "input",
    ]
    assert out[2].split() == [
        "alexnet",
        "paper",
        "alexnet",
        "60,965,224",
        "729.52M",
        "3x227x227",
        "67x67",
    ]
    assert out[3].split()[:4] == ["alexnet", "torchvision", "alexnet", "61,100,840"]
    assert main(["models", "--family", "alexnet", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["variant"], r["min_input_size"]) for r in rows] == [
        ("alexnet", "paper", 67),
        ("alexnet", "torchvision", 63),
    ]


def test_models_command_bad_family(capsys):
    assert main(["models", "--family", "lenet"]) == 2
    err = capsys.readouterr().err
    assert "--family 'lenet'" in err and "resnet" in err and err.count("\n") == 1


# ---- summary ------------------------------------------------------------------------------------
def test_summary_depth_collapses_nested_modules(capsys):
    full, one = summary(models.resnet20()), summary(models.resnet20(), depth=1)
    assert [r.name for r in one.rows] == [
        "conv1",
        "bn1",
        "relu",
        "layer1",
        "layer2",
        "layer3",
        "avgpool",
        "flatten",
        "fc",
    ]
    layer3 = one.rows[5]
    assert layer3.type == "Sequential" and layer3.output_shape == (1, 64, 8, 8)
    assert layer3.params == sum(r.params for r in full.rows if r.name.startswith("layer3."))
    assert layer3.rf == [r for r in full.rows if r.name.startswith("layer3.")][-1].rf
    assert one.params == full.params and one.macs == full.macs
    two = summary(models.resnet20(), depth=2)
    assert "layer1.0" in [r.name for r in two.rows] and two.rows[3].type == "BasicBlock"
    assert main(["summary", "resnet20", "--depth", "1"]) == 0
    assert any(
        line.split()[:2] == ["layer3", "Sequential"]
        for line in capsys.readouterr().out.splitlines()
    )
    with pytest.raises(ValueError, match="depth must be a positive int"):
        summary(models.resnet20(), depth=0)


def test_summary_rows_in_forward_order_and_named_ops():
    names = [r.name for r in summary(models.resnet50(), (3, 32, 32)).rows]
    assert (
        names.index("layer1.0.conv3")
        < names.index("layer1.0.downsample.0")
        < names.index("layer1.0.add")
    )
    assert "flatten" in names and "reshape" not in names
    dense = summary(models.densenet_bc_100(), (3, 8, 8))
    cats = [r for r in dense.rows if r.type == "Cat"]
    assert cats and all(r.output_shape[1] > 24 for r in cats)  # no cat() of the input alone


def test_compare_shows_the_receptive_field(capsys):
    assert main(["summary", "--compare", "vgg11", "resnet18", "--input", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert " RF " in out[0]
    with skip_init():
        vgg = summary(models.vgg11(), (3, 64, 64))
    # 3x3 convs and 2x2/2 pools: pool5 (2x2 map) sees 150 pixels; the adaptive 7x7 pool repeats
    # them in bins of up to 2 positions, 32 pixels apart: 150 + 32
    assert vgg.feature_rf == (182, 182)
    assert " 182 " in out[2]


# ---- gradcheck on a device ----------------------------------------------------------------------
def test_gradcheck_on_emu_in_both_dtypes(capsys):
    assert (
        main(["gradcheck", "--device", "emu", "--op", "conv2d", "--op", "local_response_norm"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("device emu, float64") and "8 passed, 0 failed" in out
    assert (
        main(
            [
                "gradcheck",
                "--device",
                "emu",
                "--dtype",
                "float32",
                "--op",
                "max_pool2d",
                "--op",
                "batch_norm",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "float32 vs 64" in out and "5 passed, 0 failed" in out and "within 1e-04" in out


def test_gradcheck_float32_fails_a_tolerance_below_float32_rounding(capsys):
    assert main(["gradcheck", "--dtype", "float32", "--op", "conv2d", "--tol32", "1e-12"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--tol", "0"], "--tol must be positive"),
        (["--tol32", "-1"], "--tol32 must be positive"),
        (["--op", "nope"], "unknown op(s) nope"),
    ],
)
def test_gradcheck_usage_errors(capsys, argv, message):
    assert main(["gradcheck"] + argv) == 2
    assert message in capsys.readouterr().err


def test_gradcheck_cuda_without_a_gpu_is_a_usage_error(capsys):
    from minicnn.backends import is_available

    if is_available("cuda"):
        pytest.skip("a GPU works here")
    assert main(["gradcheck", "--device", "cuda"]) == 2
    assert "--device cuda is not available" in capsys.readouterr().err


# ---- conventions --------------------------------------------------------------------------------
def test_densenet_legacy_keys_are_renamed_as_torchvision_does():
    from minicnn.models.convert import rename_legacy_keys

    model = models.densenet_bc_100()
    # legacy files predate BatchNorm's num_batches_tracked (loading tolerates its absence)
    state = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    legacy = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    renamed = rename_legacy_keys(legacy)
    assert list(renamed) == list(state)  # same keys, same order
    model.load_state_dict(renamed)  # strict
    assert rename_legacy_keys({"features.norm0.weight": 1, "classifier.bias": 2}) == {
        "features.norm0.weight": 1,
        "classifier.bias": 2,
    }
    assert list(rename_legacy_keys({"a.denselayer3.norm.2.running_var": 0})) == [
        "a.denselayer3.norm2.running_var"
    ]


def test_lazy_subpackages_and_torchvision_transform_names():
    import subprocess
    import sys

    code = (
        "import minicnn; print(minicnn.optim.SGD.__name__, minicnn.models.resnet18.__name__, "
        "minicnn.data.transforms.ToTensor.__name__, minicnn.train.__name__, "
        "minicnn.io.__name__, 'viz' in dir(minicnn))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == [
        "SGD",
        "resnet18",
        "ToFloatCHW",
        "minicnn.train",
        "minicnn.io",
        "True",
    ]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        minicnn.nope
    from minicnn.data import transforms as T

    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])(img)
    np.testing.assert_allclose(t, (img.transpose(2, 0, 1) / 255 - 0.5) / 0.25, rtol=1e-6)


def test_load_state_dict_accepts_tensors():
    src, dst = minicnn.nn.Linear(3, 2), minicnn.nn.Linear(3, 2)
    dst.load_state_dict({k: minicnn.tensor(v) for k, v in src.state_dict().items()})
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())
    assert all(isinstance(v, np.ndarray) for v in dst.state_dict().values())  # still arrays
