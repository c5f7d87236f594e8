"""``minicnn train``: its options (``add_parser``: every flag is defined there), their checks, and
the run (``minicnn.train.train``), on one process or, with ``--nproc N``, under mpiexec."""

from __future__ import annotations

import dataclasses
import difflib

from ..backends import DEVICES
from . import UsageError, plain_warnings

__all__ = ["add_parser", "run", "without_nproc"]


# numeric flags whose help is what they set and TrainConfig's default
_NUMBERS = (
    ("--epochs", int, ""),
    ("--batch-size", int, ""),
    ("--warmup-epochs", float, ""),
    ("--weight-decay", float, ""),
    ("--momentum", float, "SGD momentum, Nesterov"),
    ("--label-smoothing", float, ""),
    ("--workers", int, "data loader processes"),
    ("--seed", int, ""),
)


def add_parser(sub):
    p = sub.add_parser(
        "train",
        help="train a model on image folders (default: the built-in dataset)",
        description="Train a model. Without --data it trains on the built-in dataset (10 "
        "classes of rendered shapes, generated on first use under "
        "$MINICNN_CACHE or ~/.cache/minicnn).",
    )
    from ..train import TrainConfig

    d = TrainConfig()
    p.add_argument("--model", help=f"a name from minicnn.models.list_models() (default {d.model})")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="a folder with train/<class>/… and val/<class>/… (default: the built-in dataset)",
    )
    for flag, type_, what in _NUMBERS:
        default = getattr(d, flag[2:].replace("-", "_"))
        text = f"{what} (default {default})" if what else f"default {default}"
        p.add_argument(flag, type=type_, help=text)
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
    p.add_argument(
        "--decay-bn-bias",
        dest="no_decay_bn_bias",
        action="store_const",
        const=False,
        help="apply weight decay to biases and BatchNorm parameters too (default: exempt them)",
    )
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
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/MODEL-DATE-TIME)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last.npz "
        "(with --epochs N: extend it to N epochs)",
    )
    _add_finetune_options(p)
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
    p.set_defaults(func=run)


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


_RESUME_KEEPS = (
    "device",
    "workers",
    "progress",
    "epochs",
)  # --resume may change; the rest is the run's


def _check_train_numbers(config):
    """Every numeric option finite and in its range (one line naming the flag, exit 2)."""
    from ..train import ConfigError
    from ..train.validate import check_config

    try:
        check_config(config, cli=True)
    except ConfigError as e:
        raise UsageError(f"train: {e}") from None


def _train_config(args):
    from ..train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}  # every option that is a setting
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    for k in ("freeze", "builtin_per_class"):  # nargs lists -> the config's tuples
        if k in given:
            given[k] = tuple(given[k])
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
    from ..models import list_models

    return list_models()


def without_nproc(argv):
    """The command line minus ``--nproc N`` / ``--nproc=N`` (what each rank runs)."""
    from ..distributed.launch import without_option

    return without_option(argv, "--nproc")


def _launch_nproc(args):
    """``--nproc N``: run this command on N processes under mpiexec; its exit status."""
    from ..distributed import training
    from ..distributed.launch import launched_by_mpi

    if args.nproc < 1:
        raise UsageError(f"train: --nproc must be >= 1, got {args.nproc}")
    if args.nproc == 1 or launched_by_mpi():
        return None
    try:
        return training.launch(without_nproc(args.argv), args.nproc)
    except RuntimeError as e:  # no mpiexec: names the extra to install
        raise UsageError(f"train: --nproc {args.nproc}: {e}") from None


def run(args):
    if args.nproc is not None:
        status = _launch_nproc(args)
        if status is not None:
            return status
    config = _train_config(args)
    _check_train_numbers(config)
    from ..train import ConfigError, train

    try:
        with plain_warnings():
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
            f"nothing to do: the run in {result['run_dir']} already finished its "
            f"{result['epochs']} epochs"
            + (f" (val top-1 {100 * val:.1f}%)" if val is not None else "")
        )
        return 0
    print(
        f"done: val top-1 {100 * result['val_top1']:.1f}% after {result['epochs']} epochs "
        f"(best {100 * result['best_val_top1']:.1f}% at epoch {result['best_epoch']}), "
        f"{result['seconds']:.0f} s on {result['device']}; run folder: {result['run_dir']}"
    )
    return 0
