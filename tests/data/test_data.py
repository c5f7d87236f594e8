"""minicnn.data: ImageFolder on odd files, transforms, the DataLoader and the built-in dataset."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from minicnn.data import (
    DataLoader,
    ImageFolder,
    UnreadableImageWarning,
    builtin_dataset,
    load_image,
    shapes,
    transforms as T,
)


@pytest.fixture
def odd_tree(tmp_path):
    """train/{a,b}: RGB JPEGs, a PNG with alpha, a grayscale PNG, a CMYK JPEG, a corrupt and a
    truncated JPEG."""
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                root / c / f"{i}.jpg"
            )
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(
        root / "a" / "alpha.png"
    )
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(
        root / "a" / "gray.png"
    )
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "CMYK").save(
        root / "b" / "cmyk.jpg"
    )
    (root / "b" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" + bytes(100))
    whole = (root / "a" / "0.jpg").read_bytes()
    (root / "b" / "truncated.jpeg").write_bytes(whole[: len(whole) // 2])
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_finds_classes_and_images(odd_tree):
    ds = ImageFolder(odd_tree)
    assert ds.classes == ["a", "b"] and ds.class_to_idx == {"a": 0, "b": 1}
    assert len(ds) == 5 + 2 + 5 + 3  # the .txt is not an image
    assert ds.targets.count(0) == 7


@pytest.mark.parametrize(
    "name,shape", [("alpha.png", (16, 16, 3)), ("gray.png", (16, 16, 3)), ("0.jpg", (20, 24, 3))]
)
def test_every_mode_loads_as_rgb(odd_tree, name, shape):
    img = load_image(odd_tree / "a" / name)
    assert img.shape == shape and img.dtype == np.uint8


def test_cmyk_loads_as_rgb(odd_tree):
    assert load_image(odd_tree / "b" / "cmyk.jpg").shape == (16, 16, 3)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_unreadable_files_with_one_warning(odd_tree, workers):
    ds = ImageFolder(odd_tree, T.Compose([T.Resize((8, 8)), T.ToFloatCHW()]))
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n = sum(len(y) for _, y in loader)
        n_again = sum(len(y) for _, y in loader)  # known bad files: no second warning
    loader.close()
    assert n == n_again == len(ds) - 2
    ours = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert len(ours) == 1 and "skipped 2 unreadable image file(s)" in str(ours[0].message)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolder(tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        ImageFolder(tmp_path)


# ---- transforms ----------------------------------------------------------------------------------
IMG = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_transform_shapes():
    assert T.Resize(20)(IMG).shape == (20, 30, 3)
    assert T.Resize((10, 12))(IMG).shape == (10, 12, 3)
    assert T.CenterCrop(32)(IMG).shape == (32, 32, 3)
    np.testing.assert_array_equal(T.CenterCrop((40, 60))(IMG), IMG)
    assert T.CenterCrop(50)(IMG)[0].sum() == 0  # padded with zeros where too small
    assert T.RandomCrop(32, padding=4)(IMG).shape == (32, 32, 3)
    assert T.RandomResizedCrop(24)(IMG).shape == (24, 24, 3)
    chw = T.ToFloatCHW()(IMG)
    assert chw.shape == (3, 40, 60) and chw.dtype == np.float32 and chw.flags.c_contiguous
    np.testing.assert_allclose(chw[:, 3, 5], IMG[3, 5] / 255, rtol=1e-6)
    norm = T.Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0))(chw)
    np.testing.assert_allclose(norm[1], (chw[1] - 0.5) / 0.5, rtol=1e-6)


def test_random_crop_with_padding_is_a_shifted_window():
    with T.sample_generator(np.random.default_rng(3)):
        crops = [T.RandomCrop((40, 60), padding=4)(IMG) for _ in range(20)]
    padded = np.pad(IMG, ((4, 4), (4, 4), (0, 0)))
    for c in crops:
        hits = [
            (i, j)
            for i in range(9)
            for j in range(9)
            if np.array_equal(padded[i : i + 40, j : j + 60], c)
        ]
        assert hits


def test_ten_crop():
    crops = T.TenCrop(20)(IMG)
    assert crops.shape == (10, 20, 20, 3)
    np.testing.assert_array_equal(crops[0], IMG[:20, :20])
    np.testing.assert_array_equal(crops[3], IMG[20:, 40:])
    np.testing.assert_array_equal(crops[4], IMG[10:30, 20:40])
    np.testing.assert_array_equal(crops[5], IMG[:20, ::-1][:, :20])
    out = T.Compose([T.TenCrop(20), T.ToFloatCHW(), T.Normalize()])(IMG)
    assert out.shape == (10, 3, 20, 20)


def test_random_transforms_are_deterministic_under_a_seed():
    t = T.Compose(
        [T.RandomResizedCrop(16), T.RandomHorizontalFlip(), T.ToFloatCHW(), T.Lighting(0.1)]
    )

    def draw(seed):
        with T.sample_generator(np.random.default_rng(seed)):
            return [t(IMG) for _ in range(5)]

    a, b, c = draw(7), draw(7), draw(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_random_resized_crop_respects_scale_and_ratio():
    rrc, rng = T.RandomResizedCrop(8, scale=(0.2, 0.5), ratio=(0.5, 2.0)), np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = rrc.get_params(100, 100, rng)
        assert 0 <= top <= 100 - h and 0 <= left <= 100 - w
        assert 0.18 <= h * w / 1e4 <= 0.52 and 0.45 <= w / h <= 2.2


def test_pca_lighting_statistics():
    light = T.Lighting(alphastd=0.1)
    rng = np.random.default_rng(0)
    offsets = np.array([light.offset(rng) for _ in range(20000)])
    V, lam = np.array(T.IMAGENET_PCA_EIGVEC), np.array(T.IMAGENET_PCA_EIGVAL)
    expected_cov = V @ np.diag((0.1 * lam) ** 2) @ V.T
    np.testing.assert_allclose(offsets.mean(axis=0), 0, atol=3e-4)
    np.testing.assert_allclose(np.cov(offsets, rowvar=False), expected_cov, atol=2e-5, rtol=0.05)
    # the offset is along the principal axes: projected onto them, the components are uncorrelated
    proj = offsets @ V
    np.testing.assert_allclose(proj.std(axis=0), 0.1 * lam, rtol=0.05)
    # one shift for the whole image
    x = np.full((3, 4, 5), 0.5, np.float32)
    with T.sample_generator(np.random.default_rng(1)):
        y = light(x)
    assert np.ptp(y.reshape(3, -1), axis=1).max() < 1e-6 and not np.allclose(y, x)


def test_pca_recovers_the_principal_axes():
    rng = np.random.default_rng(0)
    V = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pixels = (rng.normal(size=(4000, 3)) * [0.3, 0.1, 0.02]) @ V.T
    eigval, eigvec = T.Lighting.pca([pixels.T.reshape(3, 40, 100)])
    np.testing.assert_allclose(eigval, [0.09, 0.01, 0.0004], rtol=0.1)
    np.testing.assert_allclose(np.abs(eigvec.T @ V), np.eye(3), atol=0.05)


# ---- DataLoader ----------------------------------------------------------------------------------
class Numbers:
    """A dataset whose samples record the random draw the transform made."""

    def __len__(self):
        return 23

    def __getitem__(self, i):
        return np.array([i, T._rng().random()]), i


def batches(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def test_loader_batches_and_drop_last():
    assert [len(y) for _, y in DataLoader(Numbers(), batch_size=5)] == [5, 5, 5, 5, 3]
    assert [len(y) for _, y in DataLoader(Numbers(), batch_size=5, drop_last=True)] == [5, 5, 5, 5]
    assert (
        len(DataLoader(Numbers(), batch_size=5)) == 5
        and len(DataLoader(Numbers(), 5, drop_last=True)) == 4
    )
    x, y = next(iter(DataLoader(Numbers(), batch_size=4)))
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]


def test_loader_is_reproducible_and_independent_of_workers():
    runs = []
    for workers in (0, 1, 3):
        loader = DataLoader(Numbers(), batch_size=4, shuffle=True, num_workers=workers, seed=5)
        runs.append([batches(loader), batches(loader)])  # epochs 0 and 1
        loader.set_epoch(1)
        runs[-1].append(batches(loader))  # epoch 1 again
        loader.close()
    for run in runs:
        first, second, again = run
        assert [y.tolist() for _, y in first] != [y.tolist() for _, y in second]
        for (x1, y1), (x2, y2) in zip(second, again):
            np.testing.assert_array_equal(x1, x2)
        assert sorted(np.concatenate([y for _, y in first]).tolist()) == list(range(23))
    for run in runs[1:]:
        for epoch in range(2):
            for (x1, _), (x2, _) in zip(runs[0][epoch], run[epoch]):
                np.testing.assert_array_equal(x1, x2)


class Failing(Numbers):
    def __getitem__(self, i):
        if i == 7:
            raise KeyError("sample 7 is broken")
        return super().__getitem__(i)


def test_worker_exceptions_reach_the_main_process():
    loader = DataLoader(Failing(), batch_size=4, num_workers=2)
    with pytest.raises(RuntimeError, match="sample 7 is broken"):
        batches(loader)
    loader.close()


class Dying(Numbers):
    def __getitem__(self, i):
        if i == 9:
            os._exit(3)
        return super().__getitem__(i)


def test_a_dead_worker_is_an_error():
    loader = DataLoader(Dying(), batch_size=4, num_workers=2)
    with pytest.raises(RuntimeError, match=r"\(pid \d+\) exited with code 3 while loading batch 2"):
        batches(loader)
    loader.close()


def test_loader_rejects_bad_numbers():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Numbers(), batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(Numbers(), num_workers=-1)


# ---- the built-in dataset ------------------------------------------------------------------------
def test_builtin_dataset_layout_and_determinism(tmp_path):
    a = builtin_dataset(3, 1, cache=str(tmp_path / "one"))
    b = builtin_dataset(3, 1, cache=str(tmp_path / "two"))
    for split, n in (("train", 3), ("val", 1)):
        assert sorted(os.listdir(os.path.join(a, split))) == sorted(shapes.CLASSES)
        ds_a, ds_b = ImageFolder(os.path.join(a, split)), ImageFolder(os.path.join(b, split))
        assert len(ds_a) == n * 10
        for (xa, ya), (xb, yb) in zip(ds_a, ds_b):
            assert xa.shape == (32, 32, 3) and ya == yb
            np.testing.assert_array_equal(xa, xb)
    assert builtin_dataset(3, 1, cache=str(tmp_path / "one")) == a  # found, not regenerated
    assert [p for p in os.listdir(tmp_path / "one") if p.startswith(".")] == []


def test_builtin_dataset_default_cache_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "c"))
    assert builtin_dataset(1, 1).startswith(str(tmp_path / "c"))


def test_an_interrupted_generation_is_not_taken_for_a_dataset(tmp_path, monkeypatch):
    cache = str(tmp_path)

    def crash(root, *args, **kwargs):
        os.makedirs(os.path.join(root, "train", "circle"))
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        builtin_dataset(2, 1, cache=cache)
    assert os.listdir(cache) == []  # the temporary folder is gone, nothing final
    monkeypatch.undo()
    # a folder left without its manifest (say, by kill -9 of an older version) is regenerated
    final = os.path.join(cache, f"shapes32-v{shapes.VERSION}-seed0-2x1")
    os.makedirs(os.path.join(final, "train", "circle"))
    root = builtin_dataset(2, 1, cache=cache)
    assert root == final and len(ImageFolder(os.path.join(root, "train"))) == 20


def test_a_linear_model_does_poorly_on_the_builtin_shapes():
    """Ridge regression on raw pixels (a linear classifier of the images the CNN trains on) stays
    near chance: position, size, rotation, colours and background vary too much for any pixel to say
    the class."""

    def split(which, n):
        x = np.stack(
            [
                shapes.render(shapes.CLASSES[i % 10], shapes._split_rng(0, which, i))
                for i in range(n)
            ]
        )
        return x.reshape(n, -1).astype(np.float64) / 255, np.arange(n) % 10

    xtr, ytr = split("train", 1200)
    xva, yva = split("val", 400)
    mu = xtr.mean(0)
    xtr, xva = xtr - mu, xva - mu
    targets = np.eye(10)[ytr] - 0.1
    for lam in (1.0, 100.0):  # W = X^T (X X^T + lam I)^-1 Y (dual form)
        W = xtr.T @ np.linalg.solve(xtr @ xtr.T + lam * np.eye(len(xtr)), targets)
        train_acc = ((xtr @ W).argmax(1) == ytr).mean()
        val_acc = ((xva @ W).argmax(1) == yva).mean()
        assert train_acc > 0.5  # it fits the training images ...
        assert (
            val_acc < 0.25
        )  # ... in a way that does not carry over (chance 0.10; a CNN gets > 0.9)


def test_random_crop_produces_every_offset():
    """All 2 * padding + 1 offsets per axis occur (the last one too)."""
    img = np.arange(8 * 8, dtype=np.uint8).reshape(8, 8, 1)
    crop, seen = T.RandomCrop(8, padding=2), set()
    with T.sample_generator(np.random.default_rng(0)):
        for _ in range(400):
            out = crop(img)[..., 0]
            top = next(
                t
                for t in range(-2, 3)
                if np.array_equal(out, T._crop(img, t, 0, 8, 8)[..., 0])
                or any(np.array_equal(out, T._crop(img, t, l, 8, 8)[..., 0]) for l in range(-2, 3))
            )
            left = next(
                l for l in range(-2, 3) if np.array_equal(out, T._crop(img, top, l, 8, 8)[..., 0])
            )
            seen.add((top, left))
    assert seen == {(t, l) for t in range(-2, 3) for l in range(-2, 3)}
