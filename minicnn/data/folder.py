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
Only regular files are opened (a FIFO named ``x.png`` would block ``open`` forever). Symbolic links
are followed only while they stay inside their class folder; a link that leads out of it (which
would relabel another class's images) or back to a folder that contains it (a loop) is an error
naming the link. A class folder without images is an error too, as in torchvision.

16-bit images are scaled to 8 bits (value * 255 / 65535) and float images are taken as [0, 1],
never clipped. Images over ``MAX_IMAGE_PIXELS`` pixels are refused before they are decoded, and
Pillow's decompression-bomb check is on (its warning is an error here).
"""

from __future__ import annotations

import os
import stat
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = [
    "IMG_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ImageFolder",
    "UnreadableDataset",
    "UnreadableImage",
    "find_classes",
    "load_image",
]

MAX_IMAGE_PIXELS = 1 << 26  # 67 megapixels (8192 x 8192): what a training image may decode to

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImage(Exception):
    """An image file that Pillow cannot decode (truncated, corrupt, not an image)."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class UnreadableDataset(ValueError):
    """Every image of a dataset (or of an epoch) was unreadable."""


def _open_regular(path):
    """A binary file object for ``path`` if it is a regular file; never blocks (O_NONBLOCK)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise UnreadableImage(path, f"{type(e).__name__}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnreadableImage(path, "not a regular file (a FIFO, device or folder is never read)")
    return os.fdopen(fd, "rb")


def _to_uint8(img):
    """HWC uint8 RGB from a 16-bit ("I;16*", "I") or float ("F") single-channel image, else None."""
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.float64) * (255 / 65535)
    elif img.mode == "F":
        a = np.nan_to_num(np.asarray(img).astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0) * 255
    else:
        return None
    gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def load_image(path: Union[str, os.PathLike], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The image at ``path`` as an (H, W, 3) uint8 RGB array; UnreadableImage if it can't be
    decoded, is not a regular file, or has more than ``max_pixels`` pixels."""
    from PIL import Image

    with _open_regular(path) as f:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # e.g. palette images with transparency, EXIF oddities
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    w, h = img.size
                    if w * h > max_pixels:
                        raise UnreadableImage(
                            path,
                            f"{w}x{h} is more than {max_pixels} pixels (a decompression bomb?)",
                        )
                    if img.mode == "P" and "transparency" in img.info:
                        img = img.convert("RGBA")
                    wide = _to_uint8(img)
                    return wide if wide is not None else np.asarray(img.convert("RGB"))
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as e:
            raise UnreadableImage(path, f"{type(e).__name__}: {e}") from None


def find_classes(root: Union[str, os.PathLike]) -> Tuple[List[str], Dict[str, int]]:
    """(sorted class folder names, {name: index}) of ``root``; FileNotFoundError/ValueError if
    none."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such folder: {root!r}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"{root!r} has no class folders (expected {root}/<class>/<image files>)")
    return classes, {c: i for i, c in enumerate(classes)}


def _is_image(name):
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _follow(entry, top, ancestors):
    """The real path of a symbolic link inside class folder ``top``; ValueError for a link that
    leads out of it or to a folder that contains it (a loop)."""
    target = os.path.realpath(entry.path)
    if not _inside(target, top):
        raise ValueError(
            f"{entry.path!r} is a symbolic link out of its class folder (to {target!r}); "
            f"links are followed only inside the class folder"
        )
    if target in ancestors:
        raise ValueError(
            f"{entry.path!r} is a symbolic link loop (to {target!r}, which contains it)"
        )
    return target


def _scan(folder):
    """Regular image files under ``folder`` (recursively; links followed only inside it), sorted."""
    top = os.path.realpath(folder)
    found, stack = [], [(folder, (top,))]
    while stack:
        directory, ancestors = stack.pop()
        subdirs = []
        for e in sorted(os.scandir(directory), key=lambda e: e.name):
            if e.name.startswith("."):
                continue
            real = _follow(e, top, ancestors) if e.is_symlink() else os.path.realpath(e.path)
            if os.path.isdir(real):
                subdirs.append((e.path, ancestors + (real,)))
            elif _is_image(e.name) and _is_regular(real):
                found.append(e.path)
        stack += reversed(subdirs)
    return found


def _is_regular(path):
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # a dangling link
        return False


class ImageFolder:
    """``dataset[i]`` is ``(transform(image), class_index)`` for the i-th image file under ``root``.

    Attributes as torchvision's: ``classes``, ``class_to_idx``, ``samples`` (list of
    (path, class_index)), ``targets``.
    """

    def __init__(
        self,
        root: Union[str, os.PathLike],
        transform: Optional[Callable] = None,
        target_transform: Optional[Callable] = None,
        loader: Callable[[str], Any] = load_image,
    ) -> None:
        self.root = os.fspath(root)
        self.classes, self.class_to_idx = find_classes(self.root)
        found = [_scan(os.path.join(self.root, c)) for c in self.classes]
        self.samples = [(path, i) for i, paths in enumerate(found) for path in paths]
        if not self.samples:
            raise ValueError(
                f"{self.root!r} has class folders ({', '.join(self.classes[:5])}"
                f"{', …' if len(self.classes) > 5 else ''}) but no image files in them "
                f"(extensions {', '.join(IMG_EXTENSIONS)})"
            )
        empty = [os.path.join(self.root, c) for c, paths in zip(self.classes, found) if not paths]
        if empty:
            raise ValueError(
                f"class folder {empty[0]!r} has no image files"
                + (f" (nor {len(empty) - 1} more)" if len(empty) > 1 else "")
                + "; remove it or add images (torchvision refuses it too)"
            )
        self.targets = [t for _, t in self.samples]
        self.transform, self.target_transform, self.loader = transform, target_transform, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, Any]:
        path, target = self.samples[index]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self):
        return (
            f"ImageFolder(root={self.root!r}, {len(self)} images, {len(self.classes)} classes, "
            f"transform={self.transform!r})"
        )
