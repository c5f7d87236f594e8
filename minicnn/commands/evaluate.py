"""``minicnn eval`` (loss, top-1/top-5, confusion matrix of a checkpoint on an image folder) and
``minicnn predict`` (top classes of image files)."""

from __future__ import annotations

import os
import sys

from ..backends import DEVICES
from . import UsageError, plain_warnings

__all__ = ["add_parser", "run_eval", "run_predict"]


def _positive(name, value, allow_zero=False):
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(
            f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}"
        )


def _bounded(name, value, high):
    _positive(name, value, allow_zero=name == "--workers")
    if value is not None and value > high:
        raise UsageError(f"{name} must be at most {high}, got {value}")


def _restore(args, command):
    from ..train import ConfigError, resolve_device, restore_model

    if not os.path.isfile(args.checkpoint):
        raise UsageError(f"{command}: no such checkpoint file {args.checkpoint!r}")
    try:
        device = resolve_device(args.device)
        model, meta = restore_model(args.checkpoint, device)
    except ConfigError as e:
        raise UsageError(f"{command}: {e}") from None
    return model, meta, device


def run_eval(args):
    from ..data import DataLoader
    from ..train import ConfigError, TrainConfig, eval_transform, evaluate, open_folder

    _bounded("--batch-size", args.batch_size, 65_536)
    _bounded("--workers", args.workers, 256)
    if not os.path.isdir(args.data):
        raise UsageError(f"eval: no such folder {args.data!r}")
    model, meta, device = _restore(args, "eval")
    folder = (
        os.path.join(args.data, "val")
        if os.path.isdir(os.path.join(args.data, "val"))
        else args.data
    )
    config, size = TrainConfig.from_json(meta["config"]), meta["image_size"]
    try:
        dataset = open_folder(
            folder, eval_transform(config, size, meta["mean"], meta["std"], args.ten_crop)
        )
    except ConfigError as e:
        raise UsageError(f"eval: {e}") from None
    if dataset.classes != meta["classes"]:
        raise UsageError(
            f"eval: the class folders of {folder!r} ({len(dataset.classes)}: "
            f"{', '.join(dataset.classes[:3])}, …) are not the checkpoint's "
            f"({len(meta['classes'])}: {', '.join(meta['classes'][:3])}, …)"
        )
    loader = DataLoader(dataset, args.batch_size, num_workers=args.workers, seed=0)
    from .confusion import Recorder, check_out_dir

    out_dir = check_out_dir(args.out, args.checkpoint)
    recorder = Recorder(model, meta["classes"])
    try:
        with plain_warnings():
            result = evaluate(model, recorder.wrap(loader), device, progress=sys.stderr.isatty())
    finally:
        loader.close()
        recorder.close()
    print(
        f"{folder}: {result['images']} images{' (ten-crop)' if args.ten_crop else ''}: loss "
        f"{result['loss']:.4f}, top-1 {100 * result['top1']:.2f}%, "
        f"top-5 {100 * result['top5']:.2f}%"
    )
    print("\n".join(["per-class accuracy:"] + recorder.write(out_dir)))
    print(f"wrote confusion.csv, confusion.png and per_class.csv in {out_dir}")
    return 0


def run_predict(args):
    from ..data import UnreadableImage, load_image
    from ..train import TrainConfig, eval_transform, predict

    _bounded("--top", args.top, 100_000)
    for path in args.images:
        if os.path.isdir(path):
            raise UsageError(
                f"predict: {path!r} is a folder; give image files (e.g. "
                f"{path}/*.png), or score a folder of class folders with "
                f"minicnn eval --data"
            )
        if not os.path.isfile(path):
            raise UsageError(f"predict: no such image file {path!r}")
    model, meta, device = _restore(args, "predict")
    config, size = TrainConfig.from_json(meta["config"]), meta["image_size"]
    transform = eval_transform(config, size, meta["mean"], meta["std"])
    for path in args.images:
        try:
            image = load_image(path)
        except UnreadableImage as e:
            raise UsageError(f"predict: cannot read {path!r} ({e.reason})") from None
        (top,) = predict(model, [image], transform, meta["classes"], device, k=args.top)
        print(path)
        for name, p in top:
            print(f"  {100 * p:6.2f}%  {name}")
    return 0


def add_parser(sub):
    p = sub.add_parser("eval", help="loss, top-1 and top-5 of a checkpoint on an image folder")
    p.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="best.npz or last.npz of a run"
    )
    p.add_argument(
        "--data", required=True, metavar="DIR", help="DIR/val/<class>/… or DIR/<class>/…"
    )
    p.add_argument(
        "--ten-crop",
        action="store_true",
        help="average the softmax over ten crops (corners, centre, and their mirror images)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", choices=("auto", *DEVICES), default="auto")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where confusion.csv, confusion.png and per_class"
        ".csv go (default: the checkpoint's folder)",
    )
    p.set_defaults(func=run_eval)
    p = sub.add_parser("predict", help="top-5 classes of images under a checkpoint")
    p.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="best.npz or last.npz of a run"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--device", choices=("auto", *DEVICES), default="auto")
    p.set_defaults(func=run_predict)
