"""``minicnn train --amp fp16|bf16``: the forward pass under autocast, float16 with a GradScaler.

As in torch: bfloat16 keeps float32's exponent range and trains without loss scaling; float16
needs a GradScaler, whose state goes into the checkpoints (meta.json's ``"scaler"``) so that a
resumed run continues with the same scale. An overflowing float16 forward pass makes the loss (or
a gradient) inf: that step is skipped, the scale halves, and the epoch's line and metrics.csv
(``skipped_steps``, ``loss_scale``) say so.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..amp import GradScaler, autocast
from ..backends import get_backend
from ..dtypes import bfloat16, float16
from .config import ConfigError

__all__ = [
    "AMP_DTYPES",
    "amp_columns",
    "amp_note",
    "amp_context",
    "check_amp_device",
    "make_scaler",
    "scaled_step",
]

AMP_DTYPES = {"fp16": float16, "bf16": bfloat16}


def amp_context(config, device):
    """autocast(device, the --amp dtype), or a no-op context without --amp."""
    if config.amp is None:
        return contextlib.nullcontext()
    return autocast(device, dtype=AMP_DTYPES[config.amp])


def make_scaler(config, device):
    """The run's GradScaler: enabled for fp16 only."""
    return GradScaler(device, enabled=config.amp == "fp16")


def check_amp_device(amp, device):
    """ConfigError (one line) when ``device`` cannot run ``--amp amp``: bfloat16 tensor cores need
    sm_80 or newer, float16 sm_70; any device must have kernels for the dtype."""
    if amp is None:
        return
    dtype = AMP_DTYPES[amp]
    backend = get_backend(device)
    if device == "cuda":
        major, minor = _compute_capability(backend)
        need = (8, 0) if amp == "bf16" else (7, 0)
        if (major, minor) < need:
            raise ConfigError(
                f"--amp {amp}: this GPU (sm_{major}{minor}) has no {dtype} tensor cores "
                f"(they need sm_{need[0]}{need[1]} or newer); use --amp fp16 or leave --amp off"
            )
    try:
        x = backend.from_numpy(np.zeros(4, dtype))
        backend.relu_forward(x)
    except (TypeError, ValueError) as e:  # our kernels' dtype check, or CuPy's (no bfloat16)
        raise ConfigError(f"--amp {amp}: device {device!r} has no {dtype} kernels ({e})") from None


def _compute_capability(backend):
    cc = backend.xp.cuda.Device().compute_capability  # e.g. "80"
    return int(cc[:-1]), int(cc[-1])


def scaled_step(loss, optimizer, scaler):
    """backward and optimizer step through ``scaler`` (None, or disabled: a plain step)."""
    optimizer.zero_grad()
    if scaler is None:
        loss.backward()
        return optimizer.step()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def amp_columns(run, skipped):
    """--amp: the epoch's skipped steps and the loss scale at its end (metrics.csv); the scaler's
    state for the checkpoint."""
    if run.config.amp is None:
        return {}
    if run.scaler.is_enabled():
        run.meta["scaler"] = run.scaler.state_dict()
    return {"skipped_steps": skipped, "loss_scale": run.scaler.get_scale()}


def amp_note(row):
    if "skipped_steps" not in row:
        return ""
    return f" | scale {row['loss_scale']:g}, {row['skipped_steps']} step(s) skipped (inf/NaN)"
