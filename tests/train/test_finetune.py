"""minicnn.finetune: pretrained weights with a new head, freezing, a deterministic val split."""

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import models
from minicnn.finetune import (
    PretrainedError,
    classifier_prefix,
    freeze,
    load_pretrained,
    split_image_folder,
)


def test_classifier_prefix():
    assert classifier_prefix(models.resnet20()) == "fc"
    assert classifier_prefix(models.alexnet()) == "classifier.6"
    assert classifier_prefix(models.densenet_bc_100()) == "classifier"


def test_same_classes_load_everything_and_other_classes_get_a_new_head(tmp_path):
    src = models.resnet20(num_classes=10)
    minicnn.io.save_npz(tmp_path / "w.npz", src.state_dict())
    same = models.resnet20(num_classes=10)
    assert load_pretrained(same, tmp_path / "w.npz") is None
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(same.state_dict()[k], v)
    other = models.resnet20(num_classes=4)
    fresh_fc = other.fc.weight.numpy().copy()
    assert load_pretrained(other, tmp_path / "w.npz") == "fc"
    np.testing.assert_array_equal(other.fc.weight.numpy(), fresh_fc)  # kept its init
    np.testing.assert_array_equal(other.conv1.weight.numpy(), src.conv1.weight.numpy())


def test_weights_of_another_architecture_are_refused(tmp_path):
    minicnn.io.save_npz(tmp_path / "w.npz", models.resnet20(shortcut="B").state_dict())
    with pytest.raises(
        PretrainedError, match="does not fit resnet20.*unexpected layer2.0.downsample"
    ):
        load_pretrained(models.resnet20(), tmp_path / "w.npz")
    with pytest.raises(PretrainedError, match="no such weights file"):
        load_pretrained(models.resnet20(), tmp_path / "none.npz")


def test_legacy_densenet_keys_load(tmp_path):
    src = models.densenet_bc_100()
    legacy = {
        k.replace(".norm1.", ".norm.1."): v
        for k, v in src.state_dict().items()
        if "num_batches" not in k
    }
    minicnn.io.save_npz(tmp_path / "d.npz", legacy)
    assert load_pretrained(models.densenet_bc_100(), tmp_path / "d.npz") is None


def test_freeze_by_prefix():
    model = models.resnet20()
    n = freeze(model, ["conv1", "layer1"])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert "conv1.weight" in frozen and "layer1.2.bn2.bias" in frozen
    assert "layer2.0.conv1.weight" not in frozen and "bn1.weight" not in frozen
    assert n == sum(p.numel() for _, p in model.named_parameters() if not p.requires_grad)
    with pytest.raises(PretrainedError, match="no parameter name starts with 'layer9'"):
        freeze(model, ["layer9"])


def _folder(root, counts):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(root / name / f"{i:02d}.png")


def test_split_is_stratified_disjoint_and_deterministic(tmp_path):
    _folder(tmp_path / "d", {"a": 10, "b": 5, "c": 2})
    train, val = split_image_folder(tmp_path / "d", 0.2, seed=0)
    assert train.classes == val.classes == ["a", "b", "c"]
    counts = [sum(1 for _, t in val.samples if t == c) for c in range(3)]
    assert counts == [2, 1, 1]
    assert not set(train.samples) & set(val.samples) and len(train) + len(val) == 17
    again = split_image_folder(tmp_path / "d", 0.2, seed=0)
    assert again[1].samples == val.samples
    assert split_image_folder(tmp_path / "d", 0.2, seed=1)[1].samples != val.samples
    image, target = train[0]
    assert target == train.targets[0]
    with pytest.raises(PretrainedError, match="--val-split must be between 0 and 1"):
        split_image_folder(tmp_path / "d", 1.0)
    _folder(tmp_path / "e", {"a": 3, "b": 1})
    with pytest.raises(PretrainedError, match="class 'b' has 1 image"):
        split_image_folder(tmp_path / "e", 0.5)
