"""``minicnn visualize KIND``: PNG figures of what a network sees and learns (``minicnn.viz``).

KIND is ``filters`` (the first conv layer's filters), ``features`` (feature maps of chosen
layers), ``saliency``, ``gradcam`` (for a chosen or the predicted class) or ``stats`` (per-layer
activation histograms and gradient norms over a batch; ``--compare`` adds more models). The
network comes from a training checkpoint (``--checkpoint``) or is built by name (``--model
NAME[:VARIANT]``, randomly initialised with ``--seed`` or loaded from ``--weights FILE.npz``,
e.g. converted torchvision weights). Images: ``--image FILE`` (repeatable), else shapes rendered
like the built-in dataset's.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["add_parser", "run"]

KINDS = ("filters", "features", "saliency", "gradcam", "stats")


def _fail(message):
    from . import UsageError

    raise UsageError(f"visualize: {message}")


# ---- the model ----------------------------------------------------------------------------------
def _from_checkpoint(args):
    from ..train import ConfigError, restore_model

    if not os.path.isfile(args.checkpoint):
        _fail(f"--checkpoint: no such file {args.checkpoint!r}")
    try:
        model, meta = restore_model(args.checkpoint, args.device)
    except ConfigError as e:
        _fail(f"--checkpoint: {e}")
    return model, meta["classes"], meta["image_size"], (meta["mean"], meta["std"])


def _build(spec, args, option="--model"):
    """(model, class names, image size, (mean, std)) of ``--model NAME[:VARIANT]``."""
    from .. import manual_seed, models
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    name, _, variant = spec.partition(":")
    if name.lower() not in models.list_models():
        _fail(f"{option}: unknown model {name!r}; choose from {', '.join(models.list_models())}")
    try:
        kwargs = models.variant_kwargs(name.lower(), variant) if variant else {}
    except ValueError as e:
        _fail(f"{option}: {e}")
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    manual_seed(args.seed)
    model = models.get_model(name.lower(), **kwargs)
    if args.weights:
        _load_weights(model, args.weights)
    classes = [str(i) for i in range(_num_classes(model))]
    return (
        model.to(args.device).eval(),
        classes,
        model.default_input_size[1],
        (IMAGENET_MEAN, IMAGENET_STD),
    )


def _num_classes(model):
    from ..nn import Linear

    return [m for m in model.modules() if isinstance(m, Linear)][-1].out_features


def _load_weights(model, path):
    from ..io import load_npz
    from ..models.convert import load_torchvision_weights

    if not os.path.isfile(path):
        _fail(f"--weights: no such file {path!r}")
    try:
        if "meta.json" in load_npz(path):
            from ..train.checkpoint import load_checkpoint

            model.load_state_dict(load_checkpoint(path)[1])
        else:
            load_torchvision_weights(model, path)
    except (KeyError, ValueError, RuntimeError, OSError) as e:
        _fail(f"--weights: {path!r} does not load: {str(e).splitlines()[0]}")


# ---- the images ---------------------------------------------------------------------------------
def _images(args, size, count):
    """(uint8 (N, size, size, 3) images for display, their labels or None)."""
    from ..data import UnreadableImage, load_image
    from ..data import transforms as T
    from ..data.shapes import CLASSES, render

    prep = T.Compose([T.Resize(size), T.CenterCrop(size)])
    if args.image:
        images = []
        for path in args.image:
            if not os.path.isfile(path):
                _fail(f"--image: no such image file {path!r}")
            try:
                images.append(prep(load_image(path)))
            except UnreadableImage as e:
                _fail(f"--image: cannot read {path!r} ({e.reason})")
        return np.stack(images), None
    labels = np.arange(count) % len(CLASSES)
    rng = np.random.default_rng(args.seed)
    return np.stack([render(CLASSES[c], rng, size) for c in labels]), labels


def _batch(images, norm, device):
    from .. import tensor
    from ..data import transforms as T

    x = T.Normalize(*norm)(T.ToFloatCHW()(images))
    return tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


# ---- the figures --------------------------------------------------------------------------------
def _target(args, classes):
    if args.target is None:
        return None
    if args.target in classes:
        return classes.index(args.target)
    if args.target.isdigit() and int(args.target) < len(classes):
        return int(args.target)
    _fail(f"--target: {args.target!r} is neither a class name nor an index below {len(classes)}")


def _check_layers(model, names):
    from .. import viz

    known = viz.layer_names(model)
    for n in names:
        if n not in known:
            close = [k for k in known if k.startswith(n) or n in k][:4]
            hint = f" (e.g. {', '.join(close)})" if close else "; `minicnn summary NAME` lists them"
            _fail(f"--layer: no layer {n!r} in this model{hint}")


def _filters(model, args, **_):
    from .. import viz

    name, conv = viz.first_conv(model)
    K, C, R, S = conv.weight.shape
    viz.save_filter_figure(args.out, conv.weight, f"{name}: {K} filters of {C}x{R}x{S}")
    print(f"{name}: {K} filters of {C}x{R}x{S}; wrote {args.out}")


def _features(model, args, x, **_):
    from .. import viz

    layers = args.layer or [viz.first_conv(model)[0], viz.last_spatial_layer(model, x[:1])]
    _check_layers(model, layers)
    maps = viz.feature_maps(model, x[:1], layers)
    for name, m in maps.items():
        print(f"{name}: {m.shape[0]} of its channels, {m.shape[1]}x{m.shape[2]}")
    viz.save_feature_figure(args.out, maps)
    print(f"wrote {args.out}")


def _maps(model, args, x, images, classes, kind, **_):
    from .. import no_grad, viz

    target = _target(args, classes)
    if kind == "gradcam":
        _check_layers(model, args.layer[:1] if args.layer else [])
        maps, target, layer = viz.grad_cam(model, x, target, args.layer[0] if args.layer else None)
        print(f"Grad-CAM at layer {layer}")
    else:
        maps, target = viz.saliency(model, x, target)
    with no_grad():
        probs = model(x).softmax(1).numpy()
    titles = []
    for i, p in enumerate(probs):
        top, t = int(p.argmax()), int(target[i])
        titles.append(f"class {classes[t]} ({100 * p[t]:.1f}%)")
        print(
            f"image {i}: predicted {classes[top]} ({100 * p[top]:.1f}%), map of class {classes[t]}"
        )
    viz.save_map_figure(args.out, images, maps, titles, overlay=kind == "gradcam")
    print(f"wrote {args.out}")


def _stats_lines(label, stats, rows=10):
    """A few evenly spaced layers and the first-to-last gradient ratio of one model."""
    from ..nn import Linear  # noqa: F401  (the table names the layer types)

    pick = sorted(set(np.linspace(0, len(stats) - 1, min(rows, len(stats))).round().astype(int)))
    out = [
        f"{label}: {len(stats)} conv/linear layers",
        f"  {'#':>4}  {'layer':<24}{'act mean':>10}{'act std':>10}{'||dL/dW||':>12}"
        f"{'||dL/dy||':>12}",
    ]
    for i in pick:
        s = stats[i]
        out.append(
            f"  {i + 1:>4}  {s.name:<24}{s.act_mean:>10.3f}{s.act_std:>10.3f}"
            f"{s.weight_grad_norm:>12.3g}{s.output_grad_norm:>12.3g}"
        )
    convs = [s for s in stats if s.type == "Conv2d"] or stats
    first, last = convs[0], convs[-1]
    a, b = first.output_grad_norm, last.output_grad_norm
    out.append(f"  ||dL/dy|| first conv / last conv: {a:.3g} / {b:.3g} = {a / b:.3g}")
    return out


def _stats(model, args, x, labels, **_):
    from .. import viz

    runs = {}
    specs = [(args.model or os.path.basename(args.checkpoint), model)]
    specs += [(spec, _build(spec, args, "--compare")[0]) for spec in args.compare or ()]
    for label, m in specs:
        n = _num_classes(m)
        y = (
            labels
            if labels is not None
            else np.random.default_rng(args.seed).integers(0, n, len(x))
        ) % n
        runs[label] = viz.layer_statistics(m, x, y.astype(np.int64))
        print("\n".join(_stats_lines(label, runs[label])))
    viz.save_stats_figure(args.out, runs)
    print(f"wrote {args.out}")


_DRAW = {
    "filters": _filters,
    "features": _features,
    "saliency": _maps,
    "gradcam": _maps,
    "stats": _stats,
}


def _check_args(args):
    import importlib.util

    from ..backends import is_available

    if (args.checkpoint is None) == (args.model is None):
        _fail("give one of --checkpoint FILE or --model NAME[:VARIANT]")
    if args.checkpoint and (args.weights or args.num_classes):
        _fail("--weights and --num-classes go with --model, not --checkpoint")
    if args.compare and args.kind != "stats":
        _fail("--compare goes with stats")
    for name in ("batch", "image_size", "num_classes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            _fail(f"--{name.replace('_', '-')} must be positive, got {value}")
    args.out = args.out or f"{args.kind}.png"
    directory = os.path.dirname(os.path.abspath(args.out))
    if not args.out.lower().endswith(".png"):
        _fail(f"--out writes a PNG; give a FILE.png, got {args.out!r}")
    if not os.path.isdir(directory):
        _fail(f"--out: cannot write {args.out!r}: no directory {directory!r}")
    if not is_available(args.device):
        _fail(f"--device {args.device} is not available here")
    for module in ("matplotlib", "PIL"):
        if importlib.util.find_spec(module) is None:
            _fail(f"needs {module} (pip install matplotlib Pillow)")


def run(args):
    _check_args(args)
    if args.checkpoint:
        model, classes, size, norm = _from_checkpoint(args)
    else:
        model, classes, size, norm = _build(args.model, args)
    size = args.image_size or size
    min_size = getattr(model, "min_input_size", 1)
    if size < min_size:
        _fail(f"--image-size {size} is below this model's minimum {min_size}")
    count = args.batch or (16 if args.kind == "stats" else 1)
    images, labels = _images(args, size, count)
    x = _batch(images, norm, args.device)
    try:
        _DRAW[args.kind](
            model, args, x=x, images=images, labels=labels, classes=classes, kind=args.kind
        )
    except (KeyError, ValueError) as e:
        text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        _fail(str(text).removeprefix("viz: "))
    return 0


def add_parser(sub):
    p = sub.add_parser(
        "visualize",
        help="PNG figures: filters, feature maps, saliency, Grad-CAM, "
        "activation/gradient statistics",
        description=__doc__.split("\n\n")[1].replace("``", "'"),
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--checkpoint", metavar="FILE", help="best.npz or last.npz of a training run")
    p.add_argument("--model", metavar="NAME[:VARIANT]", help="build this model instead")
    p.add_argument(
        "--weights",
        metavar="FILE.npz",
        help="with --model: converted weights or a checkpoint to load",
    )
    p.add_argument("--num-classes", type=int, help="with --model: classifier size")
    p.add_argument(
        "--image",
        action="append",
        metavar="FILE",
        help="an input image (repeatable; default: rendered built-in shapes)",
    )
    p.add_argument(
        "--image-size", type=int, help="input side (default: the checkpoint's or the model's own)"
    )
    p.add_argument("--batch", type=int, help="rendered images to use (default 1; 16 for stats)")
    p.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="features: layers to show (repeatable); gradcam: the layer (default: "
        "the last one with a map larger than 1x1)",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="saliency/gradcam: class name or index (default: the predicted class)",
    )
    p.add_argument(
        "--compare",
        action="append",
        metavar="NAME[:VARIANT]",
        help="stats: also this model, in the same figure (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="weight init and rendered images")
    p.add_argument("--device", choices=("cpu", "emu", "cuda"), default="cpu")
    p.add_argument("--out", metavar="FILE.png", help="default KIND.png")
    p.set_defaults(func=run)
