"""ImageFolder: a dataset of images stored one class per subfolder (torchvision's layout).

    root/n01440764/ILSVRC2012_val_00000293.JPEG        class 0 ("n01440764")
    root/n01443537/…                                   class 1, …

Class folders are sorted by name; their index is the label. Files with an image extension (JPEG,
PNG, BMP, GIF, TIFF, WebP, PPM) are the samples, found recursively inside each class folder. Images
are decoded with Pillow and converted to RGB whatever their mode (grayscale, palette, CMYK, with an
alpha channel, which is dropped as torchvision does), and handed to the transform as HWC uint8 NumPy
arrays.

A file that cannot be decoded raises ``UnreadableImage``; the ``DataLoader`` catches it, leaves the
sample out of its batch and warns once, counting the skipped files, so one corrupt JPEG never stops
a training run.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "UnreadableImage", "find_classes", "load_image"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImage(Exception):
    """An image file that Pillow cannot decode (truncated, corrupt, not an image)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def load_image(path):
    """The image at ``path`` as an (H, W, 3) uint8 RGB array; UnreadableImage if it can't be decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. palette images with transparency, EXIF oddities
            with Image.open(path) as img:
                if img.mode == "P" and "transparency" in img.info:
                    img = img.convert("RGBA")
                return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UnreadableImage(path, f"{type(e).__name__}: {e}") from None


def find_classes(root):
    """(sorted class folder names, {name: index}) of ``root``; FileNotFoundError/ValueError if none."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root!r}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"{root!r} has no class folders (expected {root}/<class>/<image files>)")
    return classes, {c: i for i, c in enumerate(classes)}


def _scan(folder):
    """Image files under ``folder`` (recursively, following links), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith(".")]
    return found


class ImageFolder:
    """``dataset[i]`` is ``(transform(image), class_index)`` for the i-th image file under ``root``.

    Attributes as torchvision's: ``classes``, ``class_to_idx``, ``samples`` (list of
    (path, class_index)), ``targets``.
    """

    def __init__(self, root, transform=None, target_transform=None, loader=load_image):
        self.root = os.fspath(root)
        self.classes, self.class_to_idx = find_classes(self.root)
        self.samples = [(path, i) for i, c in enumerate(self.classes)
                        for path in _scan(os.path.join(self.root, c))]
        if not self.samples:
            raise ValueError(f"{self.root!r} has class folders ({', '.join(self.classes[:5])}"
                             f"{', …' if len(self.classes) > 5 else ''}) but no image files in them "
                             f"(extensions {', '.join(IMG_EXTENSIONS)})")
        self.targets = [t for _, t in self.samples]
        self.transform, self.target_transform, self.loader = transform, target_transform, loader

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self):
        return (f"ImageFolder(root={self.root!r}, {len(self)} images, {len(self.classes)} classes, "
                f"transform={self.transform!r})")
