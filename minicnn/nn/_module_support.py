"""What ``Module`` hands back and checks, kept beside it: hook handles (torch.utils.hooks'
``RemovableHandle``), ``load_state_dict``'s result and its plan of copies with torch's messages."""

from __future__ import annotations

import itertools
from collections import namedtuple

import numpy as np

from ..tensor import Tensor

__all__ = ["RemovableHandle"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it could not match (torch's namedtuple)."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class RemovableHandle:
    """Returned by ``register_forward_hook``/``register_forward_pre_hook``; ``.remove()`` undoes
    it."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _as_array(value):
    """A checkpoint value as a NumPy array, or None when it is neither a Tensor nor an array."""
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    return None


def _quoted(keys):
    return ", ".join(f'"{k}"' for k in keys)


def _plan_copies(own, state_dict):
    """([(tensor, array to copy in)], [error messages]) for the keys present in both dicts."""
    plan, errors = [], []
    for key, t in own.items():
        if key not in state_dict:
            continue
        value = _as_array(state_dict[key])
        if value is None:
            errors.append(
                f'While copying the parameter named "{key}", expected a NumPy array or '
                f"Tensor from checkpoint but received {type(state_dict[key]).__name__}"
            )
        elif tuple(value.shape) != t.shape:
            errors.append(
                f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} "
                f"from checkpoint, the shape in current model is {t.shape}."
            )
        else:
            plan.append((t, value))
    return plan, errors
