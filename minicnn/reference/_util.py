"""Small helpers shared by the reference ops: argument pairs and float64 copies."""

import numpy as np


def pair(value):
    """(a, b) from an int or a pair, as torch's integer-or-tuple size arguments."""
    return (int(value), int(value)) if np.ndim(value) == 0 else tuple(int(v) for v in value)


def f64(array):
    """A float64 copy (None stays None): the references compute in float64 whatever comes in."""
    return None if array is None else np.array(array, dtype=np.float64)
