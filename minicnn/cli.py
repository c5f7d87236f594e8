"""The ``minicnn`` command line (also ``python -m minicnn``)."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import json
import os
import sys
import warnings

from .backends import DEVICES


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _parse_input(text):
    """'3x224x224' (or '224', meaning 3x224x224) -> (3, 224, 224)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise UsageError(
            f"summary: --input must look like 3x224x224 (positive integers joined by "
            f"'x'), got {text!r}"
        )
    return (3, dims[0], dims[0]) if len(dims) == 1 else dims


def _build_model(name, args):
    """The model NAME or NAME:VARIANT, built without drawing random weights."""
    from . import models
    from .summary import skip_init

    name, _, variant = name.partition(":")
    if name.lower() not in models.list_models():
        close = difflib.get_close_matches(name.lower(), models.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"summary: unknown model {name!r}{hint}; choose from {', '.join(models.list_models())}"
        )
    kwargs = {}
    if variant or args.variant is not None:
        try:
            kwargs = models.variant_kwargs(name.lower(), variant or args.variant)
        except ValueError as e:
            raise UsageError(f"summary: --variant: {e}") from None
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    try:
        with skip_init():  # a summary needs shapes, not values: skip drawing random weights
            return models.get_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"summary: cannot build {name} with {kwargs}: {e}") from None


def _summarise(name, size, args):
    from .summary import SummaryError, summary

    model = _build_model(name, args)
    try:
        return summary(model, size, name=name, depth=args.depth)
    except SummaryError as e:
        raise UsageError(f"summary: {e}") from None


def _cmd_summary(args):
    if bool(args.name) == bool(args.compare):
        raise UsageError("summary: give one model NAME, or --compare NAME [NAME ...]")
    if args.plot and not args.compare:
        raise UsageError("summary: --plot goes with --compare")
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"summary: --depth must be positive, got {args.depth}")
    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(f"summary: --num-classes must be positive, got {args.num_classes}")
    if args.plot:
        _check_plot_target(args.plot)
    size = _parse_input(args.input) if args.input else None
    if args.name:
        s = _summarise(args.name, size, args)
        print(s.to_json() if args.json else s)
        return 0
    from .summary import compare_rows, compare_table, plot_compare

    summaries = [_summarise(name, size, args) for name in args.compare]
    print(json.dumps(compare_rows(summaries), indent=2) if args.json else compare_table(summaries))
    if args.plot:
        plot_compare(summaries, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _check_plot_target(path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"summary: cannot write the plot {path!r}: no directory {directory!r}")
    if not path.lower().endswith(".png"):
        raise UsageError(f"summary: --plot writes a PNG; give a FILE.png, got {path!r}")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("summary: --plot needs matplotlib (pip install matplotlib)")


def _cmd_convert_weights(args):
    if not os.path.isfile(args.src):
        raise UsageError(f"convert-weights: no such file {args.src!r}")
    directory = os.path.dirname(os.path.abspath(args.dst))
    if not os.path.isdir(directory):
        raise UsageError(f"convert-weights: cannot write {args.dst!r}: no directory {directory!r}")
    if args.model is not None:
        from .models import list_models

        if args.model.lower() not in list_models():
            raise UsageError(
                f"convert-weights: unknown model {args.model!r}; choose from "
                f"{', '.join(list_models())}"
            )
    from .models.convert import ConversionError, main_convert

    try:
        return main_convert(args.src, args.dst, model=args.model, compress=args.compress)
    except ConversionError as e:
        raise UsageError(f"convert-weights: {e}") from None


# ---- train / eval / predict
# -------------------------------------------------------------------------
_RESUME_KEEPS = (
    "device",
    "workers",
    "progress",
    "epochs",
)  # --resume may change; the rest is the run's


def _positive(name, value, allow_zero=False):
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(
            f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}"
        )


def _check_train_numbers(config):
    """Every numeric option finite and in its range (one line naming the flag, exit 2)."""
    from .train import ConfigError
    from .train.validate import check_config

    try:
        check_config(config, cli=True)
    except ConfigError as e:
        raise UsageError(f"train: {e}") from None


def _bounded(name, value, high):
    _positive(name, value, allow_zero=name == "--workers")
    if value is not None and value > high:
        raise UsageError(f"{name} must be at most {high}, got {value}")


def _train_config(args):
    from .train import TrainConfig

    given = {
        f: getattr(args, f)
        for f in (
            "model",
            "data",
            "epochs",
            "batch_size",
            "lr",
            "optimizer",
            "schedule",
            "image_size",
            "device",
            "workers",
            "out",
            "seed",
            "weight_decay",
            "momentum",
            "warmup_epochs",
            "label_smoothing",
            "augment",
            "progress",
            "no_decay_bn_bias",
            "sync_bn",
            "amp",
            "variant",
            "weights",
            "val_split",
        )
    }
    if args.freeze is not None:
        given["freeze"] = tuple(args.freeze)
    if args.builtin_per_class is not None:
        given["builtin_per_class"] = tuple(args.builtin_per_class)
    given = {k: v for k, v in given.items() if v is not None}
    if args.resume is not None:
        extra = sorted(k for k in given if k not in _RESUME_KEEPS)
        if extra:
            raise UsageError(
                f"train: --resume continues a run with the settings it was started with; "
                f"drop {', '.join('--' + k.replace('_', '-') for k in extra)} (only --device, "
                f"--workers, --no-progress and --epochs, to extend it, may change)"
            )
    config = TrainConfig(**given)
    if config.model.lower() not in _model_names():
        close = difflib.get_close_matches(config.model.lower(), _model_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"train: unknown model {config.model!r}{hint}; choose from {', '.join(_model_names())}"
        )
    config.model = config.model.lower()
    return config


def _model_names():
    from .models import list_models

    return list_models()


@contextlib.contextmanager
def _plain_warnings():
    """Show warnings as 'minicnn: warning: …' lines (e.g. the loader's count of unreadable images)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"minicnn: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _without_nproc(argv):
    """The command line minus ``--nproc N`` / ``--nproc=N`` (what each rank runs)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _launch_nproc(args):
    """``--nproc N``: run this command on N processes under mpiexec; its exit status."""
    from .distributed import training
    from .distributed.launch import launched_by_mpi

    if args.nproc < 1:
        raise UsageError(f"train: --nproc must be >= 1, got {args.nproc}")
    if args.nproc == 1 or launched_by_mpi():
        return None
    try:
        return training.launch(_without_nproc(args.argv), args.nproc)
    except RuntimeError as e:  # no mpiexec: names the extra to install
        raise UsageError(f"train: --nproc {args.nproc}: {e}") from None


def _cmd_train(args):
    if args.nproc is not None:
        status = _launch_nproc(args)
        if status is not None:
            return status
    config = _train_config(args)
    _check_train_numbers(config)
    from .train import ConfigError, train

    try:
        with _plain_warnings():
            result = train(
                config, resume=args.resume, epochs=args.epochs if args.resume is not None else None
            )
    except ConfigError as e:
        raise UsageError(f"train: {e}") from None
    except KeyboardInterrupt:
        return 130
    if not result.get("main_process", True):
        return 0  # rank 0 reports for the job
    if result["already_finished"]:
        val = result["val_top1"]
        print(
            f"nothing to do: the run in {result['run_dir']} already finished its {result['epochs']} epochs"
            + (f" (val top-1 {100 * val:.1f}%)" if val is not None else "")
        )
        return 0
    print(
        f"done: val top-1 {100 * result['val_top1']:.1f}% after {result['epochs']} epochs "
        f"(best {100 * result['best_val_top1']:.1f}% at epoch {result['best_epoch']}), "
        f"{result['seconds']:.0f} s on {result['device']}; run folder: {result['run_dir']}"
    )
    return 0


def _restore(args, command):
    from .train import ConfigError, resolve_device, restore_model

    if not os.path.isfile(args.checkpoint):
        raise UsageError(f"{command}: no such checkpoint file {args.checkpoint!r}")
    try:
        device = resolve_device(args.device)
        model, meta = restore_model(args.checkpoint, device)
    except ConfigError as e:
        raise UsageError(f"{command}: {e}") from None
    return model, meta, device


def _cmd_eval(args):
    from .data import DataLoader
    from .train import ConfigError, TrainConfig, eval_transform, evaluate, open_folder

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
    from .commands.confusion import Recorder, check_out_dir

    out_dir = check_out_dir(args.out, args.checkpoint)
    recorder = Recorder(model, meta["classes"])
    try:
        with _plain_warnings():
            result = evaluate(model, recorder.wrap(loader), device, progress=sys.stderr.isatty())
    finally:
        loader.close()
        recorder.close()
    print(
        f"{folder}: {result['images']} images{' (ten-crop)' if args.ten_crop else ''}: loss "
        f"{result['loss']:.4f}, top-1 {100 * result['top1']:.2f}%, top-5 {100 * result['top5']:.2f}%"
    )
    print("\n".join(["per-class accuracy:"] + recorder.write(out_dir)))
    print(f"wrote confusion.csv, confusion.png and per_class.csv in {out_dir}")
    return 0


def _cmd_predict(args):
    from .data import UnreadableImage, load_image
    from .train import TrainConfig, eval_transform, predict

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


def _add_train_parser(sub):
    p = sub.add_parser(
        "train",
        help="train a model on image folders (default: the built-in dataset)",
        description="Train a model. Without --data it trains on the built-in dataset (10 "
        "classes of rendered shapes, generated on first use under "
        "$MINICNN_CACHE or ~/.cache/minicnn).",
    )
    from .train import TrainConfig

    d = TrainConfig()
    p.add_argument("--model", help=f"a name from minicnn.models.list_models() (default {d.model})")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="a folder with train/<class>/… and val/<class>/… (default: the built-in dataset)",
    )
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument(
        "--lr",
        type=float,
        help="peak learning rate (default: 0.1 x batch-size / 64 for sgd, 1e-3 for adam/adamw)",
    )
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help=f"default {d.optimizer}")
    p.add_argument(
        "--schedule",
        choices=("cosine", "step", "multistep", "constant"),
        help=f"after --warmup-epochs of linear warm-up (default {d.schedule})",
    )
    p.add_argument("--warmup-epochs", type=float, help=f"default {d.warmup_epochs}")
    p.add_argument("--weight-decay", type=float, help=f"default {d.weight_decay}")
    p.add_argument("--momentum", type=float, help=f"SGD momentum, Nesterov (default {d.momentum})")
    p.add_argument(
        "--decay-bn-bias",
        dest="no_decay_bn_bias",
        action="store_const",
        const=False,
        help="apply weight decay to biases and BatchNorm parameters too (default: exempt them)",
    )
    p.add_argument("--label-smoothing", type=float, help=f"default {d.label_smoothing}")
    p.add_argument(
        "--image-size",
        type=int,
        help="train/eval resolution (default: 32 for the built-in "
        "dataset, else the model's own, e.g. 224)",
    )
    p.add_argument(
        "--augment",
        choices=("auto", "small", "imagenet", "none"),
        help="small: pad+crop+flip; imagenet: RandomResizedCrop+flip+PCA lighting "
        "(default auto: small up to 64 pixels)",
    )
    p.add_argument(
        "--device", choices=("auto", *DEVICES), help="default auto: cuda when a GPU works"
    )
    p.add_argument("--workers", type=int, help=f"data loader processes (default {d.workers})")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/MODEL-DATE-TIME)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.npz "
        "(with --epochs N: extend it to N epochs)",
    )
    _add_finetune_options(p)
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument(
        "--nproc",
        type=int,
        help="data-parallel processes: starts mpiexec -n NPROC "
        "(needs pip install 'minicnn[distributed]'); --batch-size is the global batch",
    )
    p.add_argument(
        "--sync-bn",
        dest="sync_bn",
        action="store_const",
        const=True,
        help="with several processes, BatchNorm statistics over the global batch",
    )
    p.add_argument(
        "--amp",
        choices=("fp16", "bf16"),
        help="mixed precision: autocast to float16 (with loss scaling) or bfloat16",
    )
    p.add_argument(
        "--builtin-per-class",
        type=int,
        nargs=2,
        metavar=("TRAIN", "VAL"),
        help=f"built-in dataset size: images per class (default {d.builtin_per_class[0]} "
        f"{d.builtin_per_class[1]})",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
    p.set_defaults(func=_cmd_train)


def _add_finetune_options(p):
    p.add_argument(
        "--variant",
        help="the model's variant: paper or torchvision (alexnet, googlenet, "
        "ImageNet ResNets), A, B or plain (CIFAR ResNets)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="start from these weights: a converted .npz "
        "or a checkpoint; a new classifier head when "
        "the class count differs",
    )
    p.add_argument(
        "--freeze",
        nargs="+",
        metavar="PREFIX",
        help="do not train parameters whose names start with these (e.g. conv1 layer1)",
    )
    p.add_argument(
        "--val-split",
        type=float,
        metavar="FRACTION",
        help="--data is one folder of class folders: hold out this share of each class "
        "for validation (seeded by --seed)",
    )


def _add_eval_predict_parsers(sub):
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
    p.set_defaults(func=_cmd_eval)
    p = sub.add_parser("predict", help="top-5 classes of images under a checkpoint")
    p.add_argument(
        "--checkpoint", required=True, metavar="FILE", help="best.npz or last.npz of a run"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--device", choices=("auto", *DEVICES), default="auto")
    p.set_defaults(func=_cmd_predict)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn", description="minicnn: a from-scratch CNN engine"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from .commands import gradcheck as gradcheck_command, models_table, visualize

    gradcheck_command.add_parser(sub)
    models_table.add_parser(sub)
    visualize.add_parser(sub)
    p = sub.add_parser(
        "summary", help="per-layer table of a model: params, MACs, memory, receptive field"
    )
    p.add_argument(
        "name",
        nargs="?",
        help="a model name from minicnn.models.list_models() (NAME:VARIANT also works)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME",
        help="side-by-side table of these models (NAME or NAME:VARIANT)",
    )
    p.add_argument(
        "--input",
        metavar="CxHxW",
        help="input size, e.g. 3x224x224 or 224 (default: the model's own)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--num-classes", type=int, help="build the model(s) with this many classes")
    p.add_argument("--variant", help="build the model(s) with this variant (paper, torchvision)")
    p.add_argument(
        "--plot", metavar="FILE.png", help="with --compare: bar charts of params and MACs"
    )
    p.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="collapse modules nested deeper than N into one row each (as torchinfo)",
    )
    p.set_defaults(func=_cmd_summary)
    p = sub.add_parser(
        "convert-weights", help="convert a PyTorch state_dict (.pth) to a NumPy .npz"
    )
    p.add_argument("src", help="the .pth file (torch.save of a state_dict; needs PyTorch)")
    p.add_argument("dst", help="the .npz file to write")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="also check that the weights load into this model (torchvision form)",
    )
    p.add_argument("--compress", action="store_true", help="write a compressed .npz")
    p.set_defaults(func=_cmd_convert_weights)
    _add_train_parser(sub)
    _add_eval_predict_parsers(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"minicnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
