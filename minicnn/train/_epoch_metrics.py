"""The training loop's running loss and accuracy, kept on the device between logging intervals."""

from __future__ import annotations

import math
import time

import numpy as np

from ..backends import get_backend


class EpochMetrics:
    """An epoch's summed loss, top-1 hits and images, accumulated on the device; read to the host
    only by ``read`` (the training loop calls it once per logging interval and at the end of the
    epoch), so a step itself never waits for the device. Sums in float64 in step order: the same
    bits as adding each step's ``float(loss) * n`` on the host."""

    def __init__(self, device):
        self.backend = get_backend(device)
        self.sums = None  # device float64 (3,): summed loss x batch size, top-1 hits, images
        self.unread = False  # steps added since the last read
        self.loss = self.top1 = 0.0  # as of the last read
        self.images = 0  # images counted in the means, as of the last read

    def add(self, loss, logits, labels, skip_nonfinite=False):
        """Add a step: ``loss`` (0-d Tensor, the batch mean), ``logits`` (N, classes), ``labels``
        (N,) Tensor of class indices, all on the device. ``skip_nonfinite``: a step whose loss is
        not finite (a float16 overflow that a GradScaler skipped) is left out of the means."""
        xp, n = self.backend.xp, len(labels)
        hits = xp.argmax(logits._data, axis=1) == labels._data  # top-1: argmax, first of ties
        value = loss._data.astype(np.float64)
        step = xp.stack([value * n, hits.sum().astype(np.float64), xp.full_like(value, n)])
        if skip_nonfinite:
            step = xp.where(xp.isfinite(value), step, 0.0)
        self.sums = step if self.sums is None else self.sums + step
        self.unread = True

    def read(self):
        """(mean loss, top-1 accuracy) so far: one device->host read; raises FloatingPointError
        when the loss has diverged."""
        if self.unread:
            self.unread = False
            loss_sum, hits, images = (float(v) for v in self.backend.to_numpy(self.sums))
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"the training loss is {loss_sum} (diverged); try a smaller --lr"
                )
            self.images = int(images)
            self.loss, self.top1 = loss_sum / max(images, 1), hits / max(images, 1)
        return self.loss, self.top1

    def show(self, bar, start):
        """A logging interval: ``read`` (checks for divergence), then show the figures on the
        progress ``bar`` (None: no bar) of an epoch that began at ``start`` (perf_counter)."""
        loss, top1 = self.read()
        if bar is not None:
            rate = self.images / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(
                f"loss {loss:.3f} acc {100 * top1:.1f}% {rate:.0f} img/s", refresh=False
            )
