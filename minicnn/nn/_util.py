"""Constructor-argument checks shared by the layers: errors name the layer and the values."""

from __future__ import annotations

import numbers

from ..ops._util import pair
from ..tensor import empty, float32
from .parameter import Parameter

__all__ = ["check_int", "check_pair", "check_real", "new_parameter"]


def check_int(layer, name, value, minimum=1):
    """``value`` is an int >= minimum (not a bool), else TypeError/ValueError naming ``layer``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_pair(layer, name, value, minimum):
    """An int or a pair of ints, each >= minimum -> (a, b) (errors name the layer)."""
    return pair(layer, name, value, minimum)


def check_real(layer, name, value, low=None, high=None):
    """A real number (bools refused) within [low, high] where given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{layer}: {name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{layer}: {name} must be in [{low}, {high}], got {value}")
    return value


def new_parameter(shape, device=None, dtype=None):
    """An uninitialised Parameter (reset_parameters fills it), float32 on cpu by default."""
    return Parameter(
        empty(
            *shape,
            dtype=float32 if dtype is None else dtype,
            device="cpu" if device is None else device,
        )
    )
