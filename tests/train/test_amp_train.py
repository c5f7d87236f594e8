"""Mixed-precision training: ``--amp bf16`` learns as float32 does, ``--amp fp16`` resumes
exactly with its GradScaler, float16 overflow skips steps and says so, bad ``--amp`` settings are
one line."""

import time

import numpy as np
import pytest

import minicnn
from minicnn import nn, optim
from minicnn import train as T
from minicnn.amp import GradScaler
from minicnn.cli import main
from minicnn.data import builtin_dataset
from minicnn.data import transforms as Tr
from minicnn.train import checkpoint, loop


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return builtin_dataset(4, 2, cache=str(tmp_path_factory.mktemp("cache")))


def _config(data, out, **kw):
    settings = dict(data=data, out=str(out), epochs=2, batch_size=16, workers=0, progress=False)
    return T.TrainConfig(**dict(settings, **kw))


def _arrays(root, split):
    """The built-in images of a split as (N, 3, 32, 32) float32, normalised, and their labels."""
    ds = T.open_folder(f"{root}/{split}")
    ds.transform = Tr.Compose([Tr.ToFloatCHW(), Tr.Normalize(Tr.IMAGENET_MEAN, Tr.IMAGENET_STD)])
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return np.stack(xs).astype(np.float32), np.array(ys)


def _batches(x, y, size, seed=None):
    order = np.arange(len(x)) if seed is None else np.random.default_rng(seed).permutation(len(x))
    return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size)]


def _small_cnn(width=16):
    def block(i, o):
        return [
            nn.Conv2d(i, o, 3, padding=1, bias=False),
            nn.BatchNorm2d(o),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, width),
        *block(width, 2 * width),
        *block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, 10),
    )


def _train_and_score(amp, train, val, epochs):
    minicnn.manual_seed(0)
    model = _small_cnn()
    config = T.TrainConfig(amp=amp)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(_batches(*train, 32)))
    for epoch in range(epochs):
        loop.train_one_epoch(model, _batches(*train, 32, epoch), opt, sched, config, "cpu")
    with loop.amp_context(config, "cpu"):
        return loop.evaluate(model, _batches(*val, 100), "cpu")["top1"]


def test_bf16_training_is_within_one_point_of_float32(tmp_path_factory):
    """The same small CNN, initialisation and batches, 4 epochs over 1,500 built-in images (about
    12 s on 2 quiet cores): bf16 autocast ends within 1 point of float32 on the 750 val images.

    Measured with initialisation seeds 0, 1, 2: float32 33.1/35.6/32.0 %, bf16 33.2/35.2/31.6 %
    (2,000 images: 39.9/38.7/40.1 against 39.4/39.1/40.1). With Adam at 3e-3 the runs are more
    chaotic and the gap reached 1.6 points for one seed: a short run compares trajectories, so it
    is kept in the calm regime where float32's own spread is small.
    """
    root = builtin_dataset(150, 75, cache=str(tmp_path_factory.mktemp("cache")))
    train, val = _arrays(root, "train"), _arrays(root, "val")
    fp32 = _train_and_score(None, train, val, epochs=4)
    bf16 = _train_and_score("bf16", train, val, epochs=4)
    assert fp32 > 0.25, f"float32 did not learn ({fp32:.3f}); the comparison would say nothing"
    assert abs(bf16 - fp32) <= 0.01, f"bf16 {bf16:.3f} vs float32 {fp32:.3f}"


def test_fp16_resume_is_exact_and_keeps_the_scaler(tmp_path, tiny_data, monkeypatch):
    """A scaler that grows after 3 finite steps (2 per epoch here): the scale doubles in epoch 2
    only if the resumed run continues from the checkpoint's growth tracker and scale."""

    def scaler(config, device):
        return GradScaler(device, init_scale=1024.0, growth_interval=3)

    monkeypatch.setattr(loop, "make_scaler", scaler)
    straight = T.train(_config(tiny_data, tmp_path / "straight", amp="fp16"), log=lambda *a: None)
    assert straight["epochs"] == 2
    original = loop._run_epoch

    def stop_before_second(epoch, run):  # as if killed after epoch 1's checkpoint
        if epoch == 1:
            raise KeyboardInterrupt
        return original(epoch, run)

    monkeypatch.setattr(loop, "_run_epoch", stop_before_second)
    with pytest.raises(KeyboardInterrupt):
        T.train(_config(tiny_data, tmp_path / "resumed", amp="fp16"), log=lambda *a: None)
    monkeypatch.setattr(loop, "_run_epoch", original)
    T.train(T.TrainConfig(workers=0, progress=False), resume=str(tmp_path / "resumed"), log=print)
    a = T.read_metrics(tmp_path / "straight" / "metrics.csv")
    b = T.read_metrics(tmp_path / "resumed" / "metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2]
    for key in ("train_loss", "val_loss", "val_top1", "lr", "skipped_steps", "loss_scale"):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-5, err_msg=key)
    assert [r["loss_scale"] for r in a] == [1024.0, 2048.0]
    meta_a = checkpoint.read_meta(tmp_path / "straight" / "last.npz")
    meta_b = checkpoint.read_meta(tmp_path / "resumed" / "last.npz")
    assert meta_a["scaler"] == meta_b["scaler"] and meta_a["scaler"]["_growth_tracker"] == 1
    _, state_a, _ = T.load_checkpoint(tmp_path / "straight" / "last.npz")
    _, state_b, _ = T.load_checkpoint(tmp_path / "resumed" / "last.npz")
    for key in state_a:
        np.testing.assert_allclose(state_b[key], state_a[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_metrics_csv_records_skipped_steps_and_the_scale(tmp_path, tiny_data):
    T.train(_config(tiny_data, tmp_path / "run", epochs=1, amp="bf16"), log=lambda *a: None)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",skipped_steps,loss_scale")
    (row,) = T.read_metrics(tmp_path / "run" / "metrics.csv")
    assert row["skipped_steps"] == 0 and row["loss_scale"] == 1.0  # bf16: no scaling


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf in log_softmax
def test_fp16_overflow_skips_the_steps_and_the_log_says_so():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    model[1].weight.data = minicnn.ones(10, 48) * 2000.0  # logits beyond float16's 65504
    before = model[1].weight.numpy().copy()
    batches = [(np.ones((4, 3, 4, 4), np.float32), np.arange(4)) for _ in range(3)]
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, 100)
    scaler = GradScaler("cpu")
    loop.train_one_epoch(
        model, batches, opt, sched, T.TrainConfig(amp="fp16"), "cpu", scaler=scaler
    )
    assert scaler.steps_skipped == 3 and scaler.get_scale() == 2.0**13
    np.testing.assert_array_equal(model[1].weight.numpy(), before)
    row = {"epoch": 1, "train_loss": 0.0, "train_top1": 0.0, "val_loss": 1.0, "val_top1": 0.1,
           "val_top5": 0.5, "lr": 0.1, "images_per_s": 1.0, "seconds": 1.0, "skipped_steps": 3,
           "loss_scale": 8192.0}  # fmt: skip
    assert "scale 8192, 3 step(s) skipped (inf/NaN)" in loop._epoch_line(row, 1)


def test_amp_usage_errors(capsys, tiny_data):
    with pytest.raises(T.ConfigError, match="amp must be fp16 or bf16, got 'fp8'"):
        T.train(T.TrainConfig(amp="fp8", workers=0), log=lambda *a: None)
    with pytest.raises(SystemExit) as e:  # argparse's own choice check
        main(["train", "--amp", "fp32"])
    assert e.value.code == 2 and "invalid choice: 'fp32'" in capsys.readouterr().err
    _need_emu_without("bfloat16")
    started = time.perf_counter()
    code = main(["train", "--data", tiny_data, "--device", "emu", "--amp", "bf16"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "--amp bf16: device 'emu' has no bfloat16 kernels" in lines[0]
    assert time.perf_counter() - started < 5  # said at start, before any training


def _need_emu_without(dtype):
    """The emu check runs while the emulator lacks the dtype's kernels (issue 13's kernel half
    adds them; then this message can no longer happen on emu)."""
    backend = minicnn.backends.get_backend("emu")
    try:
        backend.relu_forward(np.zeros(4, minicnn.dtypes.as_dtype(dtype)))
    except TypeError:
        return
    pytest.skip(f"emu has {dtype} kernels now: no device here lacks them")


def test_bf16_before_sm_80_is_refused_at_start(monkeypatch):
    """A Turing GPU (sm_75) has float16 tensor cores but no bfloat16 ones."""
    from minicnn.train import amp

    class Turing:
        compute_capability = "75"

    class FakeCuda:
        class xp:
            class cuda:
                Device = Turing

        def from_numpy(self, a):
            return a

        def relu_forward(self, x):
            return x

    monkeypatch.setattr(amp, "get_backend", lambda device: FakeCuda())
    with pytest.raises(T.ConfigError, match=r"--amp bf16: this GPU \(sm_75\) has no bfloat16"):
        amp.check_amp_device("bf16", "cuda")
    amp.check_amp_device("fp16", "cuda")  # float16 tensor cores since sm_70
