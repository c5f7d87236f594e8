"""Tensor: an array (numpy.ndarray on "cpu"/"emu", cupy.ndarray on "cuda"), a device, autograd
links.

This module holds the data side of a Tensor and the factories (``tensor``, ``zeros``, ``randn``,
…).
The methods that record ops are attached where those ops live, so nothing here imports them:
``backward`` by minicnn/autograd.py; ``to`` and ``clone``, indexing and the shape methods by
minicnn/ops/shape.py; the arithmetic and comparison operators, ``exp``/``log``/``sqrt`` by
ops/arith.py; ``sum``/``mean``/``argmax`` by ops/reduce.py; ``relu``/``softmax``/``log_softmax``
by ops/activation.py.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import random as _random
from .backends import canonical_device, get_backend
from .dtypes import FLOAT_DTYPES, as_dtype, bfloat16, bool_, float16, float32, float64, int32, int64
from .dtypes import _DTYPE_NAMES as _DTYPE_NAMES  # re-exported: older imports take them from here
from .dtypes import result_type as result_type


class Tensor:
    """A multi-dimensional array with a device and, if ``requires_grad``, a gradient.

    Create tensors with :func:`minicnn.tensor`, :func:`minicnn.zeros`, … rather than this class.
    """

    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to our operators

    def __init__(self, array, device="cpu", requires_grad=False):
        self._data = array
        self.device = device
        self.grad = None
        self._node = None
        self._retains_grad = False
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, device):
        """What __init__(array, device) makes, without its checks (an op's result: no grad)."""
        t = cls.__new__(cls)
        t._data, t.device, t.grad, t._node = array, device, None, None
        t._retains_grad = t._requires_grad = False
        return t

    # ---- basic attributes ---------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}"
            )
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def data(self):
        """A tensor sharing this one's storage, outside the graph (as torch's ``.data``)."""
        return Tensor(self._data, self.device)

    @data.setter
    def data(self, value):
        array = value._data if isinstance(value, Tensor) else value
        if tuple(array.shape) != self.shape:
            raise ValueError(
                f"data: new value has shape {tuple(array.shape)}, tensor has {self.shape}"
            )
        self._data = array

    @property
    def shape(self):
        return tuple(self._data.shape)

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self._data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def is_leaf(self):
        return self._node is None

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        self._retains_grad = True

    def __repr__(self):
        extra = f", device='{self.device}'" if self.device != "cpu" else ""
        if self.dtype != float32:
            extra += f", dtype={self.dtype}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.fn.__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        return f"tensor({body}{extra})"

    # ---- conversion ---------------------------------------------------------------------------
    def numpy(self):
        """The values as a NumPy array (shares memory on "cpu"/"emu"; a copy from "cuda")."""
        return get_backend(self.device).to_numpy(self._data)

    def tolist(self):
        return self.numpy().tolist()

    def item(self):
        if self.numel() != 1:
            raise ValueError(
                f"item: only one-element tensors can be converted, got shape {self.shape}"
            )
        return self.numpy().reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def detach(self):
        return Tensor(self._data, self.device)

    # ---- autograd (backward: attached by minicnn/autograd.py) --------------------------------
    def _accumulate_grad(self, g, owned=False):
        """.grad += g. ``owned``: the engine holds the only reference to g, so a first gradient
        is taken as it is instead of copied (another holder of g must never see .grad change)."""
        if self.grad is None:
            data = g if owned and g.dtype == self.dtype else g.astype(self.dtype, copy=True)
            self.grad = Tensor(data, self.device)
        else:
            from .backends.numpy_backend import add_into  # tensor.py loads before the backends

            add_into(self.grad._data, g)  # += (threaded for big NumPy arrays)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop ``.grad`` (or, with ``set_to_none=False``, fill it with zeros in place): what
        Module.zero_grad and Optimizer.zero_grad do to each parameter."""
        if self.grad is None:
            return
        if set_to_none:
            self.grad = None
        else:
            self.grad._data[...] = 0

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor)`` runs each time backward has finished accumulating this leaf's ``.grad``
        (torch's); DistributedDataParallel uses it. The handle returned undoes it: ``remove()``."""
        if not self.is_leaf:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have one")
        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", {})
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    __hash__ = object.__hash__  # the comparison operators (minicnn/ops/arith.py) return Tensors

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def bfloat16(self):
        return self.to(bfloat16)

    def is_floating_point(self):
        return self.dtype in FLOAT_DTYPES

    def cpu(self):
        return self.to("cpu")


class _HookHandle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


def _infer_dtype(data):
    """torch's rule: Python floats become float32, ints int64; NumPy arrays/scalars keep theirs."""
    if isinstance(data, (np.ndarray, np.generic)):
        return None  # their own dtype (float16 and bfloat16 arrays included), as torch.from_numpy
    try:
        a = np.asarray(data)
    except (ValueError, TypeError) as e:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
    if a.dtype.kind == "f":
        return float32
    if a.dtype.kind in "iu":
        return int64
    return None


def tensor(data, dtype=None, device="cpu", requires_grad=False):
    """Create a tensor from a list, scalar, NumPy array or Tensor (a copy)."""
    device = canonical_device(device)
    if isinstance(data, Tensor):
        data = data.numpy()
    if dtype is None:
        dtype = _infer_dtype(data)
        if (
            dtype is None
            and getattr(data, "dtype", None) is not None
            and data.dtype.kind == "f"
            and data.dtype not in FLOAT_DTYPES
        ):
            dtype = float32  # float128 and other floats we lack become float32
    try:
        array = np.array(data, dtype=None if dtype is None else as_dtype(dtype), copy=True)
    except (ValueError, TypeError) as e:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
    if array.dtype.kind not in "fiub" and array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"tensor: unsupported data of dtype {array.dtype}")
    if array.dtype not in FLOAT_DTYPES + (int64, int32, bool_):
        array = array.astype(int64 if array.dtype.kind in "iu" else float32)
    backend = get_backend(device)
    return Tensor(backend.from_numpy(array), device, requires_grad=requires_grad)


def _factory(name, fill):
    def make(*size, dtype=float32, device="cpu", requires_grad=False):
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
        if not all(isinstance(s, numbers.Integral) and s >= 0 for s in size):
            raise ValueError(f"{name}: sizes must be non-negative integers, got {size}")
        dev = canonical_device(device)
        array = fill(tuple(int(s) for s in size), as_dtype(dtype))
        return Tensor(get_backend(dev).from_numpy(array), dev, requires_grad=requires_grad)

    make.__name__ = name
    make.__doc__ = f"minicnn.{name}(*size, dtype=float32, device='cpu', requires_grad=False)"
    return make


zeros = _factory("zeros", lambda s, d: np.zeros(s, d))
ones = _factory("ones", lambda s, d: np.ones(s, d))
empty = _factory("empty", lambda s, d: np.empty(s, d))


def _random_array(s, d, method):
    return getattr(_random.generator(), method)(size=s).astype(d)


randn = _factory("randn", lambda s, d: _random_array(s, d, "standard_normal"))
rand = _factory("rand", lambda s, d: _random_array(s, d, "random"))


def zeros_like(t, dtype=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)
