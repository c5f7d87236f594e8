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

# The public names are those of the modules' __all__ lists.
from . import checkpoint as _checkpoint, config as _config, loop as _loop, metrics as _metrics
from .checkpoint import *  # noqa: F403
from .config import *  # noqa: F403
from .loop import *  # noqa: F403
from .metrics import *  # noqa: F403

__all__ = [name for module in (_checkpoint, _config, _loop, _metrics) for name in module.__all__]
