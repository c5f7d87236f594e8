"""Shape ops: reshape/view/flatten, permute/transpose, (un)squeeze, cat, indexing, copies."""

from __future__ import annotations

import numbers
from typing import Sequence

from ..autograd import Function
from ..backends import DEVICES, canonical_device, common_device, get_backend
from ..dtypes import FLOAT_DTYPES, as_dtype, result_type
from ..tensor import Tensor
from ._util import normalize_dim


class Invertible(Function):
    """y = map(x, arg) for a map that moves or converts values one to one, so that
    dx = map(dy, inverse(x, arg)). A subclass gives ``map`` and ``inverse``."""

    @classmethod
    def forward(cls, ctx, a, arg):
        ctx.inverse = cls.inverse(a, arg)
        return cls.map(a, arg)

    @classmethod
    def backward(cls, ctx, dout):
        return cls.map(dout, ctx.inverse)


class Reshape(Invertible):
    map = staticmethod(lambda a, shape: a.reshape(shape))
    inverse = staticmethod(lambda a, shape: a.shape)


class Permute(Invertible):
    map = staticmethod(lambda a, dims: a.transpose(dims))
    inverse = staticmethod(lambda a, dims: tuple(sorted(range(len(dims)), key=dims.__getitem__)))


class Cast(Invertible):
    map = staticmethod(lambda a, dtype: a.astype(dtype))
    inverse = staticmethod(lambda a, dtype: a.dtype)


class Cat(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ctx.backend.concatenate(arrays, dim)  # cpu: threaded along the channels

    @staticmethod
    def backward(ctx, dout):
        grads, start = [None], 0  # None for ``dim``
        for size, needs in zip(ctx.sizes, ctx.needs_input_grad[1:]):
            if needs:
                index = [slice(None)] * dout.ndim
                index[ctx.dim] = slice(start, start + size)
                grads.append(dout[tuple(index)])
            else:
                grads.append(None)
            start += size
        return tuple(grads)


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index].copy()

    @staticmethod
    def backward(ctx, dout):
        g = ctx.xp.zeros(ctx.shape, dtype=ctx.dtype)
        ctx.xp.add.at(g, ctx.index, dout)  # handles repeated indices of advanced indexing
        return g


class Clone(Function):
    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, dout):
        return dout


class ToDevice(Function):
    @staticmethod
    def forward(ctx, a, device):
        ctx.source, ctx.target = ctx.backend, get_backend(device)
        return ctx.target.from_numpy(ctx.backend.to_numpy(a))

    @staticmethod
    def backward(ctx, dout):
        # dout lives on the target device; hand it back to the source backend.
        return ctx.source.from_numpy(ctx.target.to_numpy(dout))  # counted (backends/_transfers)

    @classmethod
    def apply(cls, a, device):
        out = super().apply(a, device)
        out.device = device
        return out


def _resolve_shape(op, numel, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"{op}: shape must be integers, got {shape}")
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise ValueError(f"{op}: invalid shape {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise ValueError(f"{op}: shape {shape} is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ValueError(f"{op}: shape {shape} is invalid for input of size {numel}")
    return shape


def reshape(x: Tensor, *shape) -> Tensor:
    return Reshape.apply(x, _resolve_shape("reshape", x.numel(), shape))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one (torch.flatten)."""
    if x.ndim == 0:
        return reshape(x, 1)
    s = normalize_dim("flatten", start_dim, x.ndim)
    e = normalize_dim("flatten", end_dim, x.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    merged = 1
    for d in x.shape[s : e + 1]:
        merged *= d
    return Reshape.apply(x, x.shape[:s] + (merged,) + x.shape[e + 1 :])


def permute(x: Tensor, *dims) -> Tensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    norm = tuple(normalize_dim("permute", d, x.ndim) for d in dims)
    if sorted(norm) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of {x.ndim} dimensions")
    return Permute.apply(x, norm)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    if x.ndim == 0:
        normalize_dim("transpose", dim0, 0), normalize_dim("transpose", dim1, 0)
        return x
    dims = list(range(x.ndim))
    a, b = normalize_dim("transpose", dim0, x.ndim), normalize_dim("transpose", dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, tuple(dims))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = normalize_dim("unsqueeze", dim, x.ndim + 1)
    return Reshape.apply(x, x.shape[:d] + (1,) + x.shape[d:])


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        return Reshape.apply(x, tuple(s for s in x.shape if s != 1))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    drop = {
        d for d in (normalize_dim("squeeze", d, x.ndim) for d in dims) if x.ndim and x.shape[d] == 1
    }
    if not drop:
        return x
    return Reshape.apply(x, tuple(s for i, s in enumerate(x.shape) if i not in drop))


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dim (torch.cat); shapes must agree elsewhere."""
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat: expected a list or tuple of Tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat: element {i} is a {type(t).__name__}, expected a Tensor")
        if t.ndim == 0:
            raise ValueError(f"cat: zero-dimensional tensor (element {i}) cannot be concatenated")
    common_device("cat", tensors)
    dtype = result_type(*tensors)  # mixed dtypes promote, as torch.cat
    tensors = [t.to(dtype) for t in tensors]
    ref = tensors[0]
    d = normalize_dim("cat", dim, ref.ndim)
    for i, t in enumerate(tensors[1:], 1):
        if (
            t.ndim != ref.ndim
            or t.shape[:d] + t.shape[d + 1 :] != ref.shape[:d] + ref.shape[d + 1 :]
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape}, incompatible with {ref.shape} "
                f"outside dim {d}"
            )
    return Cat.apply(d, *tensors)


def getitem(x, index):
    """Basic and integer-array indexing; boolean/Tensor indices are turned into arrays."""

    def conv(i):
        return i._data if isinstance(i, Tensor) else i

    index = tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)
    try:
        x._data[index]
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for shape {x.shape}: {e}") from None
    steps = _split_int_and_advanced(index)
    if steps is not None:  # NumPy would move the advanced dims first; torch selects ints first
        return GetItem.apply(GetItem.apply(x, steps[0]), steps[1])
    return GetItem.apply(x, index)


def _is_advanced(i):
    return not isinstance(i, (numbers.Integral, slice)) and i is not None and i is not Ellipsis


def _split_int_and_advanced(index):
    """For an index mixing integers with arrays, (basic index with the ints, the rest); else None.

    torch treats an integer as a plain select, so ``x[0, :, [0, 1]]`` keeps the sliced dim first;
    NumPy treats it as an advanced index broadcast with the list and moves the result dims first.
    """
    if not isinstance(index, tuple):
        return None
    ints = [isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in index]
    if not any(ints) or not any(_is_advanced(i) for i in index):
        return None
    first, second = [], []
    for i, is_int in zip(index, ints):
        if is_int:
            first.append(i)
        elif _is_advanced(i):
            width = (
                getattr(i, "ndim", 1)
                if getattr(getattr(i, "dtype", None), "kind", "") == "b"
                else 1
            )
            first.extend([slice(None)] * width)
            second.append(i)
        else:  # slice, None, Ellipsis
            first.append(i)
            second.append(slice(None) if i is None else i if i is Ellipsis else slice(None))
    return tuple(first), tuple(second)


# ---- Tensor's shape and conversion methods ------------------------------------------------------
def to(self: Tensor, *args, dtype=None, device=None) -> Tensor:
    """``t.to("cpu")``, ``t.to(minicnn.float64)``, ``t.to(device, dtype)``; differentiable."""
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = device or a.device, dtype or a.dtype
        elif isinstance(a, str) and a.split(":")[0].lower() in DEVICES:
            device = a
        else:
            dtype = a
    out = self
    if dtype is not None and as_dtype(dtype) != self.dtype:
        dtype = as_dtype(dtype)
        if out.requires_grad and dtype in FLOAT_DTYPES:
            out = Cast.apply(out, dtype)
        else:
            out = Tensor(out._data.astype(dtype), out.device)
    if device is not None and canonical_device(device) != out.device:
        out = ToDevice.apply(out, canonical_device(device))
    return out


Tensor.to = to
Tensor.clone = lambda self: Clone.apply(self)
Tensor.__getitem__ = lambda self, index: getitem(self, index)
Tensor.reshape = lambda self, *shape: reshape(self, *shape)
Tensor.view = lambda self, *shape: reshape(self, *shape)
Tensor.flatten = lambda self, start_dim=0, end_dim=-1: flatten(self, start_dim, end_dim)
Tensor.transpose = lambda self, dim0, dim1: transpose(self, dim0, dim1)
Tensor.permute = lambda self, *dims: permute(self, *dims)
Tensor.unsqueeze = lambda self, dim: unsqueeze(self, dim)
Tensor.squeeze = lambda self, dim=None: squeeze(self, dim)
Tensor.T = property(lambda self: permute(self, *reversed(range(self.ndim))))
