"""Checkpoints as pickle-free ``.npz`` archives, written atomically.

Layout: the model's state dict under ``model/<key>``, the optimizer's buffers under
``optimizer/state/<index>/<name>``, and everything else (config, epoch, scheduler state, RNG state,
class names, best accuracy; arrays replaced by ``{"__array__": key}`` references) as JSON text in a
uint8 array ``meta.json``. ``numpy.load(path, allow_pickle=False)`` reads every member.
"""

from __future__ import annotations

import json
import math
import os
import numbers

import numpy as np

from .. import random as _random
from ..io import load_npz, save_npz, write_atomic
from .config import CheckpointError, ConfigError, build_model
from .validate import check_meta, config_from_json

__all__ = ["load_checkpoint", "read_meta", "restore_model", "save_checkpoint", "write_atomic"]

CHECKPOINT_FORMAT = "minicnn-checkpoint"
CHECKPOINT_VERSION = 1
META_LIMIT = 16 << 20  # bytes of meta.json: config, classes, schedule, metrics rows


def _split_arrays(obj, prefix, arrays):
    """JSON-able copy of ``obj``: ndarrays moved to ``arrays[key]``, references in their place."""
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
            if obj["__array__"] not in arrays:
                raise CheckpointError(
                    f"meta.json refers to an array {obj['__array__']!r} that is not there"
                )
            return arrays[obj["__array__"]]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def save_checkpoint(path, model, meta, optimizer=None, scheduler=None):
    """Write ``path`` atomically: model state, optimizer buffers, ``meta`` (JSON-able), schedule
    and RNG."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = dict(
        meta,
        format=CHECKPOINT_FORMAT,
        format_version=CHECKPOINT_VERSION,
        rng=_random.get_rng_state(),
    )
    if optimizer is not None:
        meta["optimizer"] = _split_arrays(optimizer.state_dict(), "optimizer", arrays)
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    save_npz(path, arrays)


def _check_meta_member(key, shape, dtype):
    if key == "meta.json" and (dtype != np.uint8 or len(shape) != 1 or shape[0] > META_LIMIT):
        raise ValueError(
            f"meta.json must be a uint8 text of at most {META_LIMIT} bytes, got {shape} {dtype}"
        )


def read_meta(path):
    """The checked meta.json of a checkpoint, reading nothing else; CheckpointError if it is off."""
    path = os.fspath(path)
    try:
        arrays = load_npz(path, check=_check_meta_member, keys={"meta.json"})
    except (OSError, ValueError) as e:
        raise CheckpointError(str(e)) from None
    if "meta.json" not in arrays:
        raise CheckpointError(
            f"{path!r} is not a minicnn training checkpoint (no meta.json inside; "
            f"a bare weights file can be loaded with model.load_state_dict(load_npz(…)))"
        )
    try:
        meta = json.loads(arrays["meta.json"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path!r}: unreadable meta.json ({e})") from None
    if isinstance(meta, dict) and meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path!r} is not a minicnn training checkpoint")
    check_meta(meta, path)
    return meta


def model_for(meta, path):
    """A model of the checkpoint's architecture and class count, without drawing initial weights."""
    from ..summary import skip_init

    config = config_from_json(meta["config"], path)
    try:
        with skip_init():
            return build_model(config.model, len(meta["classes"]), config.variant)
    except (ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path!r}: {e}") from None


def _expected_members(model):
    """check(key, shape, dtype) for load_npz, and the byte budget: what ``model`` can hold."""
    state = {f"model/{k}": tuple(np.shape(v)) for k, v in model.state_dict().items()}
    shapes = set(state.values()) | {()}
    model_bytes = sum(np.asarray(v).nbytes for v in model.state_dict().values())

    def check(key, shape, dtype):
        if key.startswith("model/"):
            if key not in state:
                raise ValueError(f"the model has no {key[len('model/') :]!r}")
            if tuple(shape) != state[key]:
                raise ValueError(f"shape {tuple(shape)}, the model expects {state[key]}")
        elif key.startswith("optimizer/"):
            if tuple(shape) not in shapes:
                raise ValueError(f"shape {tuple(shape)} is no parameter's shape")
        elif key != "meta.json":
            raise ValueError("not a member of a minicnn checkpoint")
        _check_meta_member(key, shape, dtype)
        if dtype.kind not in "fiub":
            raise ValueError(f"dtype {dtype} is not a number type")

    return check, 4 * model_bytes + META_LIMIT + (1 << 20)


def load_checkpoint(path, model=None):
    """(meta dict, model state dict, arrays) of a checkpoint written by ``save_checkpoint``.

    Everything is checked before it is inflated: meta.json against the schema, every array's
    declared shape against ``model`` (by default the checkpoint's own architecture).
    """
    path = os.fspath(path)
    meta = read_meta(path)
    model = model_for(meta, path) if model is None else model
    check, budget = _expected_members(model)
    try:
        arrays = load_npz(path, check=check, max_bytes=budget)
    except (OSError, ValueError) as e:
        raise CheckpointError(str(e)) from None
    arrays.pop("meta.json", None)
    state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    return meta, state, arrays


def restore_model(path, device="cpu"):
    """(model in eval mode on ``device``, meta) from a checkpoint; CheckpointError if unfit."""
    path = os.fspath(path)
    meta = read_meta(path)
    model = model_for(meta, path)
    _, state, _ = load_checkpoint(path, model)
    _load_model_state(model, state, path, meta["config"]["model"])
    return model.to(device).eval(), meta


def _load_model_state(model, state, path, name):
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{path!r} does not fit a {name}: {' '.join(first[:3])}") from None


def _same_structure(saved, fresh, where):
    """CheckpointError unless ``saved`` has ``fresh``'s keys, lengths and kinds of values."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            raise CheckpointError(f"{where}: expected the keys {sorted(fresh)}, got {_keys(saved)}")
        for k in fresh:
            _same_structure(saved[k], fresh[k], f"{where}.{k}")
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise CheckpointError(f"{where}: expected a list of {len(fresh)}, got {saved!r:.60}")
        for i, (a, b) in enumerate(zip(saved, fresh)):
            _same_structure(a, b, f"{where}[{i}]")
    elif isinstance(fresh, bool) or fresh is None:
        if type(saved) is not type(fresh):
            raise CheckpointError(f"{where}: expected {fresh!r}-like, got {saved!r:.60}")
    elif isinstance(fresh, numbers.Real):
        if (
            isinstance(saved, bool)
            or not isinstance(saved, numbers.Real)
            or not math.isfinite(saved)
        ):
            raise CheckpointError(f"{where}: expected a finite number, got {saved!r:.60}")
    elif type(saved) is not type(fresh):
        raise CheckpointError(f"{where}: expected a {type(fresh).__name__}, got {saved!r:.60}")


def _keys(obj):
    return sorted(obj) if isinstance(obj, dict) else type(obj).__name__


def restore_training_state(meta, arrays, optimizer, scheduler, path):
    """Load a checkpoint's optimizer and schedule after checking them (else CheckpointError)."""
    if "optimizer" not in meta or "scheduler" not in meta:
        raise CheckpointError(
            f"{path!r} holds no optimizer or schedule state (a best.npz?); resume from last.npz"
        )
    saved = _join_arrays(meta["optimizer"], arrays)
    fresh = optimizer.state_dict()
    _same_structure(
        saved.get("param_groups") if isinstance(saved, dict) else saved,
        fresh["param_groups"],
        f"{path}: optimizer param_groups",
    )
    _check_optimizer_state(saved.get("state"), len(optimizer._params()), path)
    _same_structure(meta["scheduler"], scheduler.state_dict(), f"{path}: scheduler")
    try:
        optimizer.load_state_dict(saved)
        scheduler.load_state_dict(meta["scheduler"])
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path!r}: optimizer state does not fit ({e})") from None


def _check_optimizer_state(state, count, path):
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r}: optimizer state is not an object")
    for key, buffers in state.items():
        if not (str(key).isdigit() and int(key) < count and isinstance(buffers, dict)):
            raise CheckpointError(f"{path!r}: optimizer state {key!r} names no parameter")
        for name, value in buffers.items():
            ok = isinstance(value, np.ndarray) or (
                isinstance(value, numbers.Real) and math.isfinite(value)
            )
            if not ok:
                raise CheckpointError(
                    f"{path!r}: optimizer buffer {name!r} of parameter {key} is {value!r:.60}"
                )
