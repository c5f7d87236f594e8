"""See inside a network: filters, feature maps, saliency, Grad-CAM, activation/gradient statistics.

    from minicnn import models, viz
    model = models.resnet20().eval()
    x = minicnn.tensor(batch)                           # (N, 3, H, W), normalised
    viz.filter_grid(viz.first_conv(model)[1].weight)    # (rows, cols) image of the first filters
    viz.feature_maps(model, x, ["layer1", "layer3"])    # {name: (C, h, w) array} for image 0
    sal, cls = viz.saliency(model, x)                   # |d score / d input|, max over channels
    cam, cls, layer = viz.grad_cam(model, x)            # Grad-CAM at the last spatial layer
    stats = viz.layer_statistics(model, x, labels)      # per weight layer: activations, grad norms
    viz.save_stats_figure("stats.png", {"resnet20": stats})

Saliency (Simonyan, Vedaldi & Zisserman 2014): the gradient of the class score (the logit, before
softmax) with respect to the input pixels; the map shows its largest magnitude over the colour
channels. Grad-CAM (Selvaraju et al. 2017): with A the activations (K, h, w) of a layer and y_c the
class score, the weights a_k = mean over h, w of dy_c / dA_k give ReLU(sum_k a_k A_k), upsampled
bilinearly to the input and scaled to [0, 1]. Layer statistics run one training-mode forward and
backward of the cross-entropy over a batch: for every conv/linear layer, in forward order, the
distribution of its outputs and the norms of the gradients of its weight and of its output. In a
deep plain network these norms shrink towards the input; a residual network's shortcuts carry the
gradient back undiminished (He et al. 2016).

Plots use matplotlib's Agg backend (no display needed) and are written atomically.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from . import functional as F
from .autograd import no_grad
from .nn import Conv2d, Linear
from .tensor import Tensor, tensor

__all__ = [
    "LayerStats",
    "feature_maps",
    "filter_grid",
    "first_conv",
    "grad_cam",
    "layer_names",
    "layer_statistics",
    "saliency",
    "save_feature_figure",
    "save_filter_figure",
    "save_map_figure",
    "save_stats_figure",
]


# ---- filters ------------------------------------------------------------------------------------
def first_conv(model):
    """(name, module) of the first Conv2d the forward pass runs (registration order)."""
    for name, m in model.named_modules():
        if isinstance(m, Conv2d):
            return name, m
    raise ValueError(f"viz: {type(model).__name__} has no Conv2d layer")


def filter_grid(weight, cols=None, pad=1):
    """(K, C, R, S) filters -> one image (rows·(R+pad)-pad, cols·(S+pad)-pad[, 3]) in [0, 1].

    Each filter is scaled to [0, 1] on its own (its smallest weight black, largest white); three
    input channels are shown as RGB, any other count as the mean over channels (gray).
    """
    w = weight.numpy() if isinstance(weight, Tensor) else np.asarray(weight)
    K, C, R, S = w.shape
    tiles = w.transpose(0, 2, 3, 1) if C == 3 else w.mean(axis=1)[..., None]
    lo = tiles.min(axis=(1, 2, 3), keepdims=True)
    span = tiles.max(axis=(1, 2, 3), keepdims=True) - lo
    tiles = (tiles - lo) / np.where(span > 0, span, 1)
    cols = cols or int(np.ceil(np.sqrt(K)))
    rows = -(-K // cols)
    grid = np.ones((rows * (R + pad) - pad, cols * (S + pad) - pad, tiles.shape[-1]))
    for k in range(K):
        r, c = divmod(k, cols)
        grid[r * (R + pad) : r * (R + pad) + R, c * (S + pad) : c * (S + pad) + S] = tiles[k]
    return grid if C == 3 else grid[..., 0]


# ---- forward hooks ------------------------------------------------------------------------------
def layer_names(model):
    """Every module name of ``model`` (what ``layers=`` and ``layer=`` accept)."""
    return [n for n, _ in model.named_modules() if n]


def _module(model, name):
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = [n for n in modules if n and (n.startswith(name) or name in n)][:5]
        hint = f" (e.g. {', '.join(close)})" if close else ""
        raise KeyError(f"viz: {type(model).__name__} has no layer {name!r}{hint}")
    return modules[name]


def _capture(model, x, names, keep_grad=False):
    """Run ``model(x)``; returns (logits, {name: the module's last output Tensor}), the dict in
    the order the modules first ran."""
    seen, handles = {}, []

    def hook_for(name):
        def hook(module, args, out):
            if isinstance(out, Tensor):
                if keep_grad and out.requires_grad:
                    out.retain_grad()
                seen[name] = out

        return hook

    try:
        for name in names:
            handles.append(_module(model, name).register_forward_hook(hook_for(name)))
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return _logits(out), seen


def _logits(out):
    """GoogLeNet's training output is a (logits, aux2, aux1) tuple: the logits come first."""
    return out if isinstance(out, Tensor) else out[0]


def feature_maps(model, x, layers, max_channels=16):
    """{layer: (min(C, max_channels), h, w) array} of the first image's activations there."""
    with no_grad():
        _, seen = _capture(model, x, layers)
    missing = [n for n in layers if n not in seen or seen[n].ndim != 4]
    if missing:
        raise ValueError(f"viz: layer(s) {', '.join(missing)} produced no (N, C, H, W) output")
    return {n: seen[n].numpy()[0, :max_channels] for n in layers}


# ---- saliency and Grad-CAM ----------------------------------------------------------------------
def _targets(logits, target):
    predicted = logits.numpy().argmax(axis=1)
    if target is None:
        return predicted
    target = np.broadcast_to(np.asarray(target, dtype=np.int64), predicted.shape).copy()
    n = logits.shape[1]
    if target.min() < 0 or target.max() >= n:
        raise ValueError(f"viz: target class must be in [0, {n}), got {target.tolist()}")
    return target


def _score(logits, target):
    """Sum over images of each image's target logit (one backward gives every image's gradient)."""
    onehot = np.zeros(logits.shape, dtype=logits.dtype)
    onehot[np.arange(len(target)), target] = 1
    return (logits * tensor(onehot, device=logits.device)).sum()


def saliency(model, x, target=None):
    """(maps (N, H, W) = max over channels of |d logit_target / d x|, target classes (N,))."""
    x = tensor(x.numpy(), device=x.device, requires_grad=True)
    logits = _logits(model(x))
    target = _targets(logits, target)
    _score(logits, target).backward()
    return np.abs(x.grad.numpy()).max(axis=1), target


def last_spatial_layer(model, x):
    """Name of the last leaf module whose output is a map larger than 1x1 (Grad-CAM's default)."""
    leaves = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    with no_grad():
        order = []
        handles = [
            _module(model, n).register_forward_hook(
                lambda m, a, out, n=n: (
                    order.append(n)
                    if isinstance(out, Tensor) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1
                    else None
                )
            )
            for n in leaves
        ]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
    if not order:
        raise ValueError("viz: no layer of this model outputs a map larger than 1x1")
    return order[-1]


def grad_cam(model, x, target=None, layer=None):
    """(cams (N, H, W) in [0, 1], target classes (N,), layer name) — Selvaraju et al. 2017."""
    layer = layer or last_spatial_layer(model, x)
    logits, seen = _capture(model, x, [layer], keep_grad=True)
    A = seen.get(layer)
    if A is None or A.ndim != 4:
        raise ValueError(f"viz: layer {layer!r} produced no (N, C, H, W) output")
    target = _targets(logits, target)
    _score(logits, target).backward()
    acts, grads = A.numpy().astype(np.float64), A.grad.numpy().astype(np.float64)
    weights = grads.mean(axis=(2, 3), keepdims=True)  # a_k: (N, K, 1, 1)
    cams = np.maximum((weights * acts).sum(axis=1), 0)  # (N, h, w)
    H, W = x.shape[2:]
    out = np.stack([_upsample(c, H, W) for c in cams])
    peak = out.max(axis=(1, 2), keepdims=True)
    return out / np.where(peak > 0, peak, 1), target, layer


def _upsample(a, H, W):
    from PIL import Image

    return np.asarray(
        Image.fromarray(a.astype(np.float32), mode="F").resize((W, H), Image.BILINEAR),
        dtype=np.float64,
    )


# ---- activation and gradient statistics ---------------------------------------------------------
@dataclass
class LayerStats:
    """One conv/linear layer of a forward + backward pass over a batch."""

    name: str
    type: str
    activations: np.ndarray  # a sample (at most 20,000 values) of the layer's outputs
    act_mean: float
    act_std: float
    weight_grad_norm: float  # ||dL/dW|| (Frobenius)
    output_grad_norm: float  # ||dL/d output|| over the batch


def layer_statistics(model, x, y, sample=20000, seed=0):
    """:class:`LayerStats` of every Conv2d/Linear in forward order, from one training-mode
    forward and backward of the mean cross-entropy of ``model(x)`` against labels ``y``."""
    names = [n for n, m in model.named_modules() if isinstance(m, (Conv2d, Linear))]
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        for p in model.parameters():
            p.grad = None
        logits, seen = _capture(model, x, names, keep_grad=True)
        y = y if isinstance(y, Tensor) else tensor(np.asarray(y), device=logits.device)
        F.cross_entropy(logits, y).backward()
    finally:
        for m, mode in modes:
            m.training = mode
    rng = np.random.default_rng(seed)
    modules = dict(model.named_modules())
    return [_layer_stats(n, modules[n], out, rng, sample) for n, out in seen.items()]


def _layer_stats(name, module, out, rng, sample):
    values = out.numpy().reshape(-1).astype(np.float64)
    picked = values if values.size <= sample else rng.choice(values, sample, replace=False)
    wgrad = module.weight.grad
    return LayerStats(
        name,
        type(module).__name__,
        picked,
        float(values.mean()),
        float(values.std()),
        float(np.linalg.norm(wgrad.numpy())) if wgrad is not None else 0.0,
        float(np.linalg.norm(out.grad.numpy())) if out.grad is not None else 0.0,
    )


# ---- figures ------------------------------------------------------------------------------------
def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _save(fig, path):
    """Write ``fig`` as a PNG to ``path`` through a temporary file (never a partial file)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".viz-", suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_filter_figure(path, weight, title=""):
    grid = filter_grid(weight)
    fig = _figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.5))
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def save_feature_figure(path, maps, cols=8):
    """One block of rows per layer, one panel per channel."""
    rows = [(-(-len(m) // cols)) for m in maps.values()]
    fig = _figure(figsize=(1.4 * cols, 1.5 * sum(rows) + 0.3 * len(maps)))
    axes = fig.subplots(sum(rows), cols, squeeze=False)
    r0 = 0
    for (name, m), n in zip(maps.items(), rows):
        for i, ax in enumerate(axes[r0 : r0 + n].reshape(-1)):
            ax.set_axis_off()
            if i < len(m):
                ax.imshow(m[i], cmap="viridis", interpolation="nearest")
                ax.set_title(f"{name} [{i}]" if i == 0 else f"[{i}]", fontsize=7)
        r0 += n
    _save(fig, path)


def save_map_figure(path, images, maps, titles, overlay=False):
    """Per image: the input and its map (a heatmap, or laid over the image when ``overlay``)."""
    fig = _figure(figsize=(4.4, 2.2 * len(images)))
    axes = fig.subplots(len(images), 2, squeeze=False)
    for (ax_img, ax_map), img, m, title in zip(axes, images, maps, titles):
        ax_img.imshow(img)
        ax_img.set_title(title, fontsize=8)
        if overlay:
            ax_map.imshow(img)
            ax_map.imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        else:
            ax_map.imshow(m, cmap="hot")
        for ax in (ax_img, ax_map):
            ax.set_axis_off()
    _save(fig, path)


def save_stats_figure(path, runs, bins=60):
    """``runs``: {label: [LayerStats]}. Top: activation histograms per layer (one row of each
    model, depth on x); bottom: weight- and output-gradient norms per layer, log scale."""
    fig = _figure(figsize=(10, 3.2 * len(runs) + 3.5))
    axes = fig.subplots(len(runs) + 1, 1, squeeze=False)[:, 0]
    for ax, (label, stats) in zip(axes, runs.items()):
        lo = min(np.percentile(s.activations, 0.5) for s in stats)
        hi = max(np.percentile(s.activations, 99.5) for s in stats)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        dens = np.stack([np.histogram(s.activations, edges, density=True)[0] for s in stats], 1)
        ax.imshow(
            np.log1p(dens),
            aspect="auto",
            origin="lower",
            cmap="magma",
            extent=(0.5, len(stats) + 0.5, edges[0], edges[-1]),
        )
        ax.set_title(f"{label}: distribution of each conv/linear layer's outputs (log density)")
        ax.set_xlabel("layer (forward order)")
        ax.set_ylabel("activation")
    ax = axes[-1]
    for label, stats in runs.items():
        depth = np.arange(1, len(stats) + 1)
        ax.semilogy(
            depth, [s.weight_grad_norm for s in stats], marker=".", label=f"{label} ||dL/dW||"
        )
        ax.semilogy(depth, [s.output_grad_norm for s in stats], ls="--", label=f"{label} ||dL/dy||")
    ax.set_xlabel("layer (forward order)")
    ax.set_title("gradient norms per layer (one batch)")
    ax.legend(fontsize=8)
    _save(fig, path)
