"""``minicnn eval``'s confusion matrix and per-class accuracy.

A :class:`Recorder` watches an evaluation without changing it: it wraps the loader (to see each
batch's labels and ten-crop count) and hooks the model's output (to see its scores), then
predicts as ``evaluate`` does (softmax, averaged over crops, highest first). It writes

    confusion.csv   rows: true class, columns: predicted class, counts (a header row and column
                    of class names)
    confusion.png   the same matrix normalised per true class, as an image
    per_class.csv   class, images, correct, accuracy

and returns the per-class lines that ``minicnn eval`` prints.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

__all__ = ["Recorder", "check_out_dir", "confusion_matrix"]


def confusion_matrix(labels, predictions, num_classes):
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return m


class Recorder:
    def __init__(self, model, classes):
        self.classes = list(classes)
        self.labels, self.predictions, self._crops = [], [], []
        self._handle = model.register_forward_hook(self._hook)

    def wrap(self, loader):
        recorder = self

        class _Loader:
            def __len__(self):
                return len(loader)

            def __iter__(self):
                for images, labels in loader:
                    recorder._crops.append(images.shape[1] if images.ndim == 5 else 0)
                    recorder.labels.append(np.asarray(labels))
                    yield images, labels

        return _Loader()

    def _hook(self, module, args, out):
        from ..tensor import Tensor

        logits = out if isinstance(out, Tensor) else getattr(out, "logits", out[0])
        scores = logits.numpy().astype(np.float64)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        crops = self._crops[-1] if self._crops else 0
        if crops:
            probs = probs.reshape(-1, crops, probs.shape[1]).mean(axis=1)
        self.predictions.append(np.argmax(probs, axis=1))

    def close(self):
        self._handle.remove()

    def matrix(self):
        n = len(self.classes)
        if not self.labels:
            return np.zeros((n, n), dtype=np.int64)
        return confusion_matrix(np.concatenate(self.labels), np.concatenate(self.predictions), n)

    def write(self, directory):
        """Write the three files into ``directory``; returns the per-class report lines."""
        m = self.matrix()
        totals, correct = m.sum(axis=1), np.diag(m)
        rows = [
            [c, int(t), int(k), f"{k / t:.4f}" if t else ""]
            for c, t, k in zip(self.classes, totals, correct)
        ]
        _write_csv(
            os.path.join(directory, "confusion.csv"),
            [["true \\ predicted"] + self.classes]
            + [[c] + [int(v) for v in row] for c, row in zip(self.classes, m)],
        )
        _write_csv(
            os.path.join(directory, "per_class.csv"),
            [["class", "images", "correct", "accuracy"]] + rows,
        )
        _plot(os.path.join(directory, "confusion.png"), m, self.classes)
        width = max(len(c) for c in self.classes)
        return [
            f"  {c:<{width}}  {100 * k / t:6.2f}%  ({k}/{t})" if t else f"  {c:<{width}}  -"
            for c, t, k in zip(self.classes, totals.tolist(), correct.tolist())
        ]


def _write_csv(path, rows):
    """Write through a temporary file in the same folder, renamed into place."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _plot(path, m, classes):
    from ..viz import _figure, _save

    shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = _figure(figsize=(2.5 + 0.45 * n, 2 + 0.45 * n))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(n) if n <= 40 else range(0, n, max(1, n // 40))
    ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=7)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="share of the true class")
    _save(fig, path)


def check_out_dir(out, checkpoint):
    """The folder for the files: ``out``, else the checkpoint's folder (a UsageError if missing)."""
    from . import UsageError

    directory = out if out is not None else os.path.dirname(os.path.abspath(checkpoint))
    if not os.path.isdir(directory):
        raise UsageError(f"eval: --out: no such folder {directory!r}")
    return directory
