"""Starting a training from other weights, freezing layers, and splitting one class-folder dataset.

    load_pretrained(model, "resnet18.npz")       # converted torchvision weights or a checkpoint
    freeze(model, ["conv1", "layer1"])           # those parameters stop training
    train_set, val_set = split_image_folder("photos/", 0.1)   # photos/<class>/… -> 90% / 10%

``load_pretrained`` loads every array whose name and shape fit. The classifier is the exception
that makes fine-tuning work: when its shape differs (another class count) it keeps its fresh
initialisation, a *new head* (as torchvision's fine-tuning recipe replaces ``fc``). Anything else
that does not fit (a missing key, an unexpected key, another shape) is an error that lists it:
the weights belong to another architecture or variant.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict

import numpy as np

__all__ = [
    "PretrainedError",
    "classifier_prefix",
    "freeze",
    "load_pretrained",
    "split_image_folder",
]


class PretrainedError(ValueError):
    """The weights do not fit the model, a prefix names no parameter, or a split is impossible."""


def classifier_prefix(model):
    """Module name of the model's last Linear layer (``fc``, ``classifier``, ``classifier.6``)."""
    from .nn import Linear

    names = [n for n, m in model.named_modules() if isinstance(m, Linear)]
    if not names:
        raise PretrainedError(f"{type(model).__name__} has no Linear classifier")
    return names[-1]


def _read_state(path):
    """name -> array of a converted ``.npz`` or of a minicnn training checkpoint."""
    from .io import load_npz
    from .models.convert import rename_legacy_keys

    if not os.path.isfile(path):
        raise PretrainedError(f"no such weights file {path!r}")
    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as e:
        raise PretrainedError(f"cannot read {path!r}: {e}") from None
    if "meta.json" in arrays:
        from .train import load_checkpoint

        arrays = load_checkpoint(path)[1]
    return rename_legacy_keys(arrays)


def load_pretrained(model, path):
    """Load the weights at ``path`` into ``model``; returns the new head's name, or None when the
    classifier was loaded too. Raises :class:`PretrainedError` listing what does not fit."""
    state = _read_state(path)
    if getattr(model, "aux1", 0) is None:  # torchvision's GoogLeNet file keeps its aux heads
        state = OrderedDict(
            (k, v) for k, v in state.items() if not k.startswith(("aux1.", "aux2."))
        )
    own = model.state_dict()
    head = classifier_prefix(model) + "."
    new_head = any(
        k.startswith(head) and k in state and np.shape(state[k]) != v.shape for k, v in own.items()
    )
    problems = [
        f"{k}: weights {np.shape(state[k])}, model {v.shape}"
        for k, v in own.items()
        if k in state and np.shape(state[k]) != v.shape and not k.startswith(head)
    ]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if problems or missing or unexpected:
        detail = "; ".join(
            p
            for p in (
                ", ".join(problems[:3]),
                f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else "")
                if missing
                else "",
                f"unexpected {', '.join(unexpected[:3])}" + (" …" if len(unexpected) > 3 else "")
                if unexpected
                else "",
            )
            if p
        )
        raise PretrainedError(
            f"{path!r} does not fit {getattr(model, 'arch', type(model).__name__)} ({detail})"
        )
    keep = {k: v for k, v in state.items() if not (new_head and k.startswith(head))}
    model.load_state_dict(keep, strict=False)
    return head[:-1] if new_head else None


def freeze(model, prefixes):
    """``requires_grad = False`` for every parameter whose name starts with one of ``prefixes``
    (``"layer1"`` matches ``layer1.0.conv1.weight``, not ``layer10``); returns how many values."""
    params = list(model.named_parameters())
    frozen = 0
    for prefix in prefixes:
        hits = [p for n, p in params if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            raise PretrainedError(
                f"freeze: no parameter name starts with {prefix!r} (names look "
                f"like {', '.join(n for n, _ in params[:3])}, …)"
            )
        for p in hits:
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen


def split_image_folder(root, fraction, seed=0, transform=None):
    """(train, val) ImageFolders over ``root``/<class>/…: per class, a seeded shuffle puts
    round(fraction · n) images (at least one, and at least one left for training) into val.
    The split depends only on the file list, ``fraction`` and ``seed``."""
    from .data import ImageFolder

    if not 0 < fraction < 1:
        raise PretrainedError(f"--val-split must be between 0 and 1, got {fraction}")
    full = ImageFolder(root, transform)
    rng = np.random.default_rng(seed)
    by_class = [[s for s in full.samples if s[1] == c] for c in range(len(full.classes))]
    train, val = [], []
    for c, samples in enumerate(by_class):
        if len(samples) < 2:
            raise PretrainedError(
                f"--val-split: class {full.classes[c]!r} has {len(samples)} "
                f"image(s); splitting needs at least 2"
            )
        k = min(max(1, round(fraction * len(samples))), len(samples) - 1)
        order = rng.permutation(len(samples))
        val += [samples[i] for i in sorted(order[:k])]
        train += [samples[i] for i in sorted(order[k:])]
    return _with_samples(full, train), _with_samples(full, val)


def _with_samples(folder, samples):
    part = copy.copy(folder)
    part.samples, part.targets = samples, [t for _, t in samples]
    return part
