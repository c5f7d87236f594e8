"""Run folders and the per-epoch commit point: a kill at every write boundary leaves files that
agree (after the resume that repairs them), --out never clobbers a user's files, path problems and
full or read-only disks are one line and exit 2."""

import errno
import os

import numpy as np
import pytest

from minicnn import io as io_module
from minicnn import train as T
from minicnn.data import builtin_dataset
from minicnn.train import commit, loop

from cli_helpers import one_line, run_main

VAL_TOP1 = [0.5, 0.9, 0.7, 0.95]  # best at epoch 2, not at 3, again at the last epoch (4)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return builtin_dataset(2, 1, cache=str(tmp_path_factory.mktemp("cache")))


def config(data, out, **kw):
    settings = dict(
        data=data,
        out=str(out),
        epochs=len(VAL_TOP1),
        batch_size=16,
        workers=0,
        progress=False,
        warmup_epochs=0.5,
    )
    settings.update(kw)
    return T.TrainConfig(**settings)


def fake_epoch(epoch, run):
    """An epoch without the arithmetic: every weight becomes the epoch number, the row is known."""
    for p in run.model.parameters():
        p._data[...] = epoch + 1
    run.scheduler.step()
    return fake_epoch_row(epoch)


def fake_epoch_row(epoch):
    return {
        "epoch": epoch + 1,
        "train_loss": 1.0 / (epoch + 1),
        "train_top1": 0.1 * epoch,
        "val_loss": 2.0 / (epoch + 1),
        "val_top1": VAL_TOP1[epoch],
        "val_top5": 1.0,
        "lr": 0.01,
        "images_per_s": 100.0,
        "seconds": 1.0,
    }


@pytest.fixture(autouse=True)
def fast_epochs(monkeypatch):
    """Fake epochs, and curves.png written (atomically) without matplotlib's second per plot."""
    monkeypatch.setattr(loop, "_run_epoch", fake_epoch)
    monkeypatch.setattr(
        commit,
        "plot_curves",
        lambda path, rows, title="": io_module.write_atomic(
            path, lambda f: f.write(f"{len(rows)} epochs".encode())
        ),
    )


class Killed(BaseException):
    """Stands for a kill: nothing after the boundary runs."""


def quiet(*args):
    pass


def check_agreement(out, epochs):
    """last.npz, best.npz, metrics.csv and curves.png of a finished run tell one story."""
    meta, state, _ = T.load_checkpoint(out / "last.npz")
    assert meta["epoch"] == epochs and [r["epoch"] for r in meta["metrics"]] == list(
        range(1, epochs + 1)
    )
    expected = [fake_epoch_row(e) for e in range(epochs)]
    assert T.read_metrics(out / "metrics.csv") == expected == meta["metrics"]
    best = 1 + int(np.argmax(VAL_TOP1[:epochs]))
    assert meta["best_epoch"] == best
    best_meta, best_state, _ = T.load_checkpoint(out / "best.npz")
    assert best_meta["epoch"] == best and all(
        np.all(v == best) for k, v in best_state.items() if k.endswith("weight") and "bn" not in k
    )
    assert (out / "curves.png").stat().st_size > 0
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.parametrize("boundary", commit.BOUNDARIES)
@pytest.mark.parametrize("kill_epoch", range(1, len(VAL_TOP1) + 1))
def test_a_kill_at_every_write_boundary_leaves_files_that_agree(
    tmp_path, tiny_data, monkeypatch, boundary, kill_epoch
):
    seen = {"epoch": 0}

    def hook(name):
        if name == "before last.npz":
            seen["epoch"] += 1
        if name == boundary and seen["epoch"] == kill_epoch:
            raise Killed(boundary)

    monkeypatch.setattr(commit, "BOUNDARY_HOOK", hook)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        T.train(config(tiny_data, out), log=quiet)
    monkeypatch.setattr(commit, "BOUNDARY_HOOK", None)
    committed = kill_epoch - (boundary == "before last.npz")
    if committed:
        meta, _, _ = T.load_checkpoint(out / "last.npz")
        assert meta["epoch"] == committed and len(meta["metrics"]) == committed
    result = (
        T.train(T.TrainConfig(workers=0, progress=False), resume=str(out), log=quiet)
        if committed
        else T.train(config(tiny_data, out), log=quiet)
    )
    assert result["epochs"] == len(VAL_TOP1)
    check_agreement(out, len(VAL_TOP1))


def test_a_finished_run_killed_before_best_npz_is_repaired_by_resume(
    tmp_path, tiny_data, monkeypatch
):
    """The issue's case: a kill between last.npz and best.npz in the last epoch."""

    def hook(name):
        if name == "after last.npz" and os.path.exists(tmp_path / "run" / "best.npz"):
            meta, _, _ = T.load_checkpoint(tmp_path / "run" / "last.npz")
            if meta["epoch"] == len(VAL_TOP1):
                raise Killed(name)

    monkeypatch.setattr(commit, "BOUNDARY_HOOK", hook)
    with pytest.raises(Killed):
        T.train(config(tiny_data, tmp_path / "run"), log=quiet)
    monkeypatch.setattr(commit, "BOUNDARY_HOOK", None)
    assert T.load_checkpoint(tmp_path / "run" / "best.npz")[0]["epoch"] == 2  # stale, until resumed
    logged = []
    result = T.train(
        T.TrainConfig(workers=0, progress=False), resume=str(tmp_path / "run"), log=logged.append
    )
    assert result["already_finished"] and any("repairing" in line for line in logged)
    check_agreement(tmp_path / "run", len(VAL_TOP1))


def test_a_bad_metrics_csv_is_rewritten_on_resume(tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "run"
    T.train(config(tiny_data, out, epochs=2), log=quiet)
    good = (out / "metrics.csv").read_text()
    (out / "metrics.csv").write_text(good.splitlines()[0] + "\n1,abc,0,0,0,0,0,0,0\n")
    with pytest.raises(T.CheckpointError, match=r"metrics.csv' line 2: train_loss is 'abc'"):
        T.read_metrics(out / "metrics.csv")
    (out / "metrics.csv").write_text(
        (out / "metrics.csv").read_text().replace("train_loss", "oops")
    )
    T.train(T.TrainConfig(workers=0, progress=False), resume=str(out), log=quiet)
    assert [r["epoch"] for r in T.read_metrics(out / "metrics.csv")] == [1, 2]


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,seconds\n1,nan,0,0,0,0,0,0,0\n",
            "line 2: train_loss is 'nan', not a finite number",
        ),
        (
            "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,seconds\n1.5,0,0,0,0,0,0,0,0\n",
            "line 2: epoch is '1.5'",
        ),
        (
            "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,images_per_s,seconds\n1,0,0,0,0,0,0,0\n",
            "line 2: seconds is None",
        ),
        ("\xff\xfe junk", "not a readable CSV file"),
    ],
)
def test_metrics_are_parsed_defensively(tmp_path, text, message):
    (tmp_path / "metrics.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(T.CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        T.read_metrics(tmp_path / "metrics.csv")


def test_an_older_checkpoint_without_metrics_resumes_from_metrics_csv(
    tmp_path, tiny_data, monkeypatch
):
    out = tmp_path / "run"
    T.train(config(tiny_data, out, epochs=3), log=quiet)
    import json

    arrays = io_module.load_npz(out / "last.npz")
    meta = json.loads(arrays["meta.json"].tobytes())
    del meta["metrics"]
    meta["epoch"] = 2
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    io_module.save_npz(out / "last.npz", arrays)
    T.train(T.TrainConfig(workers=0, progress=False), resume=str(out), log=quiet)
    assert [r["epoch"] for r in T.read_metrics(out / "metrics.csv")] == [1, 2, 3]
    io_module.save_npz(out / "last.npz", arrays)
    (out / "metrics.csv").write_text("epoch,train_loss\n")
    code, err = run_main(["train", "--resume", out])
    assert code == 2 and "the header is ['epoch', 'train_loss']" in one_line(err)


# ---- --out ---------------------------------------------------------------------------------------
def test_out_refuses_a_folder_that_is_not_a_run(tmp_path, tiny_data):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.json").write_text("my own settings")
    (user / ".draft.tmp").write_text("my notes")
    code, err = run_main(["train", "--data", tiny_data, "--out", user, "--workers", 0])
    assert (
        code == 2
        and "is not empty (.draft.tmp, config.json) and is not a minicnn run folder"
        in one_line(err)
    )
    assert (user / "config.json").read_text() == "my own settings" and (
        user / ".draft.tmp"
    ).exists()
    cwd = os.getcwd()
    try:
        os.chdir(user)
        code, err = run_main(["train", "--data", tiny_data, "--out", ".", "--workers", 0])
    finally:
        os.chdir(cwd)
    assert code == 2 and "--out '.' is not empty" in one_line(err)
    assert (user / "config.json").read_text() == "my own settings"


def test_out_path_problems_are_found_before_the_data_is_read(tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was opened before --out was checked")

    monkeypatch.setattr(loop, "data_root", no_data)
    (tmp_path / "file").write_text("x")
    cases = [
        (tmp_path / "file", "--out '{}' is a file, not a folder".format(tmp_path / "file")),
        (tmp_path / "file" / "run", "is not a folder"),
        (tmp_path / "run", None),
    ]
    for out, message in cases[:2]:
        code, err = run_main(["train", "--out", out])
        assert code == 2 and message in one_line(err), err
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: (
            False if os.fspath(path) == str(tmp_path) else real_access(path, mode, **kw)
        ),
    )
    code, err = run_main(["train", "--out", tmp_path / "run"])
    assert code == 2 and f"cannot write into '{tmp_path}'" in one_line(err)


def test_only_our_own_temporary_files_are_removed(tmp_path, tiny_data, monkeypatch):
    out = tmp_path / "run"
    T.train(config(tiny_data, out, epochs=1), log=quiet)
    (out / ".last.npz.0123456789ab.tmp").write_bytes(b"half a save")  # a killed save of ours
    (out / ".notes.tmp").write_text("the user's")  # not ours
    T.train(T.TrainConfig(workers=0, progress=False), resume=str(out), log=quiet)
    assert not (out / ".last.npz.0123456789ab.tmp").exists() and (out / ".notes.tmp").exists()


# ---- full and read-only disks --------------------------------------------------------------------
@pytest.mark.parametrize(
    "err,text", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]
)
def test_a_full_disk_is_one_line_and_the_last_checkpoint_survives(
    tmp_path, tiny_data, monkeypatch, err, text
):
    out = tmp_path / "run"
    real_fsync = os.fsync

    def failing_fsync(fd):
        if epoch_of_save["n"] >= 2:
            raise OSError(err, os.strerror(err))
        real_fsync(fd)

    epoch_of_save = {"n": 0}

    def hook(name):
        if name == "before last.npz":
            epoch_of_save["n"] += 1

    monkeypatch.setattr(commit, "BOUNDARY_HOOK", hook)
    monkeypatch.setattr(io_module.os, "fsync", failing_fsync)
    code, cli_err = run_main(
        ["train", "--data", tiny_data, "--out", out, "--workers", 0, "--epochs", 3, "--no-progress"]
    )
    monkeypatch.setattr(io_module.os, "fsync", real_fsync)
    line = one_line(cli_err)
    assert code == 2 and f"cannot write {out / 'last.npz'}: {text}" in line
    assert f"the previous checkpoint {out / 'last.npz'} (epoch 1) is intact" in line
    assert T.load_checkpoint(out / "last.npz")[0]["epoch"] == 1
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
