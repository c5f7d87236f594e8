"""metrics.csv (one row per epoch) and curves.png (loss and accuracy against epoch)."""
from __future__ import annotations

import csv
import io
import os

from .checkpoint import write_atomic

__all__ = ["METRIC_FIELDS", "plot_curves", "read_metrics", "write_metrics"]

METRIC_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr",
                 "images_per_s", "seconds")


def write_metrics(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_atomic(path, buf.getvalue().encode())


def read_metrics(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(path, rows, title=""):
    """Loss and accuracy against epoch (matplotlib's Agg canvas: no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in rows]
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(epochs, [100 * r["train_top1"] for r in rows], "o-", label="train top-1")
    ax2.plot(epochs, [100 * r["val_top1"] for r in rows], "o-", label="val top-1")
    ax2.plot(epochs, [100 * r["val_top5"] for r in rows], "o--", label="val top-5")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())
