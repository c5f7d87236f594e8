"""A run's settings (``TrainConfig``) and what is built from them: device, data, transforms, model,
optimizer and learning-rate schedule."""

from __future__ import annotations

import dataclasses
import os

from .. import models
from ..backends import DEVICES, get_backend, is_available
from ..data import ImageFolder, builtin_dataset
from ..data import transforms as T
from ..optim import SGD, Adam, AdamW, lr_scheduler, param_groups

__all__ = [
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "data_root",
    "eval_transform",
    "image_size_for",
    "open_datasets",
    "open_folder",
    "resolve_device",
    "train_transform",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "multistep", "constant")
SGD_LR_PER_64 = 0.1  # SGD's default lr for a batch of 64, scaled linearly with the batch size
ADAM_LR = 1e-3  # Adam's and AdamW's default lr (Kingma & Ba's suggestion)


class ConfigError(ValueError):
    """A user mistake in a run's settings or inputs (missing folder, unknown model, …): one clear
    line."""


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on (stored in its checkpoints, so ``--resume`` needs nothing
    else)."""

    model: str = "resnet20"
    variant: str | None = None  # e.g. "paper"/"torchvision", CIFAR ResNets "A"/"B"/"plain"
    data: str | None = None  # root with train/ and val/; None: the built-in dataset
    val_split: float | None = None  # data is DIR/<class>/…: this share of each class is val
    weights: str | None = None  # start from these weights (.npz or a checkpoint)
    freeze: tuple = ()  # parameter-name prefixes that do not train
    epochs: int = 3
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.1 * batch_size / 64 for SGD, 1e-3 for Adam/AdamW
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = True
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    step_size: int = 30  # StepLR: epochs per decay
    milestones: tuple = (30, 60, 90)  # MultiStepLR: epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    aux_weight: float = 0.3  # GoogLeNet's auxiliary losses
    image_size: int | None = None  # None: 32 for the built-in dataset, else the model's default
    augment: str = "auto"  # "small" (pad + crop + flip), "imagenet" (RandomResizedCrop,
    # flip, PCA lighting), "none"; auto: small up to 64 pixels
    lighting: float = 0.1
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    out: str | None = None
    builtin_per_class: tuple = (500, 100)  # built-in dataset: train and val images per class
    progress: bool | None = None  # None: progress bars when stderr is a terminal
    sync_bn: bool = False  # with several processes: BatchNorm -> SyncBatchNorm
    amp: str | None = None  # mixed precision: "fp16" (with a GradScaler) or "bf16" (train/amp.py)

    def resolved_lr(self):
        """``lr``, or the default: SGD's scales linearly with the batch size (Goyal et al. 2017,
        "Accurate, Large Minibatch SGD", sec. 2.1), Adam's does not."""
        if self.lr is not None:
            return self.lr
        return SGD_LR_PER_64 * self.batch_size / 64 if self.optimizer == "sgd" else ADAM_LR

    def to_json(self):
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_json(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kwargs)


# ---- devices, data, model ------------------------------------------------------------------------
def resolve_device(device):
    """ "auto" -> "cuda" when a GPU works here, else "cpu"; other names are checked."""
    if device == "auto":
        return "cuda" if is_available("cuda") else "cpu"
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected auto, {', '.join(DEVICES)}")
    try:
        get_backend(device)
    except RuntimeError as e:
        raise ConfigError(str(e)) from None
    return device


def _augment_mode(config, size):
    return ("small" if size <= 64 else "imagenet") if config.augment == "auto" else config.augment


def train_transform(config, size, mean, std):
    mode = _augment_mode(config, size)
    if mode == "small":  # the ResNet paper's CIFAR augmentation, scaled: pad size/8, crop, flip
        ops = [
            T.Resize((size, size)),
            T.RandomCrop(size, padding=max(1, size // 8)),
            T.RandomHorizontalFlip(),
            T.ToFloatCHW(),
        ]
    elif mode == "imagenet":
        ops = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToFloatCHW()]
        if config.lighting:
            ops.append(T.Lighting(config.lighting))
    elif mode == "none":
        ops = [T.Resize((size, size)), T.ToFloatCHW()]
    else:
        raise ConfigError(
            f"unknown augment {config.augment!r}; expected auto, small, imagenet or none"
        )
    return T.Compose(ops + [T.Normalize(mean, std)])


def eval_transform(config, size, mean, std, ten_crop=False):
    small = _augment_mode(config, size) != "imagenet"
    if small:
        ops = [T.Resize((size, size))]
        if (
            ten_crop
        ):  # the training crops came from the image padded by size/8: average over ten of them
            ops += [T.CenterCrop(size + 2 * max(1, size // 8)), T.TenCrop(size)]
    else:
        ops = [T.Resize(round(size / 0.875)), T.TenCrop(size) if ten_crop else T.CenterCrop(size)]
    return T.Compose(ops + [T.ToFloatCHW(), T.Normalize(mean, std)])


def data_root(config, log=print):
    """The folder with train/ and val/: ``config.data`` or the built-in dataset (generated if
    needed)."""
    if config.data is None:
        train_n, val_n = config.builtin_per_class
        return builtin_dataset(train_n, val_n, size=32, seed=0, log=log)
    root = os.path.abspath(os.path.expanduser(config.data))
    if not os.path.isdir(root):
        raise ConfigError(f"--data: no such folder {config.data!r}")
    missing = [s for s in ("train", "val") if not os.path.isdir(os.path.join(root, s))]
    if config.val_split is not None:
        if len(missing) < 2:
            raise ConfigError(
                f"--val-split splits a folder of class folders; {config.data!r} has "
                f"train/ or val/ already (drop --val-split)"
            )
        return root
    if missing:
        raise ConfigError(
            f"--data: {config.data!r} has no {' and no '.join(s + '/' for s in missing)} "
            f"folder (expected {config.data}/train/<class>/… and {config.data}/val/<class>/…; "
            f"for one folder of class folders add --val-split 0.1)"
        )
    return root


def open_folder(path, transform=None):
    """ImageFolder(path), its errors (no such folder, no images) as ConfigError."""
    try:
        return ImageFolder(path, transform)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None


def build_model(name, num_classes, variant=None):
    if name not in models.list_models():
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(models.list_models())}")
    try:
        kwargs = models.variant_kwargs(name, variant) if variant is not None else {}
    except ValueError as e:
        raise ConfigError(f"--variant: {e}") from None
    return models.get_model(name, num_classes=num_classes, **kwargs)


def open_datasets(config, root):
    """(train, val) ImageFolders: root/train and root/val, or with ``val_split`` a seeded split
    of the class folders of root itself (``minicnn.finetune.split_image_folder``)."""
    if config.val_split is None:
        return open_folder(os.path.join(root, "train")), open_folder(os.path.join(root, "val"))
    from ..finetune import PretrainedError, split_image_folder

    try:
        return split_image_folder(root, config.val_split, seed=config.seed)
    except (PretrainedError, OSError, ValueError) as e:
        raise ConfigError(str(e)) from None


def image_size_for(config, model):
    if config.image_size is not None:
        return config.image_size
    return 32 if config.data is None else model.default_input_size[-1]


# ---- optimizer and schedule ----------------------------------------------------------------------
def build_optimizer(config, model):
    groups = param_groups(model, config.weight_decay, config.no_decay_bn_bias)
    lr = config.resolved_lr()
    if config.optimizer == "sgd":
        return SGD(
            groups,
            lr=lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    if config.optimizer == "adam":
        return Adam(groups, lr=lr)
    if config.optimizer == "adamw":
        return AdamW(groups, lr=lr)
    raise ConfigError(
        f"unknown optimizer {config.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}"
    )


def build_scheduler(config, optimizer, steps_per_epoch):
    """A per-batch schedule: linear warm-up over ``warmup_epochs``, then the chosen decay."""
    total = config.epochs * steps_per_epoch
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    rest = total - warmup
    if config.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, rest))
    elif config.schedule == "step":
        main = lr_scheduler.StepLR(
            optimizer, step_size=max(1, config.step_size * steps_per_epoch), gamma=config.gamma
        )
    elif config.schedule == "multistep":
        main = lr_scheduler.MultiStepLR(
            optimizer, [m * steps_per_epoch - warmup for m in config.milestones], gamma=config.gamma
        )
    elif config.schedule == "constant":
        main = lr_scheduler.StepLR(optimizer, step_size=max(1, total), gamma=1.0)
    else:
        raise ConfigError(
            f"unknown schedule {config.schedule!r}; expected one of {', '.join(SCHEDULES)}"
        )
    if warmup <= 0:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])
