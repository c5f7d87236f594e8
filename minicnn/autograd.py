"""Reverse-mode automatic differentiation.

Every differentiable op is a :class:`Function` subclass with ``forward`` and ``backward`` side by
side (micrograd / Chainer / torch.autograd.Function style):

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):            # a, b: arrays (numpy or cupy), never Tensors
            ctx.save_for_backward(a, b)
            return a * b
        @staticmethod
        def backward(ctx, dout):           # one gradient array per forward input, or None
            a, b = ctx.saved_tensors
            return dout * b, dout * a

``Function.apply(*args, **kwargs)`` unwraps Tensor arguments to arrays, runs ``forward`` on the
backend of their common device (``ctx.backend``; ``ctx.xp`` is its array module), and — when a
gradient is needed — links the output to a graph node. ``Tensor.backward`` walks the nodes in
reverse topological order; gradients of a tensor used by several ops are summed, so residual
connections and DenseNet's concatenations are right.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

from .backends import common_device, get_backend
from .backends.numpy_backend import add_arrays, add_into
from .tensor import Tensor

__all__ = [
    "Function",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "backward",
    "trace_ops",
]

_state = threading.local()
_trace_hooks = []  # callables hook(function_class, args, kwargs, output): see trace_ops


@contextlib.contextmanager
def trace_ops(hook):
    """Call ``hook(fn, args, kwargs, out)`` after every Function.apply inside the block.

    ``args`` are the op's positional arguments as passed (Tensors included), ``out`` the result
    Tensor. Tools such as minicnn.summary use it to see every op of a forward pass.
    """
    _trace_hooks.append(hook)
    try:
        yield
    finally:
        _trace_hooks.remove(hook)


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


class set_grad_enabled(contextlib.ContextDecorator):
    """Context manager / decorator that turns graph recording on or off (like torch's)."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = is_grad_enabled()
        _state.grad_enabled = self.mode

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev
        return False


class no_grad(set_grad_enabled):
    """``with minicnn.no_grad():`` — ops inside record no graph and outputs need no grad."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    def __init__(self):
        super().__init__(True)


class GradShapeError(RuntimeError, ValueError):
    """backward() on a non-scalar without ``grad``: a RuntimeError as in torch, and a ValueError."""


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, backend, needs_input_grad):
        self.backend = backend
        self.xp = backend.xp
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Node:
    """A recorded op: its Function, context and the input tensors it needs gradients for."""

    __slots__ = ("fn", "ctx", "inputs")

    def __init__(self, fn, ctx, inputs):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs  # tuple over forward args: Tensor (needs grad) or None


class Function:
    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, dout):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        tensors, needs, raw = [], [], []  # one pass over args (an op's own per-call cost)
        for a in args:
            if isinstance(a, Tensor):
                tensors.append(a)
                needs.append(a._requires_grad)
                raw.append(a._data)
            else:
                needs.append(False)
                raw.append(a)
        device = common_device(cls.__name__, tensors)
        needs = tuple(needs)
        record = any(needs) and is_grad_enabled()
        ctx = Context(get_backend(device), needs)
        out = cls.forward(ctx, *raw, **kwargs)
        if isinstance(out, np.generic):  # NumPy reductions return scalars; keep 0-d arrays
            out = np.asarray(out)
        result = Tensor._wrap(out, device)
        if record:
            result.requires_grad = True
            result._node = Node(cls, ctx, tuple(a if n else None for a, n in zip(args, needs)))
        for hook in _trace_hooks:
            hook(cls, args, kwargs, result)
        return result


def _topological_order(root):
    """Nodes reachable from ``root`` (a Tensor), each after every tensor that consumes it."""
    order, visited = [], set()
    stack = [(root, False)]
    push, pop, seen = stack.append, stack.pop, visited.add
    while stack:
        t, processed = pop()
        if processed:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        seen(id(t))
        push((t, True))
        node = t._node
        if node is not None:
            # Leaves are pushed first, so popped last: each is processed right after its last
            # consumer, and its post-accumulate-grad hook (DDP's bucket) fires early in backward.
            inner = []
            for i in node.inputs:
                if i is not None and id(i) not in visited:
                    if i._node is None:
                        push((i, False))
                    else:
                        inner.append((i, False))
            stack.extend(inner)
    order.reverse()
    return order


def _refcount(a):
    return sys.getrefcount(a)


def _counts(a):
    """(references to array a, references to its memory owner a.base or None)."""
    base = a.base
    return _refcount(a), (None if base is None else _refcount(base))


def _calibrate():
    """What _counts reports when the caller's local variable is the only other reference: to a
    fresh array, and to the memory owner of a view (held by the view alone). Measured through
    the very call the engine makes, so it stays right on interpreters that count references on
    the stack differently.
    """
    a = np.empty(4)
    sole, _ = _counts(a)
    v = a.reshape(2, 2)
    del a
    _, sole_base = _counts(v)
    return sole, sole_base


_SOLE_REFERENCE, _SOLE_BASE_REFERENCE = _calibrate()


def _is_fresh(n_refs, n_base_refs, a):
    """Whether array ``a`` (with the counts _counts gave) can be reached only through the
    engine's local variable: a fresh result, or a view of one (an op's backward reshaped it)."""
    if n_refs > _SOLE_REFERENCE or not getattr(a.flags, "writeable", True):
        return False
    if a.base is None:
        return True
    plain_owner = getattr(a.base, "base", 0) is None and hasattr(a.base, "flags")
    return plain_owner and n_base_refs <= _SOLE_BASE_REFERENCE


def _add_grad(grads, owned, key, ig, ig_is_ours):
    """grads[key] += ig without aliasing bugs.

    ``owned`` holds the keys whose array only the engine holds (a sum it allocated, or a fresh
    array a backward returned and nobody else references): those are updated in place. Any other
    array may be shared — Add hands the same dout to both inputs, Cat hands out views of it, a
    user's grad may be in there — and is never written to: the first sum allocates a new one.
    """
    cur = grads.get(key)
    if cur is None:
        grads[key] = ig
        if ig_is_ours:
            owned.add(key)
        return
    same_dtype = cur.dtype == ig.dtype
    if key in owned and same_dtype:
        add_into(cur, ig)  # cur += ig, on the cpu helpers' pool for big NumPy arrays
    elif ig_is_ours and same_dtype:
        grads[key] = add_into(ig, cur)
        owned.add(key)
    else:  # threaded for Cat's channel slices too
        grads[key] = add_arrays(cur, ig) if same_dtype else cur + ig
        owned.add(key)


def backward(root, grad, retain_graph=False):
    """Propagate ``grad`` (an array shaped like root) from ``root`` to every leaf that needs it.

    Gradients of a tensor used several times are summed in place where that is safe (see
    _add_grad), and a fresh gradient array reaches a leaf's ``.grad`` without a copy.
    """
    grads = {id(root): grad}
    owned = set()
    for t in _topological_order(root):
        key = id(t)
        g = grads.pop(key, None)
        if g is None:
            continue
        g_is_ours = key in owned
        owned.discard(key)
        node = t._node
        if node is None:  # a leaf: accumulate into .grad
            if t.requires_grad:
                t._accumulate_grad(g, owned=g_is_ours)
                for hook in tuple(getattr(t, "_post_accumulate_grad_hooks", {}).values()):
                    hook(t)
            continue
        if node.ctx is None:
            raise RuntimeError(
                "backward: trying to backward through the graph a second time; "
                "pass retain_graph=True to the first backward()"
            )
        if t._retains_grad:
            t._accumulate_grad(g)
        in_grads = node.fn.backward(node.ctx, g)
        in_grads = list(in_grads) if isinstance(in_grads, (tuple, list)) else [in_grads]
        if len(in_grads) < len(node.inputs):
            in_grads += [None] * (len(node.inputs) - len(in_grads))
        for i, inp in enumerate(node.inputs):
            ig, in_grads[i] = in_grads[i], None  # ig is now our only reference, if it is fresh
            if inp is None or ig is None:
                continue
            if isinstance(ig, np.generic):
                ig = np.asarray(ig)
            if ig.shape != inp._data.shape:
                raise RuntimeError(
                    f"{node.fn.__name__}.backward returned a gradient of shape {tuple(ig.shape)} "
                    f"for an input of shape {inp.shape}"
                )
            # Fresh = owns its memory and nothing else refers to it (not dout, not a saved array,
            # not another input's gradient); with retain_graph the context may hand it out again.
            fresh = not retain_graph and _is_fresh(*_counts(ig), ig)
            _add_grad(grads, owned, id(inp), ig, fresh)
            del ig
        if not retain_graph:
            node.ctx = None


def _tensor_backward(self: Tensor, grad=None, retain_graph: bool = False) -> None:
    """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad``.

    ``grad`` may be omitted only for a one-element tensor (it then defaults to 1).
    """
    if not self.requires_grad:
        raise RuntimeError("backward: tensor does not require grad and has no grad_fn")
    xp = get_backend(self.device).xp
    if grad is None:
        if self.numel() != 1:
            raise GradShapeError(
                f"backward: grad can be implicitly created only for scalar outputs; "
                f"this tensor has shape {self.shape}, pass grad= of that shape"
            )
        g = xp.ones(self._data.shape, dtype=self.dtype)
    else:
        g = grad._data if isinstance(grad, Tensor) else xp.asarray(grad)
        if tuple(g.shape) != self.shape:
            raise ValueError(
                f"backward: grad has shape {tuple(g.shape)}, tensor has shape {self.shape}"
            )
        g = g.astype(self.dtype, copy=False)
    backward(self, g, retain_graph=retain_graph)


Tensor.backward = _tensor_backward
