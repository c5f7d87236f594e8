"""metrics.csv (one row per epoch) and curves.png (loss, accuracy and learning rate against epoch).

Accuracies are fractions in memory and in checkpoints, and percentages in metrics.csv (columns
``train_top1_pct``, ``val_top1_pct``, ``val_top5_pct``), as the console prints them; files of
older runs, with fractions under ``train_top1``…, are still read. Runs with ``--amp`` add two
columns: ``skipped_steps`` (optimizer steps skipped for inf/NaN gradients in the epoch) and
``loss_scale`` (the GradScaler's scale at its end; 1 for bf16, which needs no scaling)."""

from __future__ import annotations

import csv
import io
import math
import os

import numpy as np

from ..io import write_atomic
from .config import CheckpointError

__all__ = [
    "METRIC_FIELDS",
    "plot_curves",
    "progress_bar",
    "read_metrics",
    "topk_correct",
    "write_metrics",
]

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "lr",
    "images_per_s",
    "seconds",
)
PERCENT = ("train_top1", "val_top1", "val_top5")  # written x100 under NAME_pct
CSV_FIELDS = tuple(f"{k}_pct" if k in PERCENT else k for k in METRIC_FIELDS)
AMP_FIELDS = ("skipped_steps", "loss_scale")  # --amp runs only


def write_metrics(path, rows):
    """Write the rows as CSV (atomically). The rows are kept in last.npz; this file is derived."""
    buf = io.StringIO()
    amp = AMP_FIELDS if rows and all(k in rows[0] for k in AMP_FIELDS) else ()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS + amp, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                (f"{k}_pct" if k in PERCENT else k): (
                    repr(100 * v) if k in PERCENT else repr(v) if isinstance(v, float) else v
                )
                for k, v in row.items()
            }
        )
    data = buf.getvalue().encode()
    write_atomic(path, lambda f: f.write(data))


MAX_METRICS_BYTES = 64 << 20


def read_metrics(path):
    """The rows of a metrics.csv ([] if there is none); CheckpointError naming the line and the
    value for anything that is not a metrics row of finite numbers."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return []
    if os.path.getsize(path) > MAX_METRICS_BYTES:
        raise CheckpointError(
            f"{path!r}: larger than {MAX_METRICS_BYTES} bytes, not a metrics file"
        )
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = tuple(reader.fieldnames or ())
            if header not in (CSV_FIELDS, METRIC_FIELDS, CSV_FIELDS + AMP_FIELDS):
                raise CheckpointError(
                    f"{path!r}: the header is {reader.fieldnames}, expected {','.join(CSV_FIELDS)}"
                )
            percent = header[: len(CSV_FIELDS)] == CSV_FIELDS
            return [_parse_row(row, path, reader.line_num, percent) for row in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise CheckpointError(f"{path!r}: not a readable CSV file ({e})") from None


def _parse_row(row, path, line, percent=True):
    out = {}
    for key in METRIC_FIELDS + tuple(k for k in AMP_FIELDS if k in row):
        column = f"{key}_pct" if percent and key in PERCENT else key
        text = row.get(column)
        try:
            value = int(text) if key in ("epoch", "skipped_steps") else float(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value) or None in row:
            raise CheckpointError(
                f"{path!r} line {line}: {column} is {text!r}, not a finite number"
            )
        out[key] = value / 100 if column != key else value
    return out


def plot_curves(path, rows, title=""):
    """Loss and accuracy against epoch (matplotlib's Agg canvas: no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in rows]
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax3.plot(epochs, [r["lr"] for r in rows], "o-", color="tab:green", label="at the epoch's end")
    ax3.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(epochs, [100 * r["train_top1"] for r in rows], "o-", label="train top-1")
    ax2.plot(epochs, [100 * r["val_top1"] for r in rows], "o-", label="val top-1")
    ax2.plot(epochs, [100 * r["val_top5"] for r in rows], "o--", label="val top-5")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    write_atomic(path, lambda f: f.write(data))


def topk_correct(scores, labels, ks=(1, 5)):
    """{k: rows whose label is among the k highest scores} (k capped at the class count)."""
    out = {}
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in ks:
        out[k] = int((order[:, : min(k, scores.shape[1])] == labels[:, None]).any(axis=1).sum())
    return out


def progress_bar(total, desc, enabled):
    """A tqdm bar on stderr when ``enabled`` and tqdm is installed, else None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
