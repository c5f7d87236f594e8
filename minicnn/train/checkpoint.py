"""Checkpoints as pickle-free ``.npz`` archives, written atomically.

Layout: the model's state dict under ``model/<key>``, the optimizer's buffers under
``optimizer/state/<index>/<name>``, and everything else (config, epoch, scheduler state, RNG state,
class names, best accuracy; arrays replaced by ``{"__array__": key}`` references) as JSON text in a
uint8 array ``meta.json``. ``numpy.load(path, allow_pickle=False)`` reads every member.
"""
from __future__ import annotations

import json
import os
import uuid

import numpy as np

from .. import random as _random
from ..io import load_npz, save_npz
from .config import CheckpointError, TrainConfig, build_model

__all__ = ["load_checkpoint", "restore_model", "save_checkpoint", "write_atomic"]

CHECKPOINT_FORMAT = "minicnn-checkpoint"
CHECKPOINT_VERSION = 1


def _split_arrays(obj, prefix, arrays):
    """JSON-able copy of ``obj`` with every ndarray moved to ``arrays[key]`` and replaced by a reference."""
    if isinstance(obj, np.ndarray):
        arrays[prefix] = obj
        return {"__array__": prefix}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    return obj


def _join_arrays(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def save_checkpoint(path, model, meta, optimizer=None, scheduler=None):
    """Write ``path`` atomically: model state, optimizer buffers, and ``meta`` (JSON-able) + schedule + RNG."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = dict(meta, format=CHECKPOINT_FORMAT, format_version=CHECKPOINT_VERSION,
                rng=_random.get_rng_state())
    if optimizer is not None:
        meta["optimizer"] = _split_arrays(optimizer.state_dict(), "optimizer", arrays)
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    save_npz(path, arrays)


def load_checkpoint(path):
    """(meta dict, model state dict, arrays) of a checkpoint written by ``save_checkpoint``."""
    try:
        arrays = load_npz(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(str(e)) from None
    if "meta.json" not in arrays:
        raise CheckpointError(f"{path!r} is not a minicnn training checkpoint (no meta.json inside; "
                              f"a bare weights file can be loaded with model.load_state_dict(load_npz(…)))")
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path!r}: unreadable meta.json ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a minicnn training checkpoint")
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    return meta, state, arrays


def restore_model(path, device="cpu"):
    """(model in eval mode on ``device``, meta) from a checkpoint; CheckpointError if it doesn't fit."""
    meta, state, _ = load_checkpoint(path)
    config = TrainConfig.from_json(meta["config"])
    try:
        model = build_model(config.model, len(meta["classes"]))
    except ValueError as e:
        raise CheckpointError(f"{path!r}: {e}") from None
    _load_model_state(model, state, path, config.model)
    return model.to(device).eval(), meta


def _load_model_state(model, state, path, name):
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{path!r} does not fit a {name}: {' '.join(first[:3])}") from None


def write_atomic(path, data: bytes):
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
