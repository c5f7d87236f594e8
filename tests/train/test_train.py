"""Training: checkpoints (round trip, kill -9 mid-save), resume equivalence, and the
train/evaluate/predict CLI."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import functional as F
from minicnn import optim, train as T
from minicnn.train import checkpoint, loop
from minicnn.cli import main
from minicnn.data import builtin_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny copy of the built-in dataset (4 train and 2 val images per class)."""
    return builtin_dataset(4, 2, cache=str(tmp_path_factory.mktemp("cache")))


def tiny_config(data, out, **kw):
    settings = dict(
        data=data,
        out=str(out),
        epochs=2,
        batch_size=16,
        workers=0,
        progress=False,
        warmup_epochs=0.5,
    )
    settings.update(kw)
    return T.TrainConfig(**settings)


# ---- checkpoints ---------------------------------------------------------------------------------
def full_meta(**kw):
    """A training checkpoint's meta.json (what the schema asks for)."""
    meta = {
        "config": T.TrainConfig().to_json(),
        "classes": [str(i) for i in range(10)],
        "epoch": 3,
        "best_epoch": 0,
        "best_val_top1": -1.0,
        "image_size": 32,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    meta.update(kw)
    return meta


def trained_model_and_optimizer():
    model = T.build_model("resnet20", 10)
    opt = optim.SGD(optim.param_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
    sched = T.build_scheduler(T.TrainConfig(epochs=2), opt, steps_per_epoch=3)
    x = minicnn.randn(4, 3, 32, 32)
    y = minicnn.tensor(np.array([0, 1, 2, 3]))
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_checkpoint_round_trip(tmp_path):
    model, opt, sched = trained_model_and_optimizer()
    path = tmp_path / "ckpt.npz"
    meta = full_meta()
    T.save_checkpoint(path, model, meta, opt, sched)
    with np.load(path, allow_pickle=False) as z:  # a plain, pickle-free .npz
        assert "meta.json" in z.files and z["meta.json"].dtype == np.uint8
    saved, state, arrays = T.load_checkpoint(path)
    assert saved["epoch"] == 3 and saved["classes"] == meta["classes"]
    assert saved["rng"] == minicnn.get_rng_state()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(state[key], value)
    model2, opt2, sched2 = trained_model_and_optimizer()
    model2.load_state_dict(state)
    opt2.load_state_dict(checkpoint._join_arrays(saved["optimizer"], arrays))
    sched2.load_state_dict(saved["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr()
    for p, q in zip(model.parameters(), model2.parameters()):
        a, b = opt.state[id(p)]["momentum_buffer"], opt2.state[id(q)]["momentum_buffer"]
        np.testing.assert_array_equal(a, b)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(T.CheckpointError, match="no such file"):
        T.load_checkpoint(tmp_path / "missing.npz")
    bare = tmp_path / "weights.npz"
    minicnn.io.save_npz(bare, {"w": np.zeros(3)})
    with pytest.raises(T.CheckpointError, match="not a minicnn training checkpoint"):
        T.load_checkpoint(bare)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(T.CheckpointError):
        T.load_checkpoint(junk)


SAVER = textwrap.dedent("""
    import sys, numpy as np
    from minicnn import nn
    from minicnn.train import TrainConfig, save_checkpoint
    path = sys.argv[1]
    model = nn.Linear(2000, 2000)                   # 16 MB of weights: each save takes a while
    meta = {"config": TrainConfig().to_json(), "classes": ["a", "b"], "epoch": 0, "best_epoch": 0,
            "best_val_top1": -1.0, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    for version in range(1000000):
        model.weight._data[...] = version
        save_checkpoint(path, model, dict(meta, version=version))
        print(version, flush=True)
""")


def test_kill_9_during_a_save_leaves_a_loadable_checkpoint(tmp_path):
    path = str(tmp_path / "last.npz")
    for delay in (0.05, 0.13, 0.21):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER, path], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        first = proc.stdout.readline()  # one complete save exists
        assert first.strip().isdigit(), first
        time.sleep(delay)  # then kill it somewhere inside a later save
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        meta, state, _ = T.load_checkpoint(path, minicnn.nn.Linear(2000, 2000))
        assert np.all(state["weight"] == meta["version"])
    leftovers = [f for f in os.listdir(tmp_path) if f != "last.npz"]
    assert all(f.endswith(".tmp") for f in leftovers)  # only the killed save's temporary file


# ---- training and resuming -----------------------------------------------------------------------
def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_data, monkeypatch):
    straight = T.train(tiny_config(tiny_data, tmp_path / "straight"), log=lambda *a: None)
    assert straight["epochs"] == 2
    original = loop._run_epoch

    def stop_before_second(epoch, *args, **kwargs):  # as if killed after epoch 1's checkpoint
        if epoch == 1:
            raise KeyboardInterrupt
        return original(epoch, *args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", stop_before_second)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_config(tiny_data, tmp_path / "resumed"), log=lambda *a: None)
    monkeypatch.undo()
    assert len(T.read_metrics(tmp_path / "resumed" / "metrics.csv")) == 1
    T.train(
        T.TrainConfig(workers=0, progress=False),
        resume=str(tmp_path / "resumed"),
        log=lambda *a: None,
    )
    a = T.read_metrics(tmp_path / "straight" / "metrics.csv")
    b = T.read_metrics(tmp_path / "resumed" / "metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2]
    # Bit-identical in practice; the tolerance only forgives a multithreaded kernel that sums in
    # another
    # order. A wrong restore (optimizer buffers, schedule, RNG, data order) is off by far more.
    for key in ("train_loss", "train_top1", "val_loss", "val_top1", "lr"):
        np.testing.assert_allclose(
            [r[key] for r in b], [r[key] for r in a], rtol=1e-5, atol=1e-7, err_msg=key
        )
    _, state_a, _ = T.load_checkpoint(tmp_path / "straight" / "last.npz")
    _, state_b, _ = T.load_checkpoint(tmp_path / "resumed" / "last.npz")
    for key in state_a:
        np.testing.assert_allclose(state_b[key], state_a[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_the_run_folder(tmp_path, tiny_data):
    T.train(
        tiny_config(tiny_data, tmp_path / "run", epochs=1, optimizer="adamw", schedule="step"),
        log=lambda *a: None,
    )
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == [
        ".minicnn-run",
        "best.npz",
        "config.json",
        "curves.png",
        "last.npz",
        "metrics.csv",
    ]
    rows = T.read_metrics(run / "metrics.csv")
    assert list(rows[0]) == list(T.METRIC_FIELDS) and rows[0]["epoch"] == 1
    assert 0 <= rows[0]["val_top1"] <= rows[0]["val_top5"] <= 1
    assert Image.open(run / "curves.png").format == "PNG"
    assert json.loads((run / "config.json").read_text())["optimizer"] == "adamw"


def test_googlenet_aux_losses_are_used_in_training():
    model = T.build_model("googlenet", 10)
    out = model.train()(minicnn.randn(2, 3, 96, 96))
    assert hasattr(out, "aux_logits1")
    y = minicnn.tensor(np.array([1, 2]))
    cfg = T.TrainConfig()
    total = loop._loss(out, y, cfg).item()
    parts = [F.cross_entropy(z, y).item() for z in (out.logits, out.aux_logits2, out.aux_logits1)]
    assert total == pytest.approx(parts[0] + 0.3 * (parts[1] + parts[2]), rel=1e-5)


# ---- the command line ----------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("minicnn: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--epochs", "0"], "--epochs must be in [1, 100000], got 0"),
        (["--lr", "-0.1"], "--lr must be in (0, 10], got -0.1"),
        (["--batch-size", "0"], "--batch-size must be in [1, 65536], got 0"),
        (["--workers", "-1"], "--workers must be in [0, 256], got -1"),
        (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1), got 1.5"),
        (["--model", "resnet21"], "unknown model 'resnet21' (did you mean "),
        (["--data", "/no/such/folder"], "no such folder '/no/such/folder'"),
        (["--resume", "/no/such/run"], "no such run folder"),
        (["--resume", "x", "--model", "vgg11"], "drop --model"),
        (["--image-size", "4"], "--image-size must be in [8, 1024], got 4"),
        (["--image-size", "20000"], "--image-size must be in [8, 1024], got 20000"),
        (["--lr", "nan"], "--lr must be a finite number, got nan"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--momentum", "nan"], "--momentum must be a finite number, got nan"),
        (["--momentum", "1"], "--momentum must be in [0, 1), got 1.0"),
        (["--weight-decay", "inf"], "--weight-decay must be a finite number, got inf"),
        (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number, got nan"),
        (["--warmup-epochs", "-1"], "--warmup-epochs must be in [0, 100000], got -1.0"),
        (
            ["--epochs", "2", "--warmup-epochs", "2"],
            "--warmup-epochs (2.0) must be less than --epochs (2)",
        ),
        (["--seed", "-1"], "--seed must be in [0, 9223372036854775807], got -1"),
        (["--seed", str(2**64)], "--seed must be in [0, "),
        (
            ["--builtin-per-class", "0", "3"],
            "--builtin-per-class must be two integers in [1, 1000000]",
        ),
        (["--resume", "x", "--workers", "-3"], "--workers must be in [0, 256], got -3"),
    ],
)
def test_train_usage_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, "train", *argv)
    assert code == 2
    assert message in error_line(err)


def test_train_data_errors(capsys, tmp_path, tiny_data):
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "only_train")
    assert code == 2 and "has no val/ folder" in error_line(err)
    mixed = tmp_path / "mixed"
    for split, cls in (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "cow")):
        (mixed / split / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / split / cls / "x.png")
    code, _, err = run_cli(
        capsys, "train", "--data", mixed, "--out", tmp_path / "r", "--workers", 0
    )
    assert code == 2 and "only in train: dog; only in val: cow" in error_line(err)
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val" / "a").mkdir(parents=True)
    code, _, err = run_cli(capsys, "train", "--data", empty, "--out", tmp_path / "r2")
    assert code == 2 and "no image files" in error_line(err)


def test_out_folder_of_another_run_is_refused(capsys, tmp_path):
    (tmp_path / "last.npz").write_bytes(b"")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path)
    assert code == 2 and "already holds a run" in error_line(err)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("run") / "run"
    T.train(tiny_config(tiny_data, out, epochs=1), log=lambda *a: None)
    return out


def test_eval_and_predict(capsys, tiny_run, tiny_data):
    code, out, _ = run_cli(
        capsys,
        "eval",
        "--checkpoint",
        tiny_run / "best.npz",
        "--data",
        tiny_data,
        "--workers",
        0,
        "--device",
        "cpu",
    )
    assert code == 0 and "20 images" in out and "top-1" in out and "top-5" in out
    code, out, _ = run_cli(
        capsys,
        "eval",
        "--checkpoint",
        tiny_run / "last.npz",
        "--data",
        os.path.join(tiny_data, "val"),
        "--ten-crop",
        "--workers",
        0,
    )
    assert code == 0 and "(ten-crop)" in out
    image = os.path.join(
        tiny_data, "val", "star", sorted(os.listdir(os.path.join(tiny_data, "val", "star")))[0]
    )
    code, out, _ = run_cli(capsys, "predict", "--checkpoint", tiny_run / "best.npz", image)
    lines = out.splitlines()
    assert code == 0 and lines[0] == image and len(lines) == 6
    probs = [float(line.split("%")[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01


def test_eval_and_predict_usage_errors(capsys, tmp_path, tiny_run, tiny_data):
    ckpt = tiny_run / "best.npz"
    cases = [
        (
            ["eval", "--checkpoint", tmp_path / "none.npz", "--data", tiny_data],
            "no such checkpoint file",
        ),
        (["eval", "--checkpoint", ckpt, "--data", tmp_path / "nodata"], "no such folder"),
        (["predict", "--checkpoint", ckpt, tmp_path / "none.png"], "no such image file"),
    ]
    other = tmp_path / "other" / "val"
    for cls in ("x", "y"):
        (other / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other / cls / "1.png")
    cases.append(
        (["eval", "--checkpoint", ckpt, "--data", tmp_path / "other"], "are not the checkpoint's")
    )
    (tmp_path / "bad.png").write_bytes(b"not a png")
    cases.append((["predict", "--checkpoint", ckpt, tmp_path / "bad.png"], "cannot read"))
    bare = tmp_path / "weights.npz"
    minicnn.io.save_npz(bare, {"w": np.zeros(3)})
    cases.append(
        (
            ["predict", "--checkpoint", bare, tmp_path / "bad.png"],
            "not a minicnn training checkpoint",
        )
    )
    # a checkpoint whose weights belong to another architecture than its config says
    meta, state, arrays = T.load_checkpoint(ckpt)
    meta["config"]["model"] = "resnet32"
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    minicnn.io.save_npz(tmp_path / "mismatch.npz", arrays)
    cases.append(
        (
            ["eval", "--checkpoint", tmp_path / "mismatch.npz", "--data", tiny_data],
            "does not fit a resnet32",
        )
    )
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert message in error_line(err), (argv, err)


def test_minicnn_train_end_to_end(tmp_path):
    """The real console entry point on a tiny built-in dataset, with its own cache folder."""
    env = dict(os.environ, MINICNN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="2")
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "minicnn",
            "train",
            "--builtin-per-class",
            "3",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "generating the built-in dataset" in r.stdout
    assert (
        r.stdout.splitlines()[-1].startswith("done: val top-1 ")
        and str(out) in r.stdout.splitlines()[-1]
    )
    assert "Traceback" not in r.stderr
    assert os.listdir(tmp_path / "cache")[0].startswith("shapes32-")
    assert len(T.read_metrics(out / "metrics.csv")) == 1
    r = subprocess.run(
        [sys.executable, "-m", "minicnn", "train", "--resume", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0 and "nothing to do" in r.stdout


def with_dropout(name, num_classes, variant=None):
    """resnet20 with Dropout(0.5) before its classifier: a model that draws from the global RNG
    while it trains (resnet20 alone draws nothing, so an unrestored RNG would go unnoticed)."""
    from minicnn import models, nn

    model = models.get_model(name, num_classes=num_classes)
    model.fc = nn.Sequential(nn.Dropout(0.5), model.fc)
    return model


def test_resume_restores_the_global_rng_for_dropout(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(loop, "build_model", with_dropout)
    quiet = dict(log=lambda *a: None)
    T.train(tiny_config(tiny_data, tmp_path / "straight"), **quiet)
    original = loop._run_epoch

    def stop_before_second(epoch, *args, **kwargs):  # as if killed after epoch 1's checkpoint
        if epoch == 1:
            minicnn.manual_seed(12345)  # what a fresh process would have: not the run's state
            raise KeyboardInterrupt
        return original(epoch, *args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", stop_before_second)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny_config(tiny_data, tmp_path / "resumed"), **quiet)
    monkeypatch.setattr(loop, "_run_epoch", original)
    minicnn.manual_seed(777)
    T.train(T.TrainConfig(workers=0, progress=False), resume=str(tmp_path / "resumed"), **quiet)
    model = with_dropout("resnet20", 10)
    _, state_a, _ = T.load_checkpoint(tmp_path / "straight" / "last.npz", model)
    _, state_b, _ = T.load_checkpoint(tmp_path / "resumed" / "last.npz", model)
    for key in state_a:  # the same dropout masks in epoch 2: the same weights, exactly
        np.testing.assert_array_equal(state_b[key], state_a[key], err_msg=key)
