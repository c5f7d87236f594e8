"""The training loop: epochs of training and evaluation, top-k accuracy, prediction, resuming."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .. import functional as F
from .. import models
from .. import random as _random
from ..autograd import no_grad
from ..nn import Module
from ..data import DataLoader, DistributedSampler
from ..distributed import training as _dist
from ..data import transforms as T
from ..tensor import tensor
from ..data import DataLoaderError, UnreadableDataset
from ._epoch_metrics import EpochMetrics
from .amp import amp_columns, amp_context, amp_note, check_amp_device, make_scaler, scaled_step
from .metrics import progress_bar as _progress
from .metrics import topk_correct as _topk_correct
from .checkpoint import _load_model_state, load_checkpoint, read_meta, restore_training_state
from .commit import commit_epoch, repair_derived, rows_of
from .config import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    data_root,
    eval_transform,
    image_size_for,
    open_datasets,
    resolve_device,
    train_transform,
)
from .runfolder import check_run_folder, open_run_folder
from .validate import check_config, config_from_json

__all__ = ["evaluate", "predict", "train", "train_one_epoch"]


def _logits(out):
    return getattr(out, "logits", out)


def _loss(out, target, config):
    if isinstance(out, models.GoogLeNetOutputs):
        return models.googlenet_loss(out, target, config.aux_weight, config.label_smoothing)
    return F.cross_entropy(out, target, label_smoothing=config.label_smoothing)


def train_one_epoch(
    model,
    loader,
    optimizer,
    scheduler,
    config,
    device,
    desc="",
    progress=False,
    scaler=None,
    log_interval=50,
):
    """(mean loss, top-1 accuracy, images, seconds) of one pass over ``loader`` (--amp: see
    train/amp.py; batches whose float16 loss overflowed are skipped and left out of the means).

    The loss and accuracy stay on the device (EpochMetrics) and are read every ``log_interval``
    steps (for the progress bar and the divergence check) and at the end: no host sync per step."""
    model.train()
    bar = _progress(len(loader), desc, progress)
    metrics = EpochMetrics(device)
    start = time.perf_counter()
    for step, (images, labels) in enumerate(loader, 1):
        x = tensor(np.ascontiguousarray(images), device=device)
        y = tensor(labels, device=device)
        with amp_context(config, device):
            out = model(x)
            loss = _loss(out, y, config)
        scaled_step(loss, optimizer, scaler)
        scheduler.step()
        skip = scaler is not None and scaler.is_enabled()  # its skipped (overflowed) steps
        metrics.add(loss.detach(), _logits(out).detach(), y, skip_nonfinite=skip)
        if step % log_interval == 0:
            metrics.show(bar, start)
        if bar is not None:
            bar.update(1)
    loss, top1 = metrics.read()
    if bar is not None:
        bar.close()
    return loss, top1, metrics.images, time.perf_counter() - start


def evaluate(
    model: Module,
    loader: Iterable[Any],
    device: str = "cpu",
    progress: bool = False,
    desc: str = "eval",
) -> Dict[str, float]:
    """{"loss", "top1", "top5", "images"} of ``model`` on ``loader`` (eval mode, no gradients).

    Batches of shape (N, 10, C, H, W) (``TenCrop``) are scored by averaging the softmax over the
    crops.
    """
    model.eval()
    bar = _progress(len(loader), desc, progress)
    loss_sum, hits, seen = 0.0, {1: 0, 5: 0}, 0
    with no_grad():
        for images, labels in loader:
            crops = images.shape[1] if images.ndim == 5 else 0
            x = tensor(
                images.reshape((-1,) + images.shape[-3:]) if crops else images, device=device
            )
            logits = _logits(model(x))
            probs = F.softmax(logits, dim=1).numpy().astype(np.float64)
            if crops:
                probs = probs.reshape(len(labels), crops, -1).mean(axis=1)
            picked = probs[np.arange(len(labels)), labels]
            loss_sum += float(-np.log(np.maximum(picked, 1e-12)).sum())
            for k, v in _topk_correct(probs, labels).items():
                hits[k] += v
            seen += len(labels)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seen = max(seen, 1)
    return {"loss": loss_sum / seen, "top1": hits[1] / seen, "top5": hits[5] / seen, "images": seen}


def predict(
    model: Module,
    images: Sequence[np.ndarray],
    transform: Callable[[Any], Any],
    classes: Sequence[str],
    device: str = "cpu",
    k: int = 5,
) -> List[List[Tuple[str, float]]]:
    """[(class name, probability)] * k for each HWC uint8 image, highest first."""
    model.eval()
    batch = np.stack([transform(img) for img in images])
    with no_grad():
        probs = F.softmax(_logits(model(tensor(batch, device=device))), dim=1).numpy()
    out = []
    for p in probs:
        top = np.argsort(-p, kind="stable")[: min(k, len(p))]
        out.append([(classes[i], float(p[i])) for i in top])
    return out


def _default_out(config):
    name = f"{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = os.path.join("runs", name)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join("runs", f"{name}-{n}")
    return path


def _check_classes(train_set, val_set, root):
    if train_set.classes != val_set.classes:
        only_train = sorted(set(train_set.classes) - set(val_set.classes))
        only_val = sorted(set(val_set.classes) - set(train_set.classes))
        detail = "; ".join(
            s
            for s in (
                f"only in train: {', '.join(only_train[:5])}" if only_train else "",
                f"only in val: {', '.join(only_val[:5])}" if only_val else "",
            )
            if s
        )
        raise ConfigError(f"the class folders of {root}/train and {root}/val differ ({detail})")


@dataclasses.dataclass
class _Run:
    """Everything a training run holds while it runs."""

    config: TrainConfig
    device: str
    out: str
    model: object
    train_loader: DataLoader
    val_loader: DataLoader
    optimizer: object
    scheduler: object
    meta: dict
    rows: list
    start_epoch: int = 0
    world: object = dataclasses.field(default_factory=_dist.World)  # rank 0 alone writes files
    net: object = None  # what trains: the model, or its DistributedDataParallel wrapper
    scaler: object = None  # --amp: the GradScaler (train/amp.py)


def train(
    config: TrainConfig,
    resume: Optional[str] = None,
    log: Callable[..., Any] = print,
    epochs: Optional[int] = None,
) -> Dict[str, Any]:
    """Run (or, with ``resume`` = a run folder, continue) a training; returns a summary dict.

    ``epochs`` with ``resume`` extends the run to that many epochs (its schedule is recomputed for
    the new length and continues from the step reached). Every setting and the run folder are
    checked before the data and the model are built."""
    resumed = None
    world = _dist.join(resolve_device(config.device))
    log = log if world.main else (lambda *a, **k: None)
    if resume is not None:
        resumed = _read_resume(resume)
        saved = config_from_json(resumed["config"], resume)
        if epochs is not None and epochs < resumed["epoch"]:
            raise ConfigError(
                f"--epochs {epochs}: the run in {resume} has finished "
                f"{resumed['epoch']} epochs already"
            )
        config = dataclasses.replace(
            saved,
            device=config.device,
            workers=config.workers,
            progress=config.progress,
            out=resume,
            epochs=saved.epochs if epochs is None else epochs,
        )
    check_config(config)
    check_amp_device(config.amp, resolve_device(config.device))  # before any data is made
    out = world.broadcast(config.out or _default_out(config))  # rank 0's name for the run folder
    if world.main:
        check_run_folder(out, resume=resume is not None)
    run = _prepare(config, out, log, world, fresh=resumed is None)
    if resumed is not None:
        _apply_resume(resumed, run, resume)
        if config.epochs != saved.epochs:
            _extend_schedule(run, saved.epochs, log)
    if world.main:
        open_run_folder(run.out, run.config.to_json())
        if resumed is not None:
            repair_derived(run, log)
    train_set = run.train_loader.dataset
    log(
        f"{'resuming' if resumed else 'training'} {config.model} on {run.device}: "
        f"{len(train_set)} train / "
        f"{len(run.val_loader.dataset)} val images, {len(train_set.classes)} classes, "
        f"{run.meta['image_size']}x{run.meta['image_size']}, {config.epochs} epochs of "
        f"{len(run.train_loader)} batches of {config.batch_size}"
        f"{f' over {world.size} processes' if world.distributed else ''}; run folder {run.out}"
    )
    started = time.perf_counter()
    _run_epochs(run, log)
    final = run.rows[-1] if run.rows else None
    return {
        "run_dir": run.out,
        "epochs": len(run.rows),
        "val_top1": final["val_top1"] if final else None,
        "already_finished": run.start_epoch >= config.epochs,
        "best_val_top1": run.meta["best_val_top1"],
        "best_epoch": run.meta["best_epoch"],
        "seconds": time.perf_counter() - started,
        "device": run.device,
        "main_process": world.main,
    }


def _run_epochs(run, log):
    config = run.config
    try:
        for epoch in range(run.start_epoch, config.epochs):
            row = _run_epoch(epoch, run)
            if run.world.main:
                commit_epoch(run, row)
            else:
                run.rows.append(row)
            log(_epoch_line(row, config.epochs))
    except KeyboardInterrupt:
        log(
            f"\ninterrupted: {len(run.rows)} finished epoch(s) are saved in {run.out}; "
            f"continue with: minicnn train --resume {run.out}"
            if run.rows
            else "\ninterrupted before the first epoch finished (nothing saved)"
        )
        raise
    except (UnreadableDataset, DataLoaderError) as e:
        raise ConfigError(str(e)) from None
    finally:
        run.train_loader.close()
        run.val_loader.close()


def _prepare(config, out, log, world, fresh=True):
    """Data, model, optimizer and schedule of a run (nothing written yet); a ``fresh`` one loads
    ``config.weights``. The run's config records the resolved device, lr, image size and variant."""
    device = resolve_device(config.device)
    _random.manual_seed(config.seed)
    if not world.main:
        world.barrier()  # rank 0 generates the built-in dataset first
    root = data_root(config, log)
    if world.main:
        world.barrier()
    train_set, val_set = open_datasets(config, root)
    _check_classes(train_set, val_set, root)
    model = build_model(config.model, len(train_set.classes), config.variant)
    _start_from(model, config, log, fresh)
    size = image_size_for(config, model)
    config = dataclasses.replace(
        config,
        device=device,
        lr=config.resolved_lr(),
        image_size=size,
        variant=config.variant or _default_variant(config.model),
    )
    need = getattr(model, "min_input_size", 1)
    if getattr(model, "aux_logits", False):  # GoogLeNet's aux heads need a larger map in training
        need = max(need, getattr(model, "min_input_size_aux", 1))
    if size < need:
        raise ConfigError(
            f"{config.model} needs images of at least {need}x{need} pixels in training; "
            f"the images are resized to {size}x{size} (use --image-size {need} or more)"
        )
    mean, std = T.IMAGENET_MEAN, T.IMAGENET_STD
    train_set.transform = train_transform(config, size, mean, std)
    val_set.transform = eval_transform(config, size, mean, std)
    train_loader, val_loader = _loaders(config, train_set, val_set, world)
    model.to(device)
    net = _dist.wrap_model(model, world, config)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, len(train_loader))
    meta = {
        "config": config.to_json(),
        "classes": train_set.classes,
        "image_size": size,
        "mean": list(mean),
        "std": list(std),
        "epoch": 0,
        "best_val_top1": -1.0,
        "best_epoch": 0,
    }
    return _Run(
        config,
        device,
        out,
        model,
        train_loader,
        val_loader,
        optimizer,
        scheduler,
        meta,
        [],
        world=world,
        net=net,
        scaler=make_scaler(config, device),
    )


def _loaders(config, train_set, val_set, world):
    """Train and val loaders; with N processes each gets a shard and batch/N (the global batch)."""
    try:
        batch = _dist.per_rank_batch(config.batch_size, world)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    kw = dict(num_workers=config.workers, seed=config.seed)
    if not world.distributed:
        return (
            DataLoader(train_set, batch, shuffle=True, drop_last=len(train_set) > batch, **kw),
            DataLoader(val_set, batch * 2, **kw),
        )
    sampler = DistributedSampler(train_set, world.size, world.rank, seed=config.seed)
    return (
        DataLoader(train_set, batch, sampler=sampler, drop_last=len(sampler) > batch, **kw),
        DataLoader(val_set, batch * 2, sampler=_dist.EvalShard(len(val_set), world), **kw),
    )


def _default_variant(name):
    return next(iter(models.model_variants(name))) or None


def _start_from(model, config, log, fresh):
    """Load ``config.weights`` (a fresh run only) and freeze ``config.freeze``."""
    from ..finetune import PretrainedError, freeze, load_pretrained

    try:
        if config.weights is not None and fresh:
            head = load_pretrained(model, config.weights)
            log(
                f"starting from {config.weights}"
                + (
                    f" with a new head ({head}: {model.get_submodule(head).out_features} classes)"
                    if head
                    else ""
                )
            )
        if config.freeze:
            n = freeze(model, config.freeze)
            log(f"frozen: {n:,} parameters under {', '.join(config.freeze)}")
    except PretrainedError as e:
        raise ConfigError(f"--weights/--freeze: {e}") from None


def _extend_schedule(run, old_epochs, log):
    """A finished run extended: the schedule for the new length, advanced to the step reached."""
    steps = len(run.train_loader)
    run.scheduler = build_scheduler(run.config, run.optimizer, steps)
    for _ in range(run.start_epoch * steps):
        run.scheduler.step()
    log(
        f"extending the run from {old_epochs} to {run.config.epochs} epochs (the learning-rate "
        f"schedule is recomputed for {run.config.epochs} epochs)"
    )


def _run_epoch(epoch, run):
    """One epoch of training and evaluation: the metrics.csv row."""
    started = time.perf_counter()
    run.train_loader.set_epoch(epoch)
    tag, progress = f"epoch {epoch + 1}/{run.config.epochs}", run.config.progress
    progress = sys.stderr.isatty() if progress is None else progress
    progress = progress and run.world.main
    skipped = run.scaler.steps_skipped
    loss, top1, images, seconds = train_one_epoch(
        run.net or run.model,
        run.train_loader,
        run.optimizer,
        run.scheduler,
        run.config,
        run.device,
        f"{tag} train",
        progress,
        run.scaler,
    )
    if hasattr(run.net, "sync_buffers"):
        run.net.sync_buffers()  # every rank evaluates with rank 0's BatchNorm statistics
    with amp_context(run.config, run.device):
        val = evaluate(run.model, run.val_loader, run.device, progress=progress, desc=f"{tag} val")
    loss, top1, images, val = _dist.sum_epoch(run.world, loss, top1, images, val)
    return {
        "epoch": epoch + 1,
        "train_loss": loss,
        "train_top1": top1,
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "lr": run.scheduler.get_last_lr()[0],
        "images_per_s": images / max(seconds, 1e-9),
        "seconds": time.perf_counter() - started,
        **amp_columns(run, run.scaler.steps_skipped - skipped),
    }


def _epoch_line(row, epochs):
    return (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.3f} top-1 "
        f"{100 * row['train_top1']:.1f}% | val loss {row['val_loss']:.3f} "
        f"top-1 {100 * row['val_top1']:.1f}% top-5 {100 * row['val_top5']:.1f}% "
        f"| lr {row['lr']:.3g} | {row['images_per_s']:.0f} img/s | "
        f"{row['seconds']:.1f} s{amp_note(row)}"
    )


def _read_resume(run_dir):
    """The checked meta.json of RUN_DIR/last.npz (the arrays are read once the model is built)."""
    path = os.path.join(run_dir, "last.npz")
    if not os.path.isdir(run_dir):
        raise ConfigError(f"--resume: no such run folder {run_dir!r}")
    if not os.path.isfile(path):
        raise ConfigError(f"--resume: {run_dir!r} has no last.npz (no epoch finished yet?)")
    return read_meta(path)


def _apply_resume(saved, run, run_dir):
    """Load last.npz into the run's model, optimizer, schedule and RNG; set its epoch and rows."""
    path = os.path.join(run_dir, "last.npz")
    if saved["classes"] != run.meta["classes"]:
        raise CheckpointError(
            f"{path!r} was trained on classes {saved['classes'][:5]}…, the data has "
            f"{run.meta['classes'][:5]}…"
        )
    _, state, arrays = load_checkpoint(path, run.model)
    _load_model_state(run.model, state, path, saved["config"]["model"])
    restore_training_state(saved, arrays, run.optimizer, run.scheduler, path)
    if "scaler" in saved and run.scaler.is_enabled():
        run.scaler.load_state_dict(saved["scaler"])
    _random.set_rng_state(saved["rng"])
    for key in ("epoch", "best_val_top1", "best_epoch"):
        run.meta[key] = saved[key]
    run.rows = rows_of(saved, run_dir, path)
    run.meta["metrics"] = list(run.rows)
    run.start_epoch = saved["epoch"]
