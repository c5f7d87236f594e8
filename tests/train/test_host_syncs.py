"""No hidden host round-trips: a training step on a kernel device reads nothing back to the host.

The counting hook (minicnn/backends/_transfers.py) sees every copy of an "emu" array's values to
the host (Tensor.item/float/int/bool/numpy/tolist/repr, np.asarray, backend.to_numpy, .to("cpu"))
and every copy to the device. On "cuda" each read is a sync: the GPU drains while Python waits. A
training step (conv, batch norm, dropout, cross-entropy, backward, SGD with momentum or Adam) must
make no read; its uploads are the batch and at most one pointer table per parameter group (the
fused optimizer update; none when that table is on the device already); the training loop reads
its metrics once per logging interval (plus one read of the deferred target checks of that
interval). The hook counts on "cuda" too: where a GPU is there, the same tests run on it."""

import math
import types

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
import minicnn.nn as nn
from minicnn import optim
from minicnn.backends import get_backend
from minicnn.backends._transfers import count_transfers
from minicnn.train.loop import train_one_epoch

from kernel_devices import KERNEL_DEVICES

CONFIG = types.SimpleNamespace(label_smoothing=0.0, amp=None)


class _NoSchedule:
    def step(self):
        pass


def small_model(device):
    minicnn.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 4 * 4, 3),
    ).to(device)


def batches(n=5, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((batch, 3, 8, 8)).astype(np.float32), rng.integers(0, 3, batch))
        for _ in range(n)
    ]


def optimizers(model):
    return {
        "sgd": optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4),
        "adam": optim.Adam(model.parameters(), lr=1e-3),
    }


def assert_no_hidden_transfers(counter, groups):
    """No read; uploads: only the optimizer's pointer tables, at most one per group (none when
    the table is on the device already)."""
    assert counter.reads == 0, f"device->host reads in a training step:\n{counter.describe()}"
    tables = counter.uploads_of("pointer table")
    assert counter.uploads == tables <= groups, (
        f"host->device copies beyond one pointer table per group:\n{counter.describe()}"
    )


def train_step(model, opt, x, y):
    out = model(x)
    loss = F.cross_entropy(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_training_step_reads_nothing_back(device, name):
    model = small_model(device)
    opt = optimizers(model)[name]
    for images, labels in batches(3):
        x, y = minicnn.tensor(images, device=device), minicnn.tensor(labels, device=device)
        with count_transfers() as c:
            loss = train_step(model, opt, x, y)
        assert_no_hidden_transfers(c, groups=1)
        assert math.isfinite(loss.item())  # the read happens here, outside the step


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_gradients_zeroed_in_place_make_a_step_with_no_transfer_at_all(device):
    model = small_model(device)
    opt = optimizers(model)["sgd"]
    ((images, labels),) = batches(1)
    x, y = minicnn.tensor(images, device=device), minicnn.tensor(labels, device=device)
    counts = []
    for _ in range(3):
        with count_transfers() as c:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=False)  # the gradients keep their arrays
            loss.backward()
            opt.step()
        counts.append((c.reads, c.uploads))
    assert counts[1:] == [(0, 0), (0, 0)]  # the pointer table is on the device already


def test_the_check_fails_when_the_dropout_mask_comes_from_the_host(monkeypatch):
    """The negative control: a mask drawn by NumPy and copied over is caught."""
    backend = get_backend("emu")
    cpu = get_backend("cpu")
    monkeypatch.setattr(
        type(backend),
        "dropout_mask",
        lambda self, shape, p, dtype: self.from_numpy(cpu.dropout_mask(shape, p, dtype)),
    )
    model = small_model("emu")
    opt = optimizers(model)["sgd"]
    ((images, labels),) = batches(1)
    x, y = minicnn.tensor(images, device="emu"), minicnn.tensor(labels, device="emu")
    with count_transfers() as c:
        train_step(model, opt, x, y)
    with pytest.raises(AssertionError, match="host->device copies beyond"):
        assert_no_hidden_transfers(c, groups=1)


def test_the_check_fails_on_a_read_inside_the_step():
    model = small_model("emu")
    opt = optimizers(model)["adam"]
    ((images, labels),) = batches(1)
    x, y = minicnn.tensor(images, device="emu"), minicnn.tensor(labels, device="emu")
    with count_transfers() as c:
        loss = train_step(model, opt, x, y)
        float(loss)  # what the loop did per step before
    with pytest.raises(AssertionError, match="device->host reads in a training step"):
        assert_no_hidden_transfers(c, groups=1)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("name", ["sgd", "adam"])
@pytest.mark.parametrize("steps,interval,reads", [(5, 2, 3), (4, 50, 1), (6, 3, 2)])
def test_the_loop_reads_its_metrics_once_per_interval(device, name, steps, interval, reads):
    model = small_model(device)
    opt = optimizers(model)[name]
    data = batches(steps)
    with count_transfers() as c:
        train_one_epoch(model, data, opt, _NoSchedule(), CONFIG, device, log_interval=interval)
    assert c.reads_of("array") == reads, c.describe()  # the metrics
    assert c.reads_of("deferred checks") == reads, c.describe()  # the targets, at the same sync
    assert c.reads == 2 * reads, c.describe()
    tables = c.uploads_of("pointer table")
    assert c.uploads == 2 * steps + tables and tables <= steps, c.describe()  # images, labels


def _per_step_host_sums(device):
    """What the loop did before: each step's loss and top-1 read at once, summed on the host."""
    model = small_model(device)
    opt = optim.SGD(model.parameters(), lr=0.05)
    minicnn.manual_seed(1)
    total = hits = seen = 0
    for images, labels in batches(4):
        out = model(minicnn.tensor(images, device=device))
        loss = F.cross_entropy(out, minicnn.tensor(labels, device=device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.item()) * len(labels)
        hits += int((out.numpy().argmax(1) == labels).sum())
        seen += len(labels)
    return total / seen, hits / seen, seen


@pytest.mark.parametrize("device", ["cpu", "emu"])
def test_the_loop_metrics_equal_a_per_step_host_sum(device):
    model = small_model(device)
    opt = optim.SGD(model.parameters(), lr=0.05)
    minicnn.manual_seed(1)
    loss, top1, seen, _ = train_one_epoch(
        model, batches(4), opt, _NoSchedule(), CONFIG, device, log_interval=3
    )
    assert (loss, top1, seen) == _per_step_host_sums(device)  # the same float64 sums, exactly


def test_a_diverged_loss_is_caught_at_the_interval_read():
    model = small_model("emu")
    opt = optim.SGD(model.parameters(), lr=0.1)
    data = batches(3)
    data[1] = (np.full_like(data[1][0], np.nan), data[1][1])
    with pytest.raises(FloatingPointError, match="the training loss is nan"):
        train_one_epoch(model, data, opt, _NoSchedule(), CONFIG, "emu", log_interval=2)


# ---- every path to the host is counted ---------------------------------------------------------
@pytest.mark.parametrize(
    "read",
    [
        lambda t: t.item(),
        float,
        int,
        bool,
        lambda t: t.numpy(),
        lambda t: t.tolist(),
        repr,
        np.asarray,
        lambda t: t.to("cpu"),
        lambda t: get_backend("emu").to_numpy(t._data),
    ],
    ids=["item", "float", "int", "bool", "numpy", "tolist", "repr", "asarray", "to_cpu", "backend"],
)
def test_every_read_path_is_counted(read):
    t = minicnn.tensor([1.5], device="emu")
    with count_transfers() as c:
        read(t)
    assert c.reads >= 1 and c.uploads == 0, c.describe()


def test_uploads_are_counted():
    with count_transfers() as c:
        t = minicnn.tensor([1.0, 2.0], device="emu")
        minicnn.tensor([1.0]).to("emu")
        t.sum()  # device work: nothing copied
    assert (c.reads, c.uploads) == (0, 2), c.describe()


def test_cpu_is_not_a_device():
    with count_transfers() as c:
        float(minicnn.tensor([1.0]))
    assert c.events == []


def test_skipped_steps_are_left_out_of_the_means():
    """With a GradScaler (--amp fp16) a step whose loss overflowed is skipped, not a divergence."""
    from minicnn.train._epoch_metrics import EpochMetrics

    metrics = EpochMetrics("emu")
    logits = minicnn.tensor([[1.0, 0.0], [0.0, 1.0]], device="emu")
    labels = minicnn.tensor([0, 0], device="emu")
    for value in (2.0, float("inf"), 4.0):
        loss = minicnn.tensor(value, device="emu")
        metrics.add(loss, logits, labels, skip_nonfinite=True)
    assert metrics.read() == (3.0, 0.5) and metrics.images == 4
    metrics.add(minicnn.tensor(float("nan"), device="emu"), logits, labels)
    with pytest.raises(FloatingPointError, match="the training loss is nan"):
        metrics.read()
