"""Hostile inputs to the data pipeline: FIFOs, link loops, 16-bit and float images, decompression
bombs, empty classes, unreadable datasets, workers that die mid-message, a killed main process.

Every test that could hang runs under a hard time limit (``hard_limit``: SIGALRM, or a subprocess
with ``timeout=``); the limits are generous, for a loaded machine."""

import contextlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from minicnn.data import (
    DataLoader,
    DataLoaderError,
    ImageFolder,
    UnreadableDataset,
    UnreadableImage,
    load_image,
    loader as loader_module,
    transforms as T,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def hard_limit(seconds):
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"hung for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def png(path, value=0, size=(6, 6)):
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path)


def tree(tmp_path, classes=("a", "b"), per_class=3):
    root = tmp_path / "data"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            png(root / c / f"{i}.png", 40 * i)
    return root


# ---- only regular files, links kept inside their class folder ------------------------------------
def test_a_fifo_named_like_an_image_is_never_opened(tmp_path):
    root = tree(tmp_path)
    os.mkfifo(root / "a" / "x.png")
    with hard_limit(60):
        with pytest.raises(UnreadableImage, match="x.png: not a regular file"):
            load_image(root / "a" / "x.png")
        ds = ImageFolder(root, T.ToFloatCHW())
        assert len(ds) == 6 and all(not p.endswith("x.png") for p, _ in ds.samples)
        for workers in (0, 2):
            loader = DataLoader(ds, batch_size=4, num_workers=workers)
            assert sum(len(y) for _, y in loader) == 6
            loader.close()


def test_a_link_to_its_own_folder_is_a_loop(tmp_path):
    root = tree(tmp_path)
    os.symlink(".", root / "a" / "again")
    with hard_limit(60), pytest.raises(ValueError, match="again' is a symbolic link loop"):
        ImageFolder(root)


def test_a_link_out_of_the_class_folder_is_refused(tmp_path):
    root = tree(tmp_path)
    os.symlink("..", root / "a" / "up")
    with pytest.raises(ValueError, match="up' is a symbolic link out of its class folder"):
        ImageFolder(root)
    os.unlink(root / "a" / "up")
    os.symlink(root / "b" / "0.png", root / "a" / "stolen.png")  # another class's image
    with pytest.raises(ValueError, match="stolen.png' is a symbolic link out of its class folder"):
        ImageFolder(root)


def test_links_inside_the_class_folder_are_followed(tmp_path):
    root = tree(tmp_path)
    (root / "a" / "sub").mkdir()
    png(root / "a" / "sub" / "s.png")
    os.symlink("sub", root / "a" / "alias")
    os.symlink("0.png", root / "a" / "zero.png")
    os.symlink("missing.png", root / "a" / "dangling.png")
    ds = ImageFolder(root)
    names = sorted(os.path.relpath(p, root) for p, t in ds.samples if t == 0)
    assert names == ["a/0.png", "a/1.png", "a/2.png", "a/alias/s.png", "a/sub/s.png", "a/zero.png"]


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = tree(tmp_path)
    (root / "c_empty").mkdir()
    with pytest.raises(ValueError, match="class folder '.*c_empty' has no image files"):
        ImageFolder(root)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_of_only_unreadable_images_is_an_error(tmp_path, workers):
    root = tmp_path / "bad"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "1.png").write_bytes(b"not a png")
    loader = DataLoader(ImageFolder(root), batch_size=2, num_workers=workers)
    with (
        hard_limit(120),
        pytest.raises(
            UnreadableDataset,
            match=r"every image of .*bad was unreadable "
            r"\(2 files; first: .*1.png",
        ),
    ):
        list(loader)
    loader.close()


# ---- pixel formats and bombs ---------------------------------------------------------------------
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    Image.fromarray(np.array([[0, 40000, 65535]], np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "float.tif")
    deep, flt = load_image(tmp_path / "deep.png"), load_image(tmp_path / "float.tif")
    assert deep.shape == flt.shape == (1, 3, 3) and deep.dtype == flt.dtype == np.uint8
    assert deep[0, :, 0].tolist() == [0, round(40000 * 255 / 65535), 255]
    assert flt[0, :, 0].tolist() == [0, 128, 255]


def bomb_png(path, width, height):
    """A valid PNG header for a width x height grayscale image, with a tiny (truncated) pixel
    stream: a few hundred bytes that would decode to width * height bytes."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1) * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb_png(tmp_path / "bomb.png", 12000, 12000)
    assert os.path.getsize(tmp_path / "bomb.png") < 2000
    with hard_limit(30), pytest.raises(UnreadableImage, match="(?i)decompression bomb"):
        load_image(tmp_path / "bomb.png")
    png(tmp_path / "small.png", size=(40, 50))
    with pytest.raises(UnreadableImage, match="50x40 is more than 1000 pixels"):
        load_image(tmp_path / "small.png", max_pixels=1000)


def test_pillows_bomb_check_is_on(tmp_path, monkeypatch):
    png(tmp_path / "small.png", size=(40, 50))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # warns above, errors above twice that
    with pytest.raises(UnreadableImage, match="DecompressionBomb"):
        load_image(tmp_path / "small.png")


# ---- workers that die, a main process that dies --------------------------------------------------
class Big:
    """Samples of 1 MB: a batch is many pipe buffers long."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return np.full((256, 1024), i, np.float32), i


def test_a_worker_killed_in_the_middle_of_a_message_is_reported(monkeypatch):
    def half_then_die(fd, obj):
        data = loader_module.pickle.dumps(obj)
        os.write(fd, loader_module._FRAME.pack(len(data)) + data[:1000])
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(
        loader_module, "_send_frame", half_then_die
    )  # inherited by the forked worker
    loader = DataLoader(Big(), batch_size=4, num_workers=1)
    with (
        hard_limit(60),
        pytest.raises(
            DataLoaderError,
            match=r"worker 0 \(pid \d+\) was killed by "
            r"SIGKILL while loading batch 0",
        ),
    ):
        list(loader)
    loader.close()


def test_a_worker_killed_after_the_first_batch_is_reported():
    loader = DataLoader(Big(), batch_size=4, num_workers=1, prefetch_factor=4)
    with hard_limit(60):
        it = iter(loader)
        next(it)
        os.kill(loader._workers[0].process.pid, signal.SIGKILL)
        with pytest.raises(
            DataLoaderError, match=r"\(pid \d+\) was killed by SIGKILL while loading batch"
        ):
            list(it)
    loader.close()


def test_the_timeout_names_the_busy_workers():
    class Slow(Big):
        def __getitem__(self, i):
            time.sleep(30)

    loader = DataLoader(Slow(), batch_size=4, num_workers=1, timeout=1)
    with (
        hard_limit(60),
        pytest.raises(DataLoaderError, match=r"no batch .* in 1 s \(pid \d+ on batch 0"),
    ):
        list(loader)
    loader.close()


ORPHAN = textwrap.dedent("""
    import time
    from minicnn.data import DataLoader

    class Slow:
        def __len__(self):
            return 1000
        def __getitem__(self, i):
            time.sleep(0.05)
            return i, i

    loader = DataLoader(Slow(), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    print(" ".join(str(w.process.pid) for w in loader._workers), flush=True)
    time.sleep(120)
""")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_main_process(sig):
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "loader workers outlived the main process"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
