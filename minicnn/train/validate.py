"""Checks of everything a run reads: its settings (from the command line or a checkpoint), the
``meta.json`` of a checkpoint, and metrics rows. Each failure is one line naming the value."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from .config import CheckpointError, ConfigError, TrainConfig

__all__ = ["MAX_IMAGE_SIZE", "check_config", "check_meta", "check_metrics_row"]

MAX_IMAGE_SIZE = 1024  # training resolution; 4x ImageNet's usual 224
MAX_SEED = 2**63 - 1

CHOICES = {
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("cosine", "step", "multistep", "constant"),
    "augment": ("auto", "small", "imagenet", "none"),
    "device": ("auto", "cpu", "emu", "cuda"),
}
# field: (integer?, lowest, highest, lowest allowed itself?); None (where allowed) skips the check
RANGES = {
    "epochs": (True, 1, 100_000, True),
    "batch_size": (True, 1, 65_536, True),
    "lr": (False, 0, 10, False),
    "momentum": (False, 0, 1, True),
    "weight_decay": (False, 0, 1, True),
    "warmup_epochs": (False, 0, 100_000, True),
    "step_size": (True, 1, 100_000, True),
    "gamma": (False, 0, 1, False),
    "label_smoothing": (False, 0, 1, True),
    "aux_weight": (False, 0, 100, True),
    "image_size": (True, 8, MAX_IMAGE_SIZE, True),
    "lighting": (False, 0, 10, True),
    "workers": (True, 0, 256, True),
    "seed": (True, 0, MAX_SEED, True),
}
OPEN_ABOVE = {"momentum", "label_smoothing"}  # these must stay below their highest value
OPTIONAL = {"lr", "image_size", "data", "out", "progress", "variant", "weights", "val_split"}
AMP_CHOICES = (None, "fp16", "bf16")  # --amp (minicnn/train/amp.py)


def _flag(name, cli):
    return "--" + name.replace("_", "-") if cli else name


def _check_number(name, value, cli):
    integer, low, high, low_ok = RANGES[name]
    label = _flag(name, cli)
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if integer else numbers.Real
    ):
        raise ConfigError(f"{label} must be {kind}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, got {value}")
    high_ok = name not in OPEN_ABOVE
    if (
        value < low
        or (value == low and not low_ok)
        or value > high
        or (value == high and not high_ok)
    ):
        interval = f"{'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"
        raise ConfigError(f"{label} must be in {interval}, got {value}")


def check_config(config: TrainConfig, cli=False):
    """Raise ConfigError unless every setting has its type and lies in its range (names as CLI
    flags when ``cli``)."""
    for name in RANGES:
        value = getattr(config, name)
        if not (value is None and name in OPTIONAL):
            _check_number(name, value, cli)
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(
                f"{_flag(name, cli)} must be one of {', '.join(allowed)}, "
                f"got {getattr(config, name)!r}"
            )
    if config.warmup_epochs >= config.epochs:
        raise ConfigError(
            f"{_flag('warmup_epochs', cli)} ({config.warmup_epochs}) must be less than "
            f"{_flag('epochs', cli)} ({config.epochs})"
        )
    _check_sequences(config, cli)
    _check_finetune(config, cli)
    for name in ("model", "data", "out", "variant", "weights"):
        value = getattr(config, name)
        if not (isinstance(value, str) or (value is None and name in OPTIONAL)):
            raise ConfigError(f"{_flag(name, cli)} must be a string, got {value!r}")
    if config.amp not in AMP_CHOICES:
        raise ConfigError(f"{_flag('amp', cli)} must be fp16 or bf16, got {config.amp!r}")
    for name in ("nesterov", "no_decay_bn_bias", "progress", "sync_bn"):
        value = getattr(config, name)
        if not (isinstance(value, bool) or (value is None and name in OPTIONAL)):
            raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_finetune(config, cli):
    split = config.val_split
    if split is not None and (
        isinstance(split, bool) or not isinstance(split, numbers.Real) or not 0 < split < 1
    ):
        raise ConfigError(f"{_flag('val_split', cli)} must be between 0 and 1, got {split!r}")
    if not (
        isinstance(config.freeze, (tuple, list))
        and all(isinstance(p, str) and p for p in config.freeze)
    ):
        raise ConfigError(
            f"{_flag('freeze', cli)} must be parameter-name prefixes, got {config.freeze!r}"
        )


def _positive_ints(value, count=None):
    return (
        isinstance(value, (tuple, list))
        and (count is None or len(value) == count)
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= v <= 10**6
            for v in value
        )
    )


def _check_sequences(config, cli):
    if not _positive_ints(config.builtin_per_class, 2):
        raise ConfigError(
            f"{_flag('builtin_per_class', cli)} must be two integers in [1, 1000000], "
            f"got {config.builtin_per_class!r}"
        )
    if not _positive_ints(config.milestones):
        raise ConfigError(f"milestones must be integers in [1, 1000000], got {config.milestones!r}")


# ---- meta.json -----------------------------------------------------------------------------------
def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


BASE = {
    "format": lambda v: isinstance(v, str),
    "format_version": _is_int,
    "rng": lambda v: isinstance(v, dict),
}
TRAINING = {
    "config": lambda v: isinstance(v, dict),
    "classes": lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v),
    "epoch": _is_int,
    "best_epoch": _is_int,
    "best_val_top1": _is_number,
    "image_size": lambda v: _is_int(v, 1) and v <= MAX_IMAGE_SIZE,
    "mean": lambda v: isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v),
    "std": lambda v: (
        isinstance(v, list) and len(v) == 3 and all(_is_number(x) and x > 0 for x in v)
    ),
}
OPTIONAL_META = {
    "optimizer": lambda v: isinstance(v, dict),
    "scheduler": lambda v: isinstance(v, dict),
    "metrics": lambda v: isinstance(v, list),
    "scaler": lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values()),
}


def check_meta(meta, path, training=True):
    """Raise CheckpointError unless ``meta`` (the parsed meta.json of ``path``) fits the schema."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path!r}: meta.json holds a {type(meta).__name__}, not an object")
    schema = dict(BASE, **(TRAINING if training else {}))
    for key, ok in list(schema.items()) + list(OPTIONAL_META.items()):
        if key not in meta:
            if key in schema:
                raise CheckpointError(f"{path!r}: meta.json has no {key!r}")
            continue
        if not ok(meta[key]):
            raise CheckpointError(f"{path!r}: meta.json has a bad {key!r}: {_short(meta[key])}")
    _check_rng(meta["rng"], path)
    if training:
        _check_training_meta(meta, path)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_rng(state, path):
    try:
        np.random.PCG64().state = state  # a scratch generator: the real one is set on resume
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path!r}: meta.json has a bad 'rng' state ({e})") from None


def _check_training_meta(meta, path):
    config = config_from_json(meta["config"], path)
    if meta["best_epoch"] > meta["epoch"]:
        raise CheckpointError(
            f"{path!r}: meta.json's best_epoch {meta['best_epoch']} is after its "
            f"epoch {meta['epoch']}"
        )
    if meta["epoch"] > config.epochs:
        raise CheckpointError(
            f"{path!r}: meta.json's epoch {meta['epoch']} is beyond the run's "
            f"{config.epochs} epochs"
        )
    rows = meta.get("metrics")
    if rows is not None:
        for row in rows:
            check_metrics_row(row, path)
        if [r["epoch"] for r in rows] != list(range(1, meta["epoch"] + 1)):
            raise CheckpointError(
                f"{path!r}: meta.json's metrics are not one row for each of the "
                f"{meta['epoch']} epochs"
            )


def config_from_json(d, path):
    """TrainConfig from a checkpoint's config object, every field checked."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{path!r}: meta.json's config is not an object")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CheckpointError(f"{path!r}: meta.json's config has unknown keys {', '.join(unknown)}")
    try:
        config = TrainConfig.from_json(d)
        check_config(config)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path!r}: meta.json's config: {e}") from None
    return config


def check_metrics_row(row, path, fields=None):
    """Raise CheckpointError unless ``row`` has every metric as a finite number (epoch an int)."""
    from .metrics import AMP_FIELDS, METRIC_FIELDS

    fields = fields or METRIC_FIELDS
    if isinstance(row, dict) and fields == METRIC_FIELDS and all(k in row for k in AMP_FIELDS):
        fields = METRIC_FIELDS + AMP_FIELDS  # an --amp run's row
    if not isinstance(row, dict) or set(row) != set(fields):
        raise CheckpointError(
            f"{path!r}: a metrics row is not an object with {', '.join(fields)}: {_short(row)}"
        )
    if not _is_int(row["epoch"], 1) or not all(_is_number(row[k]) for k in fields if k != "epoch"):
        raise CheckpointError(
            f"{path!r}: a metrics row has a value that is not a finite number: {_short(row)}"
        )
