"""Weight initialisation (torch.nn.init): fill a Tensor in place, drawing from minicnn.random.

Formulas (as torch):
  - Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    networks": xavier std = gain · sqrt(2 / (fan_in + fan_out)).
  - He et al. 2015, "Delving Deep into Rectifiers", sec. 2.2: kaiming std = gain / sqrt(fan), with
    gain = sqrt(2 / (1 + a²)) for leaky ReLU of slope a (sqrt(2) for ReLU).
  - A uniform U(-b, b) has std b / sqrt(3), so the uniform variants use b = sqrt(3) · std.
For a conv weight (K, C/groups, R, S): fan_in = C/groups · R · S, fan_out = K · R · S.

torch's default Conv2d/Linear init is ``kaiming_uniform_(w, a=sqrt(5))``, i.e.
b = sqrt(6 / ((1 + 5) · fan_in)) = 1 / sqrt(fan_in), and the bias U(-1/sqrt(fan_in),
1/sqrt(fan_in)).
Every function takes an optional ``generator`` (a numpy.random.Generator); by default it draws from
``minicnn.random.generator()``, so ``minicnn.manual_seed`` makes initialisation reproducible.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import random as _random
from ..autograd import no_grad
from ..backends import get_backend
from ..tensor import FLOAT_DTYPES, Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
]


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` (torch's table: relu √2, tanh 5/3, selu 3/4…)."""
    linear_fns = [
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    ]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) = (size(1) · receptive field, size(0) · receptive field)."""
    _check("_calculate_fan_in_and_fan_out", tensor, floating=False)
    if tensor.ndim < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 "
            f"dimensions, got shape {tensor.shape}"
        )
    receptive_field = int(np.prod(tensor.shape[2:], dtype=np.int64))
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(
            f"init: mode {mode!r} is not supported, please use one of 'fan_in', 'fan_out'"
        )
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _check(op, tensor, floating=True):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(tensor).__name__}")
    if floating and tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: expected a float32 or float64 tensor, got dtype {tensor.dtype}")


def _fill(tensor, values):
    """Write the NumPy array ``values`` into ``tensor``'s storage, in place, outside the graph."""
    with no_grad():
        tensor._data[...] = get_backend(tensor.device).from_numpy(
            np.asarray(values).astype(tensor.dtype, copy=False)
        )
    return tensor


def _draw_dtype(tensor):
    return np.float32 if tensor.dtype == np.float32 else np.float64


def _gen(generator):
    return _random.generator() if generator is None else generator


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    _check("uniform_", tensor)
    if not a <= b:
        raise ValueError(f"uniform_: expected a <= b, got a={a}, b={b}")
    # draw in the tensor's own precision: float32 draws are ~2x faster and need no cast
    u = _gen(generator).random(size=tensor.shape, dtype=_draw_dtype(tensor))
    u *= b - a
    u += a
    return _fill(tensor, u)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std²)."""
    _check("normal_", tensor)
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    z = _gen(generator).standard_normal(size=tensor.shape, dtype=_draw_dtype(tensor))
    z *= std
    z += mean
    return _fill(tensor, z)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std²) conditioned on [a, b] (absolute bounds), by rejection sampling.

    Each round draws enough normals to fill the rest at the acceptance rate P(a <= x <= b), so one
    or two rounds usually suffice; an interval holding almost none of the mass is refused.
    """
    _check("trunc_normal_", tensor)
    if not (std > 0 and a < b):
        raise ValueError(f"trunc_normal_: expected std > 0 and a < b, got std={std}, a={a}, b={b}")
    cdf = lambda x: 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))  # noqa: E731
    accept = cdf(b) - cdf(a)
    if accept < 1e-3:
        raise ValueError(
            f"trunc_normal_: [a, b] = [{a}, {b}] holds less than 1e-3 of N({mean}, {std}²)"
        )
    gen, n, kept = _gen(generator), tensor.numel(), [np.empty(0)]
    while n > 0:
        draw = gen.normal(mean, std, size=min(int(n / accept * 1.2) + 16, 1 << 22))
        draw = draw[(draw >= a) & (draw <= b)][:n]
        kept.append(draw)
        n -= draw.size
    return _fill(tensor, np.concatenate(kept).reshape(tensor.shape))


def constant_(tensor, val):
    """Fill with the value ``val``."""
    _check("constant_", tensor, floating=False)
    return _fill(tensor, np.full(tensor.shape, val))


def ones_(tensor):
    return constant_(tensor, 1)


def zeros_(tensor):
    return constant_(tensor, 0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-b, b) with b = gain · sqrt(6 / (fan_in + fan_out))  (Glorot & Bengio 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std²) with std = gain · sqrt(2 / (fan_in + fan_out))  (Glorot & Bengio 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def _kaiming_std(op, tensor, a, mode, nonlinearity):
    _check(op, tensor)
    if 0 in tensor.shape:
        return None  # nothing to fill (torch warns and returns)
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b) with b = sqrt(3) · gain / sqrt(fan)  (He et al. 2015)."""
    std = _kaiming_std("kaiming_uniform_", tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std²) with std = gain / sqrt(fan)  (He et al. 2015)."""
    std = _kaiming_std("kaiming_normal_", tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator)
