"""minicnn.viz against hand computations, and ``minicnn visualize`` / ``minicnn eval``'s figures."""

import csv
import os

import numpy as np
import pytest

import minicnn
from minicnn import models, nn, viz
from minicnn.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


class ConvGap(nn.Module):
    """conv 3x3 (pad 1) -> ReLU -> global average pool -> linear: Grad-CAM has a closed form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def batch(n=2, size=6, seed=0):
    data = np.random.default_rng(seed).standard_normal((n, 3, size, size))
    return minicnn.tensor(data.astype(np.float32))


# ---- library ------------------------------------------------------------------------------------
def test_filter_grid_scales_each_filter_and_lays_them_out():
    w = np.arange(5 * 3 * 2 * 2, dtype=np.float64).reshape(5, 3, 2, 2)
    w[1] *= -3
    grid = viz.filter_grid(w, cols=3)
    assert grid.shape == (2 * 3 - 1, 3 * 3 - 1, 3)  # 2 rows x 3 cols of 2x2, 1px gaps
    for k in range(5):
        r, c = divmod(k, 3)
        tile = grid[3 * r : 3 * r + 2, 3 * c : 3 * c + 2]
        assert tile.min() == 0 and tile.max() == 1  # every filter spans [0, 1]
        np.testing.assert_allclose(tile, (w[k].transpose(1, 2, 0) - w[k].min()) / np.ptp(w[k]))
    assert np.all(grid[2, :] == 1) and np.all(grid[3:, 6:] == 1)  # gaps and the empty slot
    gray = viz.filter_grid(np.random.default_rng(0).standard_normal((4, 2, 3, 3)))
    assert gray.shape == (7, 7)  # mean over 2 channels, gray


def test_saliency_of_a_linear_model_is_its_weight_row():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = batch(2, 4)
    maps, target = viz.saliency(model, x, target=[1, 4])
    W = model[1].weight.numpy().reshape(5, 3, 4, 4)
    assert target.tolist() == [1, 4]
    np.testing.assert_allclose(maps[0], np.abs(W[1]).max(axis=0), rtol=1e-6)
    np.testing.assert_allclose(maps[1], np.abs(W[4]).max(axis=0), rtol=1e-6)
    _, predicted = viz.saliency(model, x)
    assert predicted.tolist() == model(x).numpy().argmax(1).tolist()
    with pytest.raises(ValueError, match="target class must be in"):
        viz.saliency(model, x, target=5)


def test_grad_cam_matches_its_closed_form():
    model = ConvGap().eval()
    x = batch(2, 6)
    cams, target, layer = viz.grad_cam(model, x, target=2, layer="relu")
    A = np.maximum(model.conv(x).numpy().astype(np.float64), 0)  # (N, 4, 6, 6)
    alpha = model.fc.weight.numpy()[2] / 36  # d y_2 / d A_k, averaged
    want = np.maximum(np.einsum("k,nkhw->nhw", alpha, A), 0)
    want /= want.max(axis=(1, 2), keepdims=True)
    assert layer == "relu" and target.tolist() == [2, 2] and cams.shape == (2, 6, 6)
    np.testing.assert_allclose(cams, want, atol=1e-5)
    assert viz.grad_cam(model, x)[2] == "relu"  # last map larger than 1x1


def test_feature_maps_are_the_layer_outputs():
    model = ConvGap().eval()
    x = batch(2, 6)
    maps = viz.feature_maps(model, x, ["conv", "relu"], max_channels=3)
    np.testing.assert_allclose(maps["conv"], model.conv(x).numpy()[0, :3])
    assert maps["relu"].min() >= 0
    with pytest.raises(KeyError, match="no layer 'nope'"):
        viz.feature_maps(model, x, ["nope"])


def test_layer_statistics_are_the_gradients_of_the_loss():
    model = ConvGap()
    x, y = batch(4, 6), np.array([0, 1, 2, 1])
    stats = viz.layer_statistics(model, x, y)
    assert [s.name for s in stats] == ["conv", "fc"] and model.training
    model.zero_grad()
    minicnn.functional.cross_entropy(model(x), minicnn.tensor(y)).backward()
    assert stats[0].weight_grad_norm == pytest.approx(
        np.linalg.norm(model.conv.weight.grad.numpy()), rel=1e-5
    )
    assert stats[1].act_mean == pytest.approx(float(model(x).numpy().mean()), rel=1e-5)


def test_plain_network_gradients_vary_far_more_across_depth_than_residual():
    x = batch(8, 16)
    y = np.arange(8) % 10
    ratios = {}
    for shortcut in ("A", "plain"):
        minicnn.manual_seed(0)
        stats = viz.layer_statistics(models.resnet56(shortcut=shortcut), x, y)
        convs = [s for s in stats if s.type == "Conv2d"]
        ratios[shortcut] = convs[0].output_grad_norm / convs[-1].output_grad_norm
    assert ratios["plain"] > 10 * ratios["A"]


# ---- command line -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind,extra,printed",
    [
        ("filters", [], "conv1: 16 filters of 3x3x3"),
        ("features", ["--layer", "layer1.0.conv1"], "layer1.0.conv1: 16 of its channels, 16x16"),
        ("saliency", ["--target", "3"], "map of class 3"),
        ("gradcam", ["--batch", "2"], "Grad-CAM at layer layer3.2.relu"),
        ("stats", ["--batch", "4", "--compare", "resnet20:plain"], "first conv / last conv"),
    ],
)
def test_visualize_writes_a_png(tmp_path, capsys, kind, extra, printed):
    out = tmp_path / f"{kind}.png"
    argv = ["visualize", kind, "--model", "resnet20", "--image-size", "16", "--out", str(out)]
    assert main(argv + extra) == 0
    text = capsys.readouterr().out
    assert printed in text and f"wrote {out}" in text
    assert out.read_bytes()[:8] == PNG and os.listdir(tmp_path) == [out.name]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["filters"], "give one of --checkpoint FILE or --model"),
        (["filters", "--model", "nosuchnet"], "--model: unknown model 'nosuchnet'"),
        (["filters", "--model", "resnet20:paper"], "--model: resnet20 has no variant 'paper'"),
        (["features", "--model", "resnet20", "--layer", "nope"], "--layer: no layer 'nope'"),
        (["saliency", "--model", "resnet20", "--target", "99"], "--target: '99'"),
        (["filters", "--model", "resnet20", "--compare", "resnet20"], "--compare goes with stats"),
        (["stats", "--model", "resnet20", "--compare", "nope"], "--compare: unknown model 'nope'"),
        (
            ["gradcam", "--model", "resnet20", "--layer", "fc"],
            "layer 'fc' produced no (N, C, H, W)",
        ),
        (["filters", "--model", "resnet20", "--out", "x.jpg"], "--out writes a PNG"),
        (["filters", "--model", "resnet20", "--out", "/no/such/dir/x.png"], "--out: cannot write"),
        (["filters", "--model", "alexnet", "--image-size", "32"], "--image-size 32 is below"),
        (["filters", "--model", "resnet20", "--batch", "0"], "--batch must be positive"),
        (
            ["filters", "--model", "resnet20", "--image", "/no/such.png"],
            "--image: no such image file",
        ),
        (
            ["filters", "--model", "resnet20", "--weights", "/no/such.npz"],
            "--weights: no such file",
        ),
        (["filters", "--checkpoint", "/no/such.npz"], "--checkpoint: no such file"),
    ],
)
def test_visualize_user_mistakes_exit_2(capsys, argv, message):
    assert main(["visualize"] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("minicnn: error: visualize: ") and message in err and err.count("\n") == 1


def test_visualize_loads_weights_and_reads_images(tmp_path, capsys):
    from PIL import Image

    minicnn.manual_seed(3)
    model = models.resnet20(num_classes=4)
    minicnn.io.save_npz(tmp_path / "w.npz", model.state_dict())
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(tmp_path / "a.png")
    argv = [
        "visualize",
        "filters",
        "--model",
        "resnet20",
        "--num-classes",
        "4",
        "--weights",
        str(tmp_path / "w.npz"),
        "--image",
        str(tmp_path / "a.png"),
        "--out",
        str(tmp_path / "f.png"),
    ]
    assert main(argv) == 0
    assert "conv1: 16 filters" in capsys.readouterr().out
    # 4-class weights do not fit the default 10-class model
    assert (
        main(["visualize", "filters", "--model", "resnet20", "--weights", str(tmp_path / "w.npz")])
        == 2
    )
    assert "--weights: " in capsys.readouterr().err


# ---- eval's confusion matrix --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from minicnn.data import builtin_dataset

    data = builtin_dataset(3, 2, cache=str(tmp_path_factory.mktemp("cache")))
    out = tmp_path_factory.mktemp("run") / "run"
    assert (
        main(
            [
                "train",
                "--data",
                data,
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--workers",
                "0",
                "--out",
                str(out),
                "--no-progress",
                "--warmup-epochs",
                "0.5",
            ]
        )
        == 0
    )
    return out / "best.npz", data


def test_eval_writes_confusion_matrix_and_per_class_accuracy(tiny_checkpoint, tmp_path, capsys):
    ckpt, data = tiny_checkpoint
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(ckpt),
                "--data",
                data,
                "--workers",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    top1 = float(out.split("top-1 ")[1].split("%")[0])
    with open(tmp_path / "confusion.csv") as f:
        rows = list(csv.reader(f))
    classes = rows[0][1:]
    m = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert len(classes) == 10 and m.shape == (10, 10) and m.sum() == 20 and (m.sum(1) == 2).all()
    assert 100 * np.trace(m) / m.sum() == pytest.approx(top1, abs=0.01)
    with open(tmp_path / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [int(r["correct"]) for r in per_class] == np.diag(m).tolist()
    assert "per-class accuracy:" in out and f"  {classes[0]}" in out
    assert (tmp_path / "confusion.png").read_bytes()[:8] == PNG
    assert main(["eval", "--checkpoint", str(ckpt), "--data", data, "--out", "/no/such/dir"]) == 2
    assert "--out: no such folder" in capsys.readouterr().err


def test_predict_on_a_folder_says_so(tiny_checkpoint, capsys):
    ckpt, data = tiny_checkpoint
    assert main(["predict", "--checkpoint", str(ckpt), data]) == 2
    err = capsys.readouterr().err
    assert f"predict: {data!r} is a folder" in err and "minicnn eval --data" in err


def test_visualize_from_a_checkpoint_names_its_classes(tiny_checkpoint, tmp_path, capsys):
    ckpt, _ = tiny_checkpoint
    out = tmp_path / "g.png"
    assert (
        main(
            [
                "visualize",
                "gradcam",
                "--checkpoint",
                str(ckpt),
                "--target",
                "star",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "map of class star" in capsys.readouterr().out and out.exists()


def test_visualize_runs_our_kernels_on_emu(tmp_path, capsys):
    for kind in ("gradcam", "stats"):
        out = tmp_path / f"{kind}.png"
        assert (
            main(
                [
                    "visualize",
                    kind,
                    "--model",
                    "resnet20",
                    "--device",
                    "emu",
                    "--image-size",
                    "8",
                    "--batch",
                    "2",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert out.read_bytes()[:8] == PNG
