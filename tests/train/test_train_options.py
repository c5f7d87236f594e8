"""train's options from issue 15: --variant, --weights/--freeze (new head), --val-split,
--resume RUN --epochs N, resolved values in config.json, percent metrics and the lr curve."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.data import builtin_dataset
from minicnn.data.shapes import render
from minicnn.train import load_checkpoint, read_metrics

QUICK = [
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--no-progress",
    "--warmup-epochs",
    "0.5",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(3, 2, cache=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("runs") / "plain"
    assert main(["train", "--data", data, "--variant", "plain", "--out", str(out)] + QUICK) == 0
    return out


def shapes_folder(root, names=("circle", "ring", "star"), per_class=4):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(render(name, rng, 32)).save(root / name / f"{i}.png")
    return root


def test_variant_and_resolved_values_are_recorded(plain_run):
    config = json.loads((plain_run / "config.json").read_text())
    assert config["variant"] == "plain" and config["device"] == "cpu"
    assert config["lr"] == pytest.approx(0.1 * 16 / 64) and config["image_size"] == 32
    meta, state, _ = load_checkpoint(plain_run / "best.npz")
    assert not any("downsample" in k for k in state)


def test_metrics_csv_in_percent_and_curves_with_lr(plain_run):
    meta = load_checkpoint(plain_run / "last.npz")[0]
    with open(plain_run / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert {"train_top1_pct", "val_top1_pct", "val_top5_pct", "lr"} <= set(row)
    assert float(row["val_top1_pct"]) == pytest.approx(100 * meta["best_val_top1"], rel=1e-5)
    assert read_metrics(plain_run / "metrics.csv")[0]["val_top1"] == pytest.approx(
        meta["best_val_top1"], rel=1e-5
    )
    with Image.open(plain_run / "curves.png") as im:
        assert im.size[0] > 1.2 * 1000  # three panels: loss, accuracy, learning rate


def test_eval_restores_the_variant(plain_run, data, capsys):
    assert (
        main(
            ["eval", "--checkpoint", str(plain_run / "best.npz"), "--data", data, "--workers", "0"]
        )
        == 0
    )
    assert "top-1" in capsys.readouterr().out


def test_weights_with_a_new_head_freeze_and_val_split(plain_run, tmp_path, capsys):
    folder = shapes_folder(tmp_path / "photos")
    out = tmp_path / "tuned"
    argv = [
        "train",
        "--data",
        str(folder),
        "--val-split",
        "0.25",
        "--variant",
        "plain",
        "--weights",
        str(plain_run / "best.npz"),
        "--freeze",
        "conv1",
        "layer1",
        "--out",
        str(out),
    ] + QUICK
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "with a new head (fc: 3 classes)" in text and "frozen: " in text
    assert "9 train / 3 val images, 3 classes" in text
    _, start, _ = load_checkpoint(plain_run / "best.npz")
    meta, tuned, _ = load_checkpoint(out / "last.npz")
    assert meta["classes"] == ["circle", "ring", "star"]
    np.testing.assert_array_equal(tuned["conv1.weight"], start["conv1.weight"])  # frozen
    np.testing.assert_array_equal(tuned["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    assert not np.array_equal(tuned["layer3.0.conv1.weight"], start["layer3.0.conv1.weight"])


def test_resume_extends_a_finished_run(plain_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(plain_run, run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "extending the run from 1 to 2 epochs" in out and "after 2 epochs" in out
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == [1, 2]
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    assert "--epochs 1: the run in" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--variant", "paper"], "--variant: resnet20 has no variant 'paper'"),
        (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
        (["--val-split", "0.2"], "--val-split splits a folder of class folders"),
        (["--weights", "/no/such.npz"], "no such weights file"),
        (["--freeze", "layer9"], "no parameter name starts with 'layer9'"),
    ],
)
def test_train_option_mistakes_exit_2(data, tmp_path, capsys, extra, message):
    argv = ["train", "--data", data, "--out", str(tmp_path / "r")] + QUICK + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_single_class_folder_needs_val_split(tmp_path, capsys):
    folder = shapes_folder(tmp_path / "photos", per_class=2)
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "r")] + QUICK) == 2
    assert "add --val-split 0.1" in capsys.readouterr().err


def test_numeric_flags_set_their_setting_and_name_its_default():
    from minicnn.cli import build_parser
    from minicnn.commands.train import _NUMBERS
    from minicnn.train import TrainConfig

    parser, defaults = build_parser(), TrainConfig()
    train = parser._subparsers._group_actions[0].choices["train"]
    actions = {a.option_strings[0]: a for a in train._actions if a.option_strings}
    for flag, type_, _ in _NUMBERS:
        setting = flag[2:].replace("-", "_")
        action = actions[flag]
        assert action.dest == setting and action.type is type_
        assert action.help.endswith(f"default {getattr(defaults, setting)})") or (
            action.help == f"default {getattr(defaults, setting)}"
        )
    args = parser.parse_args(["train", "--epochs", "3", "--weight-decay", "0.5"])
    assert (args.epochs, args.weight_decay, args.seed) == (3, 0.5, None)
