"""minicnn.summary: MACs, params, receptive fields and depth against hand counts; JSON; the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import models, nn
from minicnn.cli import main
from minicnn.summary import Summary, SummaryError, skip_init, summary
from minicnn.summary._rules import _union


class Toy(nn.Module):
    """Small enough to count by hand (input 3x8x8)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),  # -> 4x8x8
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),  # -> 4x4x4
            nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False),  # -> 8x2x2
            nn.LocalResponseNorm(3),
            nn.AvgPool2d(2),  # -> 8x1x1
        )
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def rows_by_name(s):
    return {r.name: r for r in s.rows}


# ---- MACs, params, memory of a hand-countable model -------------------------------------------
def test_toy_macs_params_memory_by_hand():
    s = summary(Toy(), (3, 8, 8))
    names = [
        "features.0",
        "features.1",
        "features.2",
        "features.3",
        "features.4",
        "features.5",
        "features.6",
        "flatten",
        "fc",
    ]
    assert [r.name for r in s.rows] == names
    macs = {
        "features.0": 4 * 8 * 8 * 3 * 3 * 3,  # E=256 outputs x C*R*S=27            = 6912
        "features.1": 2 * 256,  # BN: 2 per element                   = 512
        "features.2": 256,  # ReLU: 1 per element
        "features.3": 4 * 4 * 4 * 2 * 2,  # max pool: 64 outputs x 4-window     = 256
        "features.4": 8 * 2 * 2 * (4 // 2) * 3 * 3,  # 32 outputs x C/G=2 x 9         = 576
        "features.5": 32 * (3 + 2),  # LRN: size + pow + div per element   = 160
        "features.6": 8 * 2 * 2,  # avg pool: 8 outputs x 4-window      = 32
        "flatten": 0,
        "fc": 8 * 5,  #                                      = 40
    }
    rows = rows_by_name(s)
    assert {n: rows[n].macs for n in names} == macs
    assert s.macs == 8744
    assert s.macs_conv_linear == 6912 + 576 + 40
    assert s.flops_forward == 2 * 8744 and s.flops_backward == 4 * 8744
    params = {
        "features.0": 4 * 3 * 9 + 4,
        "features.1": 4 + 4,
        "features.4": 8 * 2 * 9,
        "fc": 8 * 5 + 5,
    }
    assert {n: rows[n].params for n in names if rows[n].params} == params
    assert rows["features.1"].buffers == 8  # running mean and var; num_batches_tracked not
    assert s.params == 309 and s.buffers == 8 and s.params_unused == 0
    assert [rows[n].memory_bytes for n in names] == [1024, 1024, 1024, 256, 128, 128, 32, 32, 20]
    assert [rows[n].output_shape for n in names][-3:] == [(1, 8, 1, 1), (1, 8), (1, 5)]
    assert s.depth == 3 and s.weight_layers == 3
    assert s.largest_layer["name"] == "features.4" and s.largest_layer["params"] == 144


def test_toy_receptive_field_by_hand():
    rows = rows_by_name(summary(Toy(), (3, 8, 8)))
    expected = {  # (size, jump, start)
        "features.0": (3, 1, 0.0),  # 3x3 pad 1: start 0 + (1 - 1) * 1
        "features.2": (3, 1, 0.0),  # ReLU keeps the field
        "features.3": (4, 2, 0.5),  # 2x2/2: 3 + 1*1; start 0 + 0.5 * 1
        "features.4": (8, 4, 0.5),  # 3x3/2 pad 1 at jump 2: 4 + 2*2; start 0.5 + (1 - 1) * 2
        "features.5": (8, 4, 0.5),  # LRN is across channels
        "features.6": (12, 8, 2.5),  # 2x2/2 at jump 4: 8 + 1*4; start 0.5 + 0.5 * 4
        "fc": (12, None, 2.5),  # flatten of a 1x1 map: no spatial axes left
    }
    for name, (size, jump, start) in expected.items():
        r = rows[name]
        assert (r.rf, r.jump, r.start) == ((size, size), (jump, jump), (start, start)), name


def test_batch_size_scales_macs_not_params():
    one, two = summary(Toy(), (3, 8, 8)), summary(Toy(), (3, 8, 8), batch_size=2)
    assert two.macs == 2 * one.macs and two.params == one.params
    assert two.input_shape == (2, 3, 8, 8) and two.rows[0].output_shape == (2, 4, 8, 8)


def test_frozen_parameters_are_non_trainable():
    model = Toy()
    model.fc.weight.requires_grad = False
    s = summary(model, (3, 8, 8))
    assert s.params_non_trainable == 40 and s.params_trainable == 269 and s.params == 309
    assert rows_by_name(s)["fc"].params_non_trainable == 40


# ---- branches: residual adds and concatenations -------------------------------------------------
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.a = nn.Conv2d(4, 4, 1)
        self.b = nn.Conv2d(4, 4, 5, padding=2)
        self.res1 = nn.Conv2d(8, 8, 3, padding=1)
        self.res2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.stem(x)
        y = minicnn.cat([self.a(x), self.b(x)], 1)
        return self.pool(self.res2(self.res1(y)) + y)


def test_receptive_field_and_depth_through_concat_and_residual():
    s = summary(Branchy(), (3, 16, 16))
    rows = rows_by_name(s)
    assert [r.name for r in s.rows] == ["stem", "a", "b", "cat", "res1", "res2", "add", "pool"]
    rf = {name: rows[name].rf[0] for name in rows}
    assert rf == {
        "stem": 3,  # 3x3/2: jump 2 from here on
        "a": 3,  # 1x1 adds nothing
        "b": 11,  # 5x5 at jump 2: 3 + 4*2
        "cat": 11,  # union of 3 and 11 (same centre)
        "res1": 15,  # 11 + 2*2
        "res2": 19,  # 15 + 2*2
        "add": 19,  # union of the branch (19) and the shortcut (11)
        "pool": 21,  # 2x2/2: 19 + 1*2
    }
    assert rows["pool"].jump == (4, 4) and rows["pool"].start == (1.0, 1.0)
    assert rows["add"].macs == 8 * 8 * 8 and rows["cat"].macs == 0
    assert s.depth == 4  # stem -> b -> res1 -> res2 (the shortcut skips two)
    assert s.weight_layers == 5


def test_union_of_fields_with_different_centres():
    # field A covers [0, 1] (size 2, centre 0.5), field B covers [1, 5] (size 5, centre 3)
    assert _union([(2, 1, 0.5), (5, 1, 3.0)]) == (6, 1, 2.5)
    assert _union([(3, 2, 0.0), (3, 2, 0.0)]) == (3, 2, 0.0)


class Shared(nn.Module):
    """One conv and one ReLU module called twice (shared weights)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(self.relu(self.conv(x))))


def test_module_called_twice_gets_numbered_rows_and_counts_its_params_once():
    s = summary(Shared(), (2, 5, 5))
    assert [r.name for r in s.rows] == ["conv", "relu", "conv_1", "relu_1"]
    assert [r.params for r in s.rows] == [2 * 2 * 9 + 2, 0, 0, 0]
    assert s.params == sum(p.numel() for p in Shared().parameters()) == 38
    assert s.rows[2].rf == (5, 5) and s.depth == 2


# ---- the real models: receptive fields by hand ------------------------------------------------
def build(name, **kwargs):
    with skip_init():
        return models.get_model(name, **kwargs)


def test_vgg16_receptive_field_by_hand():
    s = summary(build("vgg16"), (3, 32, 32))
    convs = [r for r in s.rows if r.type == "Conv2d"]
    pools = [r for r in s.rows if r.type == "MaxPool2d"]
    # a 3x3/1 conv adds 2 x jump; a 2x2/2 pool adds 1 x jump and doubles the jump
    # block 1 (jump 1): 3, 5, pool 6 | block 2 (jump 2): 10, 14, pool 16
    # block 3 (jump 4): 24, 32, 40, pool 44 | block 4 (jump 8): 60, 76, 92, pool 100
    # block 5 (jump 16): 132, 164, 196, pool 212
    assert [r.rf[0] for r in convs] == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]
    assert [r.jump[0] for r in convs] == [1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16]
    assert [r.rf[0] for r in pools] == [6, 16, 44, 100, 212]
    assert [r.jump[0] for r in pools] == [2, 4, 8, 16, 32]
    assert s.depth == 16 and s.weight_layers == 16


def test_paper_alexnet_receptive_field_by_hand():
    s = summary(build("alexnet"), (3, 227, 227))
    rf = [
        (r.type, r.rf[0], r.jump[0])
        for r in s.rows
        if r.jump is not None
        and r.jump[0]
        and r.type in ("Conv2d", "MaxPool2d", "LocalResponseNorm")
    ]
    assert rf == [
        ("Conv2d", 11, 4),  # conv1 11x11/4
        ("LocalResponseNorm", 11, 4),  # across channels: no spatial growth
        ("MaxPool2d", 19, 8),  # 3x3/2: 11 + 2*4
        ("Conv2d", 51, 8),  # conv2 5x5: 19 + 4*8
        ("LocalResponseNorm", 51, 8),
        ("MaxPool2d", 67, 16),  # 51 + 2*8
        ("Conv2d", 99, 16),  # conv3 3x3: 67 + 2*16
        ("Conv2d", 131, 16),  # conv4
        ("Conv2d", 163, 16),  # conv5
        ("MaxPool2d", 195, 32),  # 163 + 2*16
    ]
    assert s.rows[0].start == (5.0, 5.0)  # centre of the first 11x11 window
    assert s.rows[0].macs == 96 * 3 * 11 * 11 * 55 * 55  # 105,415,200
    assert s.depth == 8
    # the two towers: conv2, conv4, conv5 are grouped (G=2), halving their weights
    assert s.params == sum(p.numel() for p in build("alexnet").parameters())


# torchvision's published "GFLOPS" (multiply-accumulates of conv and linear at 224x224) and depth.
TORCHVISION = [
    ("alexnet:torchvision", 0.71, 8),
    ("vgg16", 15.47, 16),
    ("googlenet:torchvision", 1.50, 22),
    ("resnet18", 1.81, 18),
    ("resnet50", 4.09, 50),
    ("densenet121", 2.83, 121),
]


@pytest.mark.parametrize("name,gmacs,depth", TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_conv_linear_macs_match_torchvision_gflops(name, gmacs, depth):
    arch, _, variant = name.partition(":")
    model = build(arch, **({"variant": variant} if variant else {}))
    s = summary(model, (3, 224, 224))
    assert round(s.macs_conv_linear / 1e9, 2) == gmacs
    assert s.macs > s.macs_conv_linear  # pools, BN, ReLU, adds come on top
    assert s.depth == depth
    assert s.params == sum(p.numel() for p in model.parameters())


def test_googlenet_aux_heads_are_reported_unused_in_evaluation():
    model = build("googlenet")
    s = summary(model, (3, 64, 64))
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith("aux"))
    assert aux > 0 and s.params_unused == aux
    assert s.params == sum(p.numel() for p in model.parameters())


# ---- API behaviour -----------------------------------------------------------------------------
def test_json_round_trip():
    s = summary(Toy(), (3, 8, 8))
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert Summary.from_json(s.to_json()) == s
    row = d["rows"][0]
    assert set(row) >= {
        "name",
        "type",
        "kind",
        "output_shape",
        "params",
        "params_trainable",
        "params_non_trainable",
        "buffers",
        "macs",
        "memory_bytes",
        "rf",
        "jump",
        "start",
    }
    assert set(d) >= {
        "params",
        "params_trainable",
        "buffers",
        "macs",
        "macs_conv_linear",
        "flops_forward",
        "flops_backward",
        "depth",
        "largest_layer",
        "activation_bytes",
    }
    assert d["rows"][-1]["jump"] == [None, None]


def test_summary_restores_training_mode_and_leaves_running_stats_alone():
    model = Toy()
    model.train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (3, 8, 8))
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_str_prints_the_table_and_totals():
    text = str(summary(Toy(), (3, 8, 8)))
    for piece in (
        "features.4",
        "Conv2d",
        "flatten()",
        "(1, 8, 2, 2)",
        "Params: 309",
        "Depth: 3",
        "Largest layer: features.4",
    ):
        assert piece in text


def test_bad_inputs_raise_summary_error():
    with pytest.raises(SummaryError, match="cannot run on an input"):
        summary(Toy(), (3, 2, 2))
    with pytest.raises(SummaryError, match="input_size"):
        summary(Toy(), "3x8x8")
    with pytest.raises(SummaryError, match="batch_size"):
        summary(Toy(), (3, 8, 8), batch_size=0)


def test_default_input_size_comes_from_the_model():
    s = summary(build("resnet20"))
    assert s.input_shape == (1, 3, 32, 32)


def test_top_level_name():
    assert minicnn.summary is summary


# ---- command line ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv,message",
    [
        (["summary", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["summary", "vgg16", "--input", "3xAx224"], "--input must look like 3x224x224"),
        (["summary", "vgg16", "--input", "0x224x224"], "--input must look like 3x224x224"),
        (["summary", "vgg16", "--input", "3x16x16"], "too small"),
        (["summary", "alexnet", "--variant", "nope"], "--variant: alexnet has no variant 'nope'"),
        (
            ["summary", "resnet20", "--variant", "paper"],
            "--variant: resnet20 has no variant 'paper'",
        ),
        (["summary", "vgg16", "--variant", "paper"], "--variant: vgg16 has no variants"),
        (["summary", "vgg16", "--depth", "0"], "--depth must be positive"),
        (["summary"], "give one model NAME"),
        (["summary", "vgg16", "--compare", "vgg11"], "give one model NAME"),
        (["summary", "vgg16", "--plot", "x.png"], "--plot goes with --compare"),
        (["summary", "--compare", "vgg11", "--plot", "/no/such/dir/x.png"], "no directory"),
        (["convert-weights", "/no/such/file.pth", "out.npz"], "no such file"),
        (["convert-weights", __file__, "/no/such/dir/out.npz"], "no directory"),
        (["convert-weights", __file__, "out.npz", "--model", "nosuchnet"], "unknown model"),
    ],
)
def test_cli_user_mistakes_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("minicnn: error: ")


def test_cli_error_has_no_traceback():
    r = subprocess.run(
        [sys.executable, "-m", "minicnn", "summary", "resnet18", "--input", "3x1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_cli_json(capsys):
    assert main(["summary", "resnet18", "--input", "3x32x32", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"] == 11_689_512 and d["depth"] == 18 and d["input_shape"] == [1, 3, 32, 32]


def test_cli_num_classes_and_table(capsys):
    assert main(["summary", "resnet20", "--num-classes", "7"]) == 0
    out = capsys.readouterr().out
    assert "(1, 7)" in out and "layer1.0.add" in out


def test_cli_compare_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "compare.png"
    argv = [
        "summary",
        "--compare",
        "resnet18",
        "googlenet",
        "vgg11",
        "--input",
        "3x64x64",
        "--plot",
        str(png),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in (
        "Model",
        "Params",
        "MACs (all ops)",
        "MACs (conv+linear)",
        "Depth",
        "Largest layer",
    ):
        assert column in header
    lines = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert set(lines) == {"resnet18", "googlenet", "vgg11"}
    assert "11.69M" in lines["resnet18"] and " 18 " in lines["resnet18"]
    assert " 22 " in lines["googlenet"] and "classifier.0 (Linear)" in lines["vgg11"]
    assert "training-only heads" in out  # googlenet's aux classifiers
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [png]  # no temporary file left behind


def test_cli_compare_json(capsys):
    argv = ["summary", "--compare", "resnet18", "resnet20", "--input", "3x32x32", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["resnet18", "resnet20"]
    assert rows[0]["depth"] == 18 and rows[1]["depth"] == 20


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y[:, :, 1::2, ::2] + y[..., 1::2, 1::2]


def test_receptive_field_through_strided_slices():
    rows = rows_by_name(summary(Strided(), (3, 8, 8)))
    assert rows["getitem"].start == (1.0, 0.0) and rows["getitem"].jump == (2, 2)
    # along W the two slices see [-1, 1] and [0, 2]: the union is 4 pixels centred on 0.5
    assert rows["add"].rf == (3, 4) and rows["add"].start == (1.0, 0.5)


def test_receptive_field_through_uneven_adaptive_pooling():
    # VGG-16 at 96x96: pool5 gives a 3x3 map (field 212, jump 32); the adaptive 7x7 pool repeats
    # pixels (bins of 1 or 2), and flattening its output still sees exactly the whole 3x3 map:
    # 212 + 2 * 32 = 276
    s = summary(build("vgg16"), (3, 96, 96))
    assert s.output_rf == (276, 276)


def test_cli_convert_weights(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src, dst = tmp_path / "conv.pth", tmp_path / "conv.npz"
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), src)
    assert main(["convert-weights", str(src), str(dst)]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(dst) as arrays:
        assert sorted(arrays.files) == ["bias", "weight"] and arrays["weight"].shape == (4, 3, 3, 3)
