"""Tensor: an array (numpy.ndarray on "cpu"/"emu", cupy.ndarray on "cuda") + device + autograd links."""
from __future__ import annotations

import numbers

import numpy as np

from . import autograd
from .backends import canonical_device, get_backend

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
bool_ = np.dtype(np.bool_)
FLOAT_DTYPES = (float32, float64)

_DTYPE_NAMES = {"float32": float32, "float": float32, "float64": float64, "double": float64,
                "int64": int64, "long": int64, "int32": int32, "int": int32, "bool": bool_}


def as_dtype(dtype):
    """Normalise a dtype argument (np.dtype, numpy type, or name) or raise TypeError."""
    if isinstance(dtype, str):
        if dtype not in _DTYPE_NAMES:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[dtype]
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if d not in FLOAT_DTYPES + (int64, int32, bool_):
        raise TypeError(f"dtype {d} is not supported; use float32, float64, int64, int32 or bool")
    return d


def _category(dtype):
    return 0 if dtype.kind == "b" else 1 if dtype.kind in "iu" else 2


def _promote(dtypes):
    """Promote within the highest category present (torch: int64 with float32 is float32)."""
    top = max(_category(d) for d in dtypes)
    same = [d for d in dtypes if _category(d) == top]
    out = same[0]
    for d in same[1:]:
        out = np.promote_types(out, d)
    return out


def result_type(*operands):
    """PyTorch's type promotion for Tensors and Python numbers.

    Dimensioned tensors decide the dtype; a 0-d tensor or a Python number only matters when it is
    of a higher category (bool < integer < float): then 0-d tensors promote among themselves, and
    a Python float gives float32 (the default dtype), an int int64. So float32 + 0-d float64 is
    float32, int64 + 0.5 is float32, as in torch (NumPy would give float64 for both).
    """
    dimensioned = [t.dtype for t in operands if isinstance(t, Tensor) and t.ndim > 0]
    zero_dim = [t.dtype for t in operands if isinstance(t, Tensor) and t.ndim == 0]
    scalars = [bool_ if isinstance(x, (bool, np.bool_)) else int64 if isinstance(x, numbers.Integral)
               else float32 for x in operands if not isinstance(x, Tensor)]
    result = _promote(dimensioned) if dimensioned else None
    for group in (zero_dim, scalars):
        if group:
            g = _promote(group)
            if result is None or _category(g) > _category(result):
                result = g
    return result


def common_device(op: str, tensors) -> str:
    """The one device all ``tensors`` are on; mixing devices is an error naming both."""
    device = None
    for t in tensors:
        if device is None:
            device = t.device
        elif t.device != device:
            raise ValueError(f"{op}: expected all tensors on one device, got {device!r} and {t.device!r}")
    return device or "cpu"


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
        return cls(array, device)

    # ---- basic attributes ---------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and self._data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
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
            raise ValueError(f"data: new value has shape {tuple(array.shape)}, tensor has {self.shape}")
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
            raise ValueError(f"item: only one-element tensors can be converted, got shape {self.shape}")
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

    def clone(self):
        from .ops import shape as _shape
        return _shape.Clone.apply(self)

    def to(self, *args, dtype=None, device=None):
        """``t.to("cpu")``, ``t.to(minicnn.float64)``, ``t.to(device, dtype)``; differentiable."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = device or a.device, dtype or a.dtype
            elif isinstance(a, str) and a.split(":")[0].lower() in ("cpu", "emu", "cuda"):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and as_dtype(dtype) != self.dtype:
            from .ops.arith import Cast
            out = Cast.apply(out, as_dtype(dtype)) if out.requires_grad and \
                as_dtype(dtype) in FLOAT_DTYPES else \
                Tensor(out._data.astype(as_dtype(dtype)), out.device)
        if device is not None and canonical_device(device) != out.device:
            from .ops.shape import ToDevice
            out = ToDevice.apply(out, canonical_device(device))
        return out

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def cpu(self):
        return self.to("cpu")

    # ---- autograd -----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad``.

        ``grad`` may be omitted only for a one-element tensor (it then defaults to 1).
        """
        if not self.requires_grad:
            raise RuntimeError("backward: tensor does not require grad and has no grad_fn")
        if grad is None:
            if self.numel() != 1:
                raise autograd.GradShapeError(
                    f"backward: grad can be implicitly created only for scalar outputs; "
                    f"this tensor has shape {self.shape}, pass grad= of that shape")
            g = get_backend(self.device).xp.ones(self._data.shape, dtype=self.dtype)
        else:
            g = grad._data if isinstance(grad, Tensor) else get_backend(self.device).xp.asarray(grad)
            if tuple(g.shape) != self.shape:
                raise ValueError(f"backward: grad has shape {tuple(g.shape)}, tensor has shape {self.shape}")
            g = g.astype(self.dtype, copy=False)
        autograd.backward(self, g, retain_graph=retain_graph)

    def _accumulate_grad(self, g, owned=False):
        """.grad += g. ``owned``: the engine holds the only reference to g, so a first gradient
        is taken as it is instead of copied (another holder of g must never see .grad change)."""
        if self.grad is None:
            data = g if owned and g.dtype == self.dtype else g.astype(self.dtype, copy=True)
            self.grad = Tensor(data, self.device)
        else:
            self.grad._data += g

    def zero_grad(self):
        self.grad = None

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor)`` runs each time backward has finished accumulating this leaf's ``.grad``
        (torch's); DistributedDataParallel uses it. Returns a handle whose ``remove()`` undoes it."""
        if not self.is_leaf:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have one")
        hooks = self.__dict__.setdefault("_post_accumulate_grad_hooks", {})
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    # ---- operators (implemented in minicnn.ops) -----------------------------------------------
    def __add__(self, other):
        return _arith.add(self, other)

    def __radd__(self, other):
        return _arith.add(other, self)

    def __sub__(self, other):
        return _arith.sub(self, other)

    def __rsub__(self, other):
        return _arith.sub(other, self)

    def __mul__(self, other):
        return _arith.mul(self, other)

    def __rmul__(self, other):
        return _arith.mul(other, self)

    def __truediv__(self, other):
        return _arith.div(self, other)

    def __rtruediv__(self, other):
        return _arith.div(other, self)

    def __neg__(self):
        return _arith.Neg.apply(self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        return _arith.pow(self, exponent)

    def __matmul__(self, other):
        return _arith.matmul(self, other)

    def __rmatmul__(self, other):
        return _arith.matmul(other, self)

    def _compare(self, other, ufunc):
        if isinstance(other, Tensor):
            _arith.check_broadcast(ufunc.__name__, self, other)
        o = other._data if isinstance(other, Tensor) else other
        return Tensor(ufunc(self._data, o), self.device)

    def __eq__(self, other):
        return self._compare(other, get_backend(self.device).xp.equal)

    def __ne__(self, other):
        return self._compare(other, get_backend(self.device).xp.not_equal)

    def __lt__(self, other):
        return self._compare(other, get_backend(self.device).xp.less)

    def __le__(self, other):
        return self._compare(other, get_backend(self.device).xp.less_equal)

    def __gt__(self, other):
        return self._compare(other, get_backend(self.device).xp.greater)

    def __ge__(self, other):
        return self._compare(other, get_backend(self.device).xp.greater_equal)

    __hash__ = object.__hash__

    def __getitem__(self, index):
        return _shape.getitem(self, index)

    def _floating(self):
        return self if self.dtype in FLOAT_DTYPES else self.to(float32)

    def exp(self):
        return _arith.Exp.apply(self._floating())

    def log(self):
        return _arith.Log.apply(self._floating())

    def sqrt(self):
        return _arith.pow(self, 0.5)

    def sum(self, dim=None, keepdim=False):
        return _reduce.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return _reduce.mean(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _reduce.argmax(self, dim, keepdim)

    def reshape(self, *shape):
        return _shape.reshape(self, *shape)

    def view(self, *shape):
        return _shape.reshape(self, *shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _shape.flatten(self, start_dim, end_dim)

    def transpose(self, dim0, dim1):
        return _shape.transpose(self, dim0, dim1)

    def permute(self, *dims):
        return _shape.permute(self, *dims)

    def unsqueeze(self, dim):
        return _shape.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return _shape.squeeze(self, dim)

    def softmax(self, dim):
        return _activation.softmax(self, dim)

    def log_softmax(self, dim):
        return _activation.log_softmax(self, dim)

    def relu(self):
        return _activation.relu(self)

    @property
    def T(self):
        return _shape.permute(self, *reversed(range(self.ndim)))


class _HookHandle:
    def __init__(self, hooks, key):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


def _infer_dtype(data):
    """torch's rule: Python floats become float32, ints int64; NumPy arrays and scalars keep theirs."""
    if isinstance(data, (np.ndarray, np.generic)):
        return None
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
        if dtype is None and getattr(data, "dtype", None) is not None and data.dtype.kind == "f" \
                and data.dtype not in FLOAT_DTYPES:
            dtype = float32  # float16 and friends become float32
    try:
        array = np.array(data, dtype=None if dtype is None else as_dtype(dtype), copy=True)
    except (ValueError, TypeError) as e:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
    if array.dtype.kind not in "fiub":
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


def _random(s, d, method):
    from . import random as _random_mod
    return getattr(_random_mod.generator(), method)(size=s).astype(d)


randn = _factory("randn", lambda s, d: _random(s, d, "standard_normal"))
rand = _factory("rand", lambda s, d: _random(s, d, "random"))


def zeros_like(t, dtype=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


from .ops import activation as _activation  # noqa: E402  (ops import Tensor from here)
from .ops import arith as _arith  # noqa: E402
from .ops import reduce as _reduce  # noqa: E402
from .ops import shape as _shape  # noqa: E402
