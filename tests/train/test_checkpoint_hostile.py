"""Everything a checkpoint holds is checked before it is used: .npz members (real .npy, declared
sizes bounded by the archive and by the model), meta.json against its schema; every failure is a
CheckpointError, and exit 2 with one line in the CLI."""

import json
import struct
import zipfile

import numpy as np
import pytest

import minicnn
from minicnn import io as io_module
from minicnn import optim, train as T

from cli_helpers import one_line, run_main


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real last.npz of resnet20 with optimizer and schedule state."""
    model = T.build_model("resnet20", 2)
    opt = optim.SGD(optim.param_groups(model, 5e-4), lr=0.1, momentum=0.9)
    sched = T.build_scheduler(T.TrainConfig(epochs=2), opt, steps_per_epoch=3)
    x, y = minicnn.randn(2, 3, 32, 32), minicnn.tensor(np.array([0, 1]))
    minicnn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()
    meta = {
        "config": T.TrainConfig(epochs=2).to_json(),
        "classes": ["a", "b"],
        "epoch": 1,
        "best_epoch": 1,
        "best_val_top1": 0.5,
        "image_size": 32,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "metrics": [
            {
                "epoch": 1,
                "train_loss": 1.0,
                "train_top1": 0.5,
                "val_loss": 1.0,
                "val_top1": 0.5,
                "val_top5": 1.0,
                "lr": 0.1,
                "images_per_s": 10.0,
                "seconds": 1.0,
            }
        ],
    }
    path = tmp_path_factory.mktemp("good") / "last.npz"
    T.save_checkpoint(path, model, meta, opt, sched)
    return path


def arrays_and_meta(path):
    arrays = io_module.load_npz(path)
    return arrays, json.loads(arrays["meta.json"].tobytes())


def with_meta(path, out, change):
    arrays, meta = arrays_and_meta(path)
    meta = change(meta)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    io_module.save_npz(out, arrays)
    return out


def edit(fn):
    def change(meta):
        fn(meta)
        return meta

    return change


META_CASES = {
    "a list": (lambda m: [m], "meta.json holds a list, not an object"),
    "no classes": (edit(lambda m: m.pop("classes")), "meta.json has no 'classes'"),
    "epoch as text": (edit(lambda m: m.update(epoch="1")), "meta.json has a bad 'epoch': '1'"),
    "string rng": (edit(lambda m: m.update(rng="seed")), "meta.json has a bad 'rng': 'seed'"),
    "broken rng": (edit(lambda m: m["rng"].update(state={"state": "x"})), "bad 'rng' state"),
    "config not an object": (edit(lambda m: m.update(config=[1])), "bad 'config': [1]"),
    "unknown config key": (
        edit(lambda m: m["config"].update(evil=1)),
        "config has unknown keys evil",
    ),
    "config lr text": (
        edit(lambda m: m["config"].update(lr="fast")),
        "lr must be a finite number, got 'fast'",
    ),
    "config nan": (
        edit(lambda m: m["config"].update(momentum=float("nan"))),
        "momentum must be a finite",
    ),
    "best after epoch": (
        edit(lambda m: m.update(best_epoch=5)),
        "best_epoch 5 is after its epoch 1",
    ),
    "bad metrics row": (
        edit(lambda m: m["metrics"][0].update(lr="x")),
        "metrics row has a value that",
    ),
    "missing metrics row": (
        edit(lambda m: m.update(metrics=[])),
        "not one row for each of the 1 epochs",
    ),
    "optimizer not an object": (edit(lambda m: m.update(optimizer=3)), "bad 'optimizer': 3"),
    "missing optimizer array": (
        edit(
            lambda m: m["optimizer"]["state"]["0"].update(
                momentum_buffer={"__array__": "optimizer/none"}
            )
        ),
        "refers to an array 'optimizer/none'",
    ),
    "scheduler wrong": (
        edit(lambda m: m["scheduler"].update(last_epoch="x")),
        "scheduler.last_epoch: expected a finite number",
    ),
    "param group wrong": (
        edit(lambda m: m["optimizer"]["param_groups"][0].update(lr=None)),
        "param_groups[0].lr: expected a finite number",
    ),
    "no such classes count": (edit(lambda m: m.update(classes=[])), "bad 'classes'"),
}


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_tampered_meta_json_is_a_checkpoint_error(tmp_path, good, case):
    change, message = META_CASES[case]
    path = with_meta(good, tmp_path / "last.npz", change)
    with pytest.raises(T.CheckpointError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_for_resume(path)
    if case not in RESUME_ONLY:  # predict needs no optimizer or schedule
        code, err = predict(path)
        assert code == 2 and message.split("'")[0] in one_line(err)


RESUME_ONLY = {"missing optimizer array", "scheduler wrong", "param group wrong"}


def load_for_resume(path):
    """What --resume does with a last.npz: meta, model-bounded arrays, optimizer, schedule."""
    meta, state, arrays = T.load_checkpoint(path)
    config = T.TrainConfig.from_json(meta["config"])
    model = T.build_model(config.model, len(meta["classes"]))
    model.load_state_dict(state)
    opt = T.build_optimizer(config, model)
    sched = T.build_scheduler(config, opt, 3)
    T.checkpoint.restore_training_state(meta, arrays, opt, sched, str(path))


def predict(path):
    """``minicnn predict`` with the checkpoint (the resume path is tested in test_run_commit)."""
    return run_main(["predict", "--checkpoint", path, path])


def test_meta_json_that_is_not_text_or_too_big(tmp_path, good):
    arrays, _ = arrays_and_meta(good)
    arrays["meta.json"] = np.frombuffer(b"\xff\xfe{", np.uint8)
    io_module.save_npz(tmp_path / "a.npz", arrays)
    with pytest.raises(T.CheckpointError, match="unreadable meta.json"):
        T.load_checkpoint(tmp_path / "a.npz")
    arrays["meta.json"] = np.zeros(3, np.float32)
    io_module.save_npz(tmp_path / "b.npz", arrays)
    with pytest.raises(T.CheckpointError, match="meta.json must be a uint8 text"):
        T.load_checkpoint(tmp_path / "b.npz")


# ---- .npz members --------------------------------------------------------------------------------
def npy_header(shape, dtype="<f4"):
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_a_member_that_is_not_npy_is_refused(tmp_path, good):
    path = tmp_path / "extra.npz"
    path.write_bytes(good.read_bytes())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(
        ValueError, match=r"entry 'notes.txt' of .* is unreadable \(it is not a .npy array\)"
    ):
        io_module.load_npz(path)
    with pytest.raises(T.CheckpointError, match="not a .npy array"):
        T.load_checkpoint(path)


def test_a_header_declaring_a_trillion_elements_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", npy_header((10**12,)) + bytes(16))
    with pytest.raises(
        ValueError,
        match=r"entry 'w' .* declares \(1000000000000,\) float32 \(4000000000000 "
        r"bytes\) but the archive holds \d+ bytes",
    ):
        io_module.load_npz(path)


def test_a_lying_zip_size_is_refused_before_inflating(tmp_path):
    """A member whose zip entry claims 3 GB from a few hundred compressed bytes."""
    path = tmp_path / "bomb.npz"
    payload = npy_header((750_000_000,)) + bytes(1000)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w.npy", payload)
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 3_000_000_000)  # uncompressed size in the directory
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match="would inflate .* to 3000000000 .*not a real deflate stream"
    ):
        io_module.load_npz(path)


def test_checkpoint_members_are_bounded_by_the_model_before_inflating(tmp_path, good, monkeypatch):
    arrays, _ = arrays_and_meta(good)
    arrays["model/fc.weight"] = np.zeros((2, 4096), np.float32)  # the model's fc is (2, 64)
    io_module.save_npz(tmp_path / "wide.npz", arrays, compress=True)
    read, real_read = [], io_module._read_member

    def spy(zf, info, key, path):
        read.append(key)
        return real_read(zf, info, key, path)

    monkeypatch.setattr(io_module, "_read_member", spy)
    with pytest.raises(
        T.CheckpointError,
        match=r"'model/fc.weight' .*shape \(2, 4096\), the model expects "
        r"\(2, 64\)",
    ):
        T.load_checkpoint(tmp_path / "wide.npz")
    assert read == ["meta.json"]  # the arrays were refused from their headers
    monkeypatch.undo()
    arrays, _ = arrays_and_meta(good)
    arrays["optimizer/extra"] = np.zeros((1000, 1000), np.float32)
    io_module.save_npz(tmp_path / "extra.npz", arrays)
    with pytest.raises(T.CheckpointError, match=r"'optimizer/extra' .*is no parameter's shape"):
        T.load_checkpoint(tmp_path / "extra.npz")
    arrays, _ = arrays_and_meta(good)
    arrays["stowaway"] = np.zeros(3)
    io_module.save_npz(tmp_path / "stowaway.npz", arrays)
    with pytest.raises(
        T.CheckpointError, match="'stowaway' .*not a member of a minicnn checkpoint"
    ):
        T.load_checkpoint(tmp_path / "stowaway.npz")


def test_a_good_checkpoint_still_loads(good):
    load_for_resume(good)
