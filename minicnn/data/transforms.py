"""Image transforms (torchvision.transforms' names and parameters), composable with ``Compose``.

Images are NumPy arrays: HWC uint8 as ``load_image`` returns them, until ``ToFloatCHW`` turns them
into CHW float32 in [0, 1]; ``Lighting`` and ``Normalize`` work on that. ``TenCrop`` returns a stack
(10, H, W, C), and the transforms after it apply to every crop (they accept leading dimensions).

Random transforms draw from the generator that ``DataLoader`` installs for each sample (seeded by
the loader's seed, the epoch and the sample's index, so augmentation is reproducible whatever the
number of workers) or, outside a loader, from ``minicnn.random.generator()``:

    >>> t = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloatCHW(), Normalize()])
    >>> with sample_generator(np.random.default_rng(0)):
    ...     x = t(image)                       # (3, 32, 32) float32
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Callable, Iterable, Sequence, Tuple, Union

import numpy as np

from .. import random as _random

Size = Union[int, Sequence[int]]

__all__ = [
    "CenterCrop",
    "Compose",
    "IMAGENET_MEAN",
    "IMAGENET_PCA_EIGVAL",
    "IMAGENET_PCA_EIGVEC",
    "IMAGENET_STD",
    "Lighting",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "TenCrop",
    "ToFloatCHW",
    "sample_generator",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Principal components of ImageNet's RGB pixel values in [0, 1] (eigenvalues and eigenvectors as
# columns), as in fb.resnet.torch and torchvision's reference scripts.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

_sample_rng = None


@contextlib.contextmanager
def sample_generator(rng):
    """Make the random transforms draw from ``rng`` (a numpy Generator) inside the ``with``
    block."""
    global _sample_rng
    previous, _sample_rng = _sample_rng, rng
    try:
        yield rng
    finally:
        _sample_rng = previous


def _rng():
    return _sample_rng if _sample_rng is not None else _random.generator()


def _pair(size, name):
    if isinstance(size, numbers.Integral):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name}: size must be a positive int or (height, width), got {size!r}")
    return size


def _crop(img, top, left, h, w, fill=0):
    """img[top:top+h, left:left+w] (HWC), with ``fill`` where the window leaves the image."""
    H, W = img.shape[:2]
    if top >= 0 and left >= 0 and top + h <= H and left + w <= W:
        return img[top : top + h, left : left + w]
    out = np.full((h, w) + img.shape[2:], fill, dtype=img.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = img[y0:y1, x0:x1]
    return out


def _resize(img, size, box=None):
    """HWC uint8 ``img`` (or its ``box`` = (left, top, right, bottom)) resized to ``size`` = (h, w)
    with Pillow's anti-aliased bilinear filter."""
    from PIL import Image

    h, w = size
    if box is None and img.shape[:2] == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR, box=box))


class Compose:
    def __init__(self, transforms: Iterable[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        return "Compose(" + "".join(f"\n    {t!r}," for t in self.transforms) + "\n)"


class _Repr:
    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Resize(_Repr):
    """``size`` int: the shorter side becomes ``size`` (aspect kept); (h, w): exactly that size."""

    def __init__(self, size: Size) -> None:
        self.size = size if isinstance(size, numbers.Integral) else _pair(size, "Resize")

    def __call__(self, img):
        H, W = img.shape[:2]
        if isinstance(self.size, tuple):
            return _resize(img, self.size)
        s = int(self.size)
        size = (s, max(1, round(W * s / H))) if H <= W else (max(1, round(H * s / W)), s)
        return _resize(img, size)


class CenterCrop(_Repr):
    """The central ``size`` window (zero-padded where the image is smaller)."""

    def __init__(self, size: Size) -> None:
        self.size = _pair(size, "CenterCrop")

    def __call__(self, img):
        (h, w), (H, W) = self.size, img.shape[:2]
        return _crop(img, int(round((H - h) / 2)), int(round((W - w) / 2)), h, w)


class RandomCrop(_Repr):
    """A random ``size`` window of the image padded by ``padding`` pixels of ``fill`` on every side
    (the CIFAR augmentation of the ResNet paper: pad 4, crop 32); ``pad_if_needed`` pads a smaller
    image."""

    def __init__(
        self, size: Size, padding: int = 0, pad_if_needed: bool = False, fill: float = 0
    ) -> None:
        self.size, self.padding = _pair(size, "RandomCrop"), int(padding or 0)
        self.pad_if_needed, self.fill = pad_if_needed, fill

    def __call__(self, img):
        (h, w), (H, W), p = self.size, img.shape[:2], self.padding
        ph = max(p, (h - H + 1) // 2) if self.pad_if_needed and H + 2 * p < h else p
        pw = max(p, (w - W + 1) // 2) if self.pad_if_needed and W + 2 * p < w else p
        if H + 2 * ph < h or W + 2 * pw < w:
            raise ValueError(
                f"RandomCrop: crop {h}x{w} is larger than the padded image "
                f"{H + 2 * ph}x{W + 2 * pw}"
            )
        rng = _rng()
        top = int(rng.integers(0, H + 2 * ph - h + 1)) - ph
        left = int(rng.integers(0, W + 2 * pw - w + 1)) - pw
        return _crop(img, top, left, h, w, self.fill)


class RandomHorizontalFlip(_Repr):
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img):
        return img[:, ::-1] if _rng().random() < self.p else img


class RandomResizedCrop(_Repr):
    """A random window covering ``scale`` of the area with aspect ratio in ``ratio`` (log-uniform),
    resized to ``size`` (the Inception / ResNet ImageNet augmentation; torchvision's sampling:
    10 tries, then the central crop of the closest allowed aspect ratio)."""

    def __init__(
        self,
        size: Size,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size, self.scale, self.ratio = (
            _pair(size, "RandomResizedCrop"),
            tuple(scale),
            tuple(ratio),
        )

    def get_params(self, H, W, rng):
        """(top, left, h, w) of the window."""
        area = H * W
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= W and 0 < h <= H:
                return int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w
        in_ratio = W / H
        if in_ratio < min(self.ratio):
            w, h = W, int(round(W / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = H, int(round(H * max(self.ratio)))
        else:
            h, w = H, W
        return (H - h) // 2, (W - w) // 2, h, w

    def __call__(self, img):
        top, left, h, w = self.get_params(*img.shape[:2], _rng())
        return _resize(img, self.size, box=(left, top, left + w, top + h))


class TenCrop(_Repr):
    """The four corners and the centre, and the same five of the flipped image: (10, h, w, C).

    AlexNet's test-time augmentation (sec. 4.1): the network's softmax outputs on the ten patches
    are
    averaged. ``vertical_flip`` flips top-bottom instead of left-right.
    """

    def __init__(self, size: Size, vertical_flip: bool = False) -> None:
        self.size, self.vertical_flip = _pair(size, "TenCrop"), vertical_flip

    def __call__(self, img):
        (h, w), (H, W) = self.size, img.shape[:2]
        if h > H or w > W:
            raise ValueError(f"TenCrop: crop {h}x{w} is larger than the image {H}x{W}")
        flipped = img[::-1] if self.vertical_flip else img[:, ::-1]
        corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), ((H - h) // 2, (W - w) // 2)]
        return np.stack([im[t : t + h, l : l + w] for im in (img, flipped) for t, l in corners])


class ToFloatCHW(_Repr):
    """(…, H, W, C) uint8 -> (…, C, H, W) float32 in [0, 1] (what torchvision's ToTensor does)."""

    def __call__(self, img):
        if img.ndim == 2:
            img = img[..., None]
        chw = np.ascontiguousarray(np.moveaxis(img, -1, -3))
        return np.multiply(chw, np.float32(1 / 255), dtype=np.float32)


class Normalize(_Repr):
    """(x - mean) / std per channel of a (…, C, H, W) float array (ImageNet's statistics by
    default)."""

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: std must be positive, got {self.std}")
        self._shift = np.asarray(self.mean, np.float32)[:, None, None]
        self._scale = (1 / np.asarray(self.std, np.float32))[:, None, None]

    def __call__(self, x):
        return (x - self._shift) * self._scale


class Lighting(_Repr):
    """AlexNet's PCA colour augmentation (sec. 4.1): add eigvec @ (alpha * eigval) to every pixel.

    alpha ~ N(0, alphastd^2) per principal component, drawn once per image, so the whole image
    shifts along the principal axes of natural RGB variation (intensity and colour of the
    illumination). Works on CHW float images in [0, 1] (after ToFloatCHW, before Normalize);
    ``eigval``/``eigvec`` default to ImageNet's (see ``pca`` to compute them for another dataset).
    """

    def __init__(
        self,
        alphastd: float = 0.1,
        eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        self.alphastd = float(alphastd)
        self._eigval = np.asarray(eigval, np.float64)
        self._eigvec = np.asarray(eigvec, np.float64)

    def offset(self, rng):
        """The RGB shift (3,) for one image."""
        alpha = rng.normal(0.0, self.alphastd, 3)
        return (self._eigvec * (alpha * self._eigval)).sum(
            axis=1
        )  # eigvec @ (alpha * eigval), no BLAS

    def __call__(self, x):
        if self.alphastd == 0:
            return x
        return x + self.offset(_rng()).astype(x.dtype)[:, None, None]

    @staticmethod
    def pca(images):
        """(eigval, eigvec) of the RGB covariance of CHW float images (an iterable), largest
        first."""
        pixels = np.concatenate([np.asarray(x, np.float64).reshape(3, -1).T for x in images])
        eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
        order = np.argsort(eigval)[::-1]
        return eigval[order], eigvec[:, order]


# ---- torchvision's names for the same transforms -------------------------------------------------
# Compose, Resize, CenterCrop, RandomCrop, RandomHorizontalFlip, RandomResizedCrop, TenCrop and
# Normalize already carry them (same arguments and semantics on HWC uint8 / CHW float arrays).
ToTensor = ToFloatCHW  # HWC uint8 -> CHW float32 in [0, 1], as torchvision.transforms.ToTensor
__all__ += ["ToTensor"]
