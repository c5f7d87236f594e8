"""Training on image folders: the loop, evaluation, metrics, plots and crash-safe checkpoints.

``train(TrainConfig(...))`` is what ``minicnn train`` runs. A run folder holds

    config.json   the configuration (also stored inside every checkpoint)
    metrics.csv   one row per epoch: train loss/top-1, val loss/top-1/top-5, lr, images/s, seconds
    curves.png    loss and accuracy against epoch, redrawn after every epoch
    last.npz      checkpoint after the latest epoch; best.npz after the best val top-1 so far

Checkpoints are ``.npz`` archives without pickle: the model's state dict under ``model/…``, the
optimizer's buffers under ``optimizer/…`` and everything else (config, epoch, scheduler, RNG state,
class names, best accuracy) as JSON in a uint8 array ``meta.json``. Every file of the run folder is
written to a temporary name and renamed over the old one, so a crash (even ``kill -9``) mid-write
leaves the previous version intact. ``train(config, resume=RUN_DIR)`` reloads ``last.npz`` and
continues; on the CPU the resumed epochs reproduce an uninterrupted run's numbers exactly (the data
order and augmentation depend only on (seed, epoch, batch), the RNG state is restored).

The learning-rate schedule steps once per batch (linear warm-up, then cosine / step / multistep over
the remaining batches), so a run of a few epochs still gets a smooth schedule.
"""

from .checkpoint import load_checkpoint, restore_model, save_checkpoint
from .config import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    eval_transform,
    open_folder,
    resolve_device,
    train_transform,
)
from .loop import evaluate, predict, train, train_one_epoch
from .metrics import METRIC_FIELDS, plot_curves, read_metrics, write_metrics

__all__ = [
    "METRIC_FIELDS",
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "eval_transform",
    "evaluate",
    "load_checkpoint",
    "open_folder",
    "plot_curves",
    "predict",
    "read_metrics",
    "resolve_device",
    "restore_model",
    "save_checkpoint",
    "train",
    "train_one_epoch",
    "train_transform",
    "write_metrics",
]
