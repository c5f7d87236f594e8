"""minicnn.io (pickle-free .npz state dicts) and minicnn.models.convert (.pth -> .npz)."""

import os
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import minicnn
from minicnn import io
from minicnn.models import convert


def _state():
    return OrderedDict(
        [
            ("features.0.weight", np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)),
            ("features.0.bias", np.array([0.5, -1.5], dtype=np.float64)),
            ("bn.num_batches_tracked", np.array(7, dtype=np.int64)),  # 0-d, as torch stores it
            ("mask", np.array([True, False])),
            ("empty", np.zeros((0, 3), dtype=np.float32)),
        ]
    )


# ---- save_npz / load_npz -------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_keeps_order_dtypes_shapes_and_values(tmp_path, compress):
    path = tmp_path / "state.npz"
    io.save_npz(path, _state(), compress=compress)
    loaded = io.load_npz(path)
    assert isinstance(loaded, OrderedDict) and list(loaded) == list(_state())
    for key, value in _state().items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


def test_tensors_and_numpy_scalars_are_accepted(tmp_path):
    path = tmp_path / "t.npz"
    io.save_npz(str(path), {"w": minicnn.tensor([[1.0, 2.0]]), "s": np.float64(3.0)})
    loaded = io.load_npz(str(path))
    assert loaded["w"].dtype == np.float32 and loaded["w"].tolist() == [[1.0, 2.0]]
    assert loaded["s"].shape == () and loaded["s"] == 3.0


def test_files_are_plain_numpy_npz(tmp_path):
    """Readable by numpy.load without pickle, and numpy.savez files load here."""
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    io.save_npz(ours, _state())
    with np.load(ours, allow_pickle=False) as f:
        assert f.files == list(_state())
        np.testing.assert_array_equal(f["features.0.weight"], _state()["features.0.weight"])
    np.savez(theirs, a=np.ones(3), b=np.int64(2))
    assert list(io.load_npz(theirs)) == ["a", "b"]


def test_module_state_dict_round_trip(tmp_path):
    model = minicnn.nn.Sequential(minicnn.nn.Conv2d(3, 4, 3), minicnn.nn.BatchNorm2d(4))
    io.save_npz(tmp_path / "m.npz", model.state_dict())
    other = minicnn.nn.Sequential(minicnn.nn.Conv2d(3, 4, 3), minicnn.nn.BatchNorm2d(4))
    other.load_state_dict(io.load_npz(tmp_path / "m.npz"))
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_save_refuses_non_arrays_and_object_arrays(tmp_path):
    path = tmp_path / "bad.npz"
    with pytest.raises(
        TypeError,
        match=r"'a' is a list, not a NumPy array or Tensor; 'b' has dtype "
        r"object, which would need pickle",
    ):
        io.save_npz(path, {"a": [1, 2], "b": np.array([None]), "c": np.zeros(1)})
    with pytest.raises(TypeError, match="expected a dict of arrays"):
        io.save_npz(path, [np.zeros(1)])
    with pytest.raises(TypeError, match="key 3 is not a non-empty string"):
        io.save_npz(path, {3: np.zeros(1)})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_save_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "state.npz"
    io.save_npz(path, {"old": np.ones(2)})
    calls = []

    def failing_write(member, array, allow_pickle):
        calls.append(array.shape)
        if len(calls) == 2:
            raise OSError("disk full")
        np.lib.format.write_array(member, array, allow_pickle=allow_pickle)

    monkeypatch.setattr(io.np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        io.save_npz(path, {"new1": np.zeros(3), "new2": np.zeros(4)})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["state.npz"]
    assert list(io.load_npz(path)) == ["old"]


def test_save_overwrites(tmp_path):
    path = tmp_path / "s.npz"
    io.save_npz(path, {"a": np.ones(1)})
    io.save_npz(path, {"b": np.zeros(2)})
    assert list(io.load_npz(path)) == ["b"] and os.listdir(tmp_path) == ["s.npz"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*missing.npz"):
        io.load_npz(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.load_npz(tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz' is not an .npz archive .*zip header"):
        io.load_npz(tmp_path / "junk.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="it is empty"):
        io.load_npz(tmp_path / "empty.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array, not an .npz archive"):
        io.load_npz(tmp_path / "one.npy")
    io.save_npz(tmp_path / "good.npz", _state())
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz' is not a readable .npz archive"):
        io.load_npz(tmp_path / "truncated.npz")


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, ok=np.ones(2), obj=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="entry 'obj' of .* is unreadable .*allow_pickle=False"):
        io.load_npz(path)


def test_load_reports_a_corrupt_member(tmp_path):
    path = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", b"\x93NUMPY garbage header")
    with pytest.raises(ValueError, match="entry 'a' of .* is unreadable"):
        io.load_npz(path)


# ---- convert (.pth -> .npz) ----------------------------------------------------------------------
def _torch_state(torch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net.train()(torch.randn(2, 3, 5, 5))  # running stats and num_batches_tracked move
    return net.state_dict()


def test_convert_weights(tmp_path):
    torch = pytest.importorskip("torch")
    state = _torch_state(torch)
    torch.save(state, tmp_path / "w.pth")
    arrays = convert.convert_weights(tmp_path / "w.pth", tmp_path / "w.npz")
    loaded = io.load_npz(tmp_path / "w.npz")
    assert list(loaded) == list(state) == list(arrays)
    assert "1.num_batches_tracked" in loaded and loaded["1.num_batches_tracked"].dtype == np.int64
    assert int(loaded["1.num_batches_tracked"]) == 1
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value.numpy(), err_msg=key)
    model = minicnn.nn.Sequential(minicnn.nn.Conv2d(3, 4, 3), minicnn.nn.BatchNorm2d(4))
    model.load_state_dict(loaded)  # strict: the keys are torch's


def test_convert_unwraps_checkpoints_and_half_precision(tmp_path):
    torch = pytest.importorskip("torch")
    state = _torch_state(torch)
    wrapped = {"epoch": 3, "state_dict": OrderedDict(("module." + k, v) for k, v in state.items())}
    wrapped["state_dict"]["module.0.weight"] = state["0.weight"].to(torch.bfloat16)
    torch.save(wrapped, tmp_path / "ckpt.pth")
    arrays = convert.read_pth(tmp_path / "ckpt.pth")
    assert list(arrays) == list(state)  # DataParallel's "module." prefix is gone
    assert arrays["0.weight"].dtype == np.float32


def test_main_convert_reports(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from minicnn.cli import main
    from minicnn.models import resnet20

    torch.save(
        {k: torch.from_numpy(v) for k, v in resnet20().state_dict().items()}, tmp_path / "r.pth"
    )
    assert (
        main(
            [
                "convert-weights",
                str(tmp_path / "r.pth"),
                str(tmp_path / "r.npz"),
                "--model",
                "resnet20",
            ]
        )
        == 0
    )
    assert "loads into resnet20 (strict)" in capsys.readouterr().out
    cases = [(["r.pth", "r.npz", "--model", "resnet32"], "does not load into resnet32")]
    torch.save({"a": [1, 2]}, tmp_path / "bad.pth")
    cases.append((["bad.pth", "b.npz"], "not a state_dict of tensors"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    cases.append((["junk.pth", "b.npz"], "cannot read"))
    cases.append((["nope.pth", "b.npz"], "no such file"))
    for argv, message in cases:
        paths = [str(tmp_path / a) if a.endswith(("pth", "npz")) else a for a in argv]
        assert main(["convert-weights"] + paths) == 2
        err = capsys.readouterr().err
        assert err.startswith("minicnn: error: convert-weights: ") and message in err
        assert err.count("\n") == 1
    assert not (tmp_path / "b.npz").exists()


def test_convert_without_torch(tmp_path, monkeypatch, capsys):
    from minicnn.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)  # makes ``import torch`` fail
    with pytest.raises(ImportError, match="needs PyTorch"):
        convert.read_pth(tmp_path / "w.pth")
    with pytest.raises(convert.ConversionError, match="needs PyTorch"):
        convert.main_convert(str(tmp_path / "w.pth"), str(tmp_path / "w.npz"))
    (tmp_path / "w.pth").write_bytes(b"x")
    assert main(["convert-weights", str(tmp_path / "w.pth"), str(tmp_path / "w.npz")]) == 2
    assert "pip install 'minicnn[torch]'" in capsys.readouterr().err
