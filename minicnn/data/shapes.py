"""The built-in dataset: ten classes of rendered shapes, written as PNG files (ImageFolder layout).

Each image is one shape (arrow, circle, crescent, cross, heart, ring, square, star, tee, triangle)
at a random position, size (radius 20-36% of the image) and rotation, in a random dark colour with a
shading gradient, over a random light background with texture (a two-colour gradient, low-frequency
blotches, sometimes stripes) and pixel noise. Position, size, rotation and colours vary so much that
no pixel and no colour says the class: a linear model on the raw pixels stays near chance (tests
check this), while a CNN, which learns edge detectors that work anywhere and combines them, gets
~97% in a few epochs. (The shape is always darker than its background: with random polarity too, a
small CNN needs several times more epochs, for no gain in what the dataset teaches.) Rendering is
NumPy only: every pixel is the mean of 4x4 samples of the shape's inside-test, so edges are
anti-aliased, and image ``i`` of a split depends only on (seed, split, i).

    root = minicnn.data.builtin_dataset()    # ~/.cache/minicnn/shapes32-… (or $MINICNN_CACHE/…)
    train = ImageFolder(os.path.join(root, "train"))

The first call generates the files (a few seconds); later calls find them. Generation writes into a
temporary folder beside the target and renames it into place once every file and the manifest are
written, so a killed generation never leaves a cache that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import numpy as np

__all__ = ["CLASSES", "builtin_dataset", "cache_root", "generate", "render"]

CLASSES = tuple("arrow circle crescent cross heart ring square star tee triangle".split())
VERSION = 1  # bump when rendering changes: the cache folder name carries it
SUPERSAMPLE = 4  # samples per pixel side for anti-aliasing
EXTENT = 1.4  # every shape lies within this radius of its centre (unit-disc units)
BG_DEPTH = 0.45  # background base colour: 1 - U(0, BG_DEPTH) per channel (light)
FG_LIGHT = 0.5  # shape colour: U(0, FG_LIGHT) per channel (dark)
TEXTURE = (0.15, (0.05, 0.2), (0.03, 0.08))  # gradient colour spread, blotch and stripe amplitudes
MANIFEST = "manifest.json"


def cache_root():
    """Where datasets are cached: $MINICNN_CACHE, else ~/.cache/minicnn (XDG_CACHE_HOME
    respected)."""
    if os.environ.get("MINICNN_CACHE"):
        return os.path.abspath(os.path.expanduser(os.environ["MINICNN_CACHE"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minicnn")


# ---- shapes: inside-tests in the shape's own frame (u, v), the shape filling about the unit disc
def _regular_polygon(u, v, sides, radius=1.0):
    """Inside a regular polygon with ``sides`` vertices on a circle of ``radius`` (one vertex
    up)."""
    inside = np.ones(u.shape, dtype=bool)
    apothem = radius * np.cos(np.pi / sides)
    for k in range(sides):
        a = 2 * np.pi * (k + 0.5) / sides + np.pi / 2  # outward normal of edge k
        inside &= u * np.cos(a) + v * np.sin(a) <= apothem
    return inside


def _star(u, v, points=5, inner=0.45):
    r, t = np.hypot(u, v), np.arctan2(v, u) - np.pi / 2
    sector = 2 * np.pi / points
    f = np.abs((t % sector) / sector - 0.5) * 2  # 1 at a tip, 0 between tips
    # straight edges between a tip (radius 1) and a notch (radius inner), in polar form
    half = sector / 2
    phi = (1 - f) * half  # angle from the tip direction
    tip, notch = np.array([1.0, 0.0]), inner * np.array([np.cos(half), np.sin(half)])
    d = notch - tip
    normal = np.array([-d[1], d[0]])  # edge line: normal . p = normal . tip
    return r * (normal[0] * np.cos(phi) + normal[1] * np.sin(phi)) >= normal @ tip  # both < 0


def _inside(name, u, v):
    au, av = np.abs(u), np.abs(v)
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "ring":
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= 0.55**2)
    if name == "triangle":
        return _regular_polygon(u, v, 3, 1.1)
    if name == "square":
        return (au <= 0.78) & (av <= 0.78)
    if name == "star":
        return _star(u, v)
    if name == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if name == "crescent":
        return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.8**2)
    if name == "arrow":
        shaft = (u >= -1.0) & (u <= 0.15) & (av <= 0.22)
        head = (u >= 0.15) & (u <= 1.0) & (av <= 0.75 * (1.0 - u) / 0.85)
        return shaft | head
    if name == "heart":
        x, y = u * 1.15, -v * 1.15 + 0.15  # the classic implicit heart, point down
        xx, q = x * x, x * x + y * y - 1
        return q * q * q <= xx * y * y * y
    if name == "tee":
        return ((au <= 0.95) & (v >= -0.95) & (v <= -0.45)) | (
            (au <= 0.26) & (v >= -0.95) & (v <= 0.95)
        )
    raise ValueError(f"unknown shape {name!r}")


# ---- rendering -----------------------------------------------------------------------------------
def _smooth_noise(rng, size, cells):
    """A (size, size) field in [0, 1]: random values on a (cells+1)^2 grid, bilinearly
    interpolated."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False) + cells / (2 * size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # (size, cells+1)
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]  # (size, size)


def _background(rng, size):
    """(size, size, 3) float in [0, 1]: gradient between two colours + blotches + stripes."""
    c0 = 1 - rng.random(3) * BG_DEPTH
    c1 = c0 + rng.normal(0, TEXTURE[0], 3)
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    g = ((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle)) / np.sqrt(0.5) * 0.5 + 0.5
    img = c0 + (c1 - c0) * g[..., None]
    blotch = _smooth_noise(rng, size, int(rng.integers(2, 6))) - 0.5
    img = img + blotch[..., None] * rng.uniform(*TEXTURE[1]) * rng.choice([-1.0, 1.0], size=3)
    if rng.random() < 0.5:
        freq, phase, ang = rng.uniform(2, 6), rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi)
        stripes = np.sin(2 * np.pi * freq * (x * np.cos(ang) + y * np.sin(ang)) + phase)
        img = img + stripes[..., None] * rng.uniform(*TEXTURE[2])
    return img


def _coverage(name, size, scale, cx, cy, angle):
    """(size, size) fraction of each pixel inside the shape (4x4 samples), computed in its bounding
    box."""
    alpha = np.zeros((size, size))
    reach = EXTENT * scale
    lo = [max(0, int(np.floor(c - reach))) for c in (cy, cx)]
    hi = [min(size, int(np.ceil(c + reach))) for c in (cy, cx)]
    if hi[0] <= lo[0] or hi[1] <= lo[1]:
        return alpha
    ty = (np.arange(lo[0] * SUPERSAMPLE, hi[0] * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - cy
    tx = (np.arange(lo[1] * SUPERSAMPLE, hi[1] * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - cx
    y, x = ty[:, None], tx[None, :]
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    u, v = x * c + y * s, y * c - x * s
    inside = _inside(name, u, v)
    h, w = hi[0] - lo[0], hi[1] - lo[1]
    alpha[lo[0] : hi[0], lo[1] : hi[1]] = inside.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(
        axis=(1, 3)
    )
    return alpha


def render(name, rng, size=32):
    """One (size, size, 3) uint8 image of shape ``name`` with every free choice drawn from
    ``rng``."""
    scale = size * rng.uniform(0.2, 0.36)  # radius of the unit disc in pixels
    margin = 0.75 * scale
    cx, cy = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(0, 2 * np.pi)
    alpha = _coverage(name, size, scale, cx, cy, angle)
    bg = _background(rng, size)
    fg = rng.random(3) * FG_LIGHT
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    shade = (xx * rng.normal() + yy * rng.normal()) * 0.25  # light falling across the shape
    fg_img = np.clip(fg + shade[..., None], 0, 1)
    img = bg * (1 - alpha[..., None]) + fg_img * alpha[..., None]
    img = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---- the cache -----------------------------------------------------------------------------------
def _split_rng(seed, split, index):
    return np.random.default_rng([seed, {"train": 0, "val": 1}[split], index])


def generate(root, train_per_class=500, val_per_class=100, size=32, seed=0):
    """Write the dataset to ``root``/{train,val}/<class>/<n>.png (``root`` must not exist yet).

    Image ``index`` of a split depends only on (seed, split, index): its class is index % 10.
    """
    from PIL import Image

    os.makedirs(root)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for name in CLASSES:
            os.makedirs(os.path.join(root, split, name))
        for index in range(per_class * len(CLASSES)):
            name = CLASSES[index % len(CLASSES)]
            pixels = render(name, _split_rng(seed, split, index), size)
            Image.fromarray(pixels).save(
                os.path.join(root, split, name, f"{index:06d}.png"), compress_level=1
            )
    manifest = {
        "name": "shapes",
        "version": VERSION,
        "classes": list(CLASSES),
        "size": size,
        "seed": seed,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
    }
    with open(os.path.join(root, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return root


def _complete(path):
    return os.path.isfile(os.path.join(path, MANIFEST))


def builtin_dataset(train_per_class=500, val_per_class=100, size=32, seed=0, cache=None, log=None):
    """The built-in dataset's root folder (train/ and val/ inside), generated on first use.

    ``cache`` defaults to ``cache_root()``. ``log`` (e.g. ``print``) is told when generation starts.
    """
    cache = cache or cache_root()
    name = f"shapes{size}-v{VERSION}-seed{seed}-{train_per_class}x{val_per_class}"
    final = os.path.join(cache, name)
    if _complete(final):
        return final
    os.makedirs(cache, exist_ok=True)
    if os.path.isdir(final):  # a folder without a manifest is not ours to trust: set it aside
        shutil.rmtree(final, ignore_errors=True)
    tmp = os.path.join(cache, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    if log is not None:
        log(
            f"generating the built-in dataset ({train_per_class * len(CLASSES)} train + "
            f"{val_per_class * len(CLASSES)} val images) in {final}"
        )
    try:
        generate(tmp, train_per_class, val_per_class, size, seed)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _complete(final):  # not a concurrent generator that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
