"""One commit point per epoch, and the repair of what is derived from it.

``last.npz`` is the only record of an epoch: it holds the model, optimizer, schedule, RNG and every
epoch's metrics row (in meta.json). Its atomic rename is the commit. ``best.npz``, ``metrics.csv``
and ``curves.png`` are derived from it afterwards; a kill between the commit and them leaves them a
step behind, and a resume (even of a finished run) rewrites them from ``last.npz`` before anything
else. So whatever instant a run is killed at, the files it leaves agree once resumed, and no epoch
is counted twice or lost.

``BOUNDARY_HOOK``, when set, is called with the name of each write boundary (tests kill there).
"""

from __future__ import annotations

import copy
import os

from .checkpoint import read_meta, save_checkpoint
from .config import CheckpointError
from .metrics import plot_curves, read_metrics, write_metrics
from .runfolder import RunFolderError

__all__ = ["BOUNDARY_HOOK", "BOUNDARIES", "commit_epoch", "repair_derived", "rows_of"]

BOUNDARIES = (
    "before last.npz",
    "after last.npz",
    "after best.npz",
    "after metrics.csv",
    "after curves.png",
)
BOUNDARY_HOOK = None


def _boundary(name):
    if BOUNDARY_HOOK is not None:
        BOUNDARY_HOOK(name)


def commit_epoch(run, row):
    """Record a finished epoch: last.npz (the commit), then best.npz, metrics.csv, curves.png."""
    meta = run.meta
    previous = meta["epoch"]
    meta["epoch"] = row["epoch"]
    meta["metrics"] = run.rows + [row]
    if row["val_top1"] > meta["best_val_top1"]:
        meta["best_val_top1"], meta["best_epoch"] = row["val_top1"], row["epoch"]
    last = os.path.join(run.out, "last.npz")
    _boundary("before last.npz")
    try:
        save_checkpoint(last, run.model, meta, run.optimizer, run.scheduler)
    except OSError as e:
        kept = (
            f"the previous checkpoint {last} (epoch {previous}) is intact"
            if previous
            else "no epoch had been saved yet"
        )
        raise RunFolderError(f"cannot write {last}: {e.strerror or e}; {kept}") from None
    run.rows.append(row)
    _boundary("after last.npz")
    _write_derived(run, best=meta["best_epoch"] == row["epoch"])


def _write_derived(run, best):
    path = None
    try:
        if best:
            path = os.path.join(run.out, "best.npz")
            save_checkpoint(path, run.model, _best_meta(run.meta))
        _boundary("after best.npz")
        path = os.path.join(run.out, "metrics.csv")
        write_metrics(path, run.rows)
        _boundary("after metrics.csv")
        path = os.path.join(run.out, "curves.png")
        plot_curves(path, run.rows, f"{run.config.model}: {run.out}")
        _boundary("after curves.png")
    except OSError as e:
        raise RunFolderError(
            f"cannot write {path}: {e.strerror or e}; epoch {run.meta['epoch']} is "
            f"saved in last.npz, and --resume {run.out} rewrites the rest"
        ) from None


def _best_meta(meta):
    return {
        k: copy.deepcopy(v) for k, v in meta.items() if k not in ("optimizer", "scheduler", "rng")
    }


def rows_of(meta, run_dir, path):
    """The metrics rows of a checkpoint (from a version-1 checkpoint: metrics.csv, checked)."""
    if "metrics" in meta:
        return list(meta["metrics"])
    rows = [
        r for r in read_metrics(os.path.join(run_dir, "metrics.csv")) if r["epoch"] <= meta["epoch"]
    ]
    if [r["epoch"] for r in rows] != list(range(1, meta["epoch"] + 1)):
        raise CheckpointError(
            f"{path!r} (an older checkpoint) has no metrics inside and metrics.csv "
            f"lacks some of its {meta['epoch']} epochs"
        )
    return rows


def repair_derived(run, log):
    """Make best.npz, metrics.csv and curves.png agree with last.npz (the model of ``run`` holds the
    last epoch's weights)."""
    if not run.rows:
        return
    best_path = os.path.join(run.out, "best.npz")
    best_epoch = run.meta["best_epoch"]
    try:
        held = read_meta(best_path)["epoch"] if os.path.exists(best_path) else None
    except CheckpointError:
        held = None
    need_best = held != best_epoch
    if need_best and best_epoch != run.meta["epoch"]:
        log(
            f"warning: {best_path} does not hold epoch {best_epoch} (the best) and cannot be "
            f"rebuilt from last.npz (epoch {run.meta['epoch']})"
        )
        need_best = False
    if need_best:
        log(f"repairing {best_path} from last.npz (epoch {best_epoch})")
    _write_derived(run, best=need_best)
