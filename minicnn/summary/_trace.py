"""Run a model once under hooks and turn what it did into summary rows.

Module pre-forward/forward hooks keep a stack of the modules being called; ``trace_ops`` reports
every op. Ops run while a *leaf* module (one without children: Conv2d, ReLU, BatchNorm2d, …) is
on top of the stack make up that module's row; an op run directly in a container's ``forward``
(a residual ``out + identity``, ``minicnn.cat``, ``x.flatten(1)``) gets a row of its own, named
after the container and the op (``layer1.0.add``, ``features.denseblock1.denselayer2.cat``). A
name seen again (a ReLU module called twice, a second add in one forward) gets ``_1``, ``_2``, …
as torch.fx names its nodes.

Each traced tensor carries its receptive field and its depth: the number of weight ops (conv,
linear) on the longest path from the input to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..autograd import trace_ops
from ..tensor import Tensor
from ._rules import INPUT_FIELD, WEIGHT_OPS, op_field, op_label, op_macs

__all__ = ["Row", "Trace", "trace_model"]


@dataclass
class Row:
    """One line of the summary: a leaf module call or an op run in a container's forward."""

    name: str
    type: str
    kind: str  # "module" or "op"
    output_shape: tuple
    params_trainable: int = 0
    params_non_trainable: int = 0  # Parameters with requires_grad=False (frozen)
    buffers: int = 0  # floating-point buffers (BN running stats), not params
    macs: int = 0
    memory_bytes: int = 0  # the output's bytes (0 when no new tensor is made)
    rf: tuple | None = None  # receptive field size (H, W) in input pixels
    jump: tuple | None = None  # (H, W) input pixels between neighbouring outputs
    start: tuple | None = None  # (H, W) input coordinate of the first output's centre

    @property
    def params(self):
        return self.params_trainable + self.params_non_trainable


@dataclass
class Trace:
    """What one forward pass did: the rows plus the whole-pass counters."""

    rows: list = field(default_factory=list)
    macs_conv_linear: int = 0
    weight_layers: int = 0  # conv/linear ops executed
    depth: int = 0  # weight ops on the longest input-to-output path
    output_field: tuple | None = None
    output_shape: tuple = ()


class _Frame:
    """A module call in progress; a leaf's frame collects the ops it runs."""

    __slots__ = ("module", "leaf", "ops")

    def __init__(self, module, leaf):
        self.module, self.leaf, self.ops = module, leaf, []


class _Tracer:
    def __init__(self, model):
        self.paths = {}
        for name, m in model.named_modules():
            self.paths.setdefault(id(m), name)
        self.param_ids = {id(p) for p in model.parameters()}
        self.buffer_ids = {id(b) for b in model.buffers() if b.dtype.kind == "f"}
        self.stack, self.seen_names, self.counted = [], set(), set()
        self.info = {}  # id(tensor) -> (tensor, field, depth); the tensor is kept alive
        self.new_outputs = set()
        self.trace = Trace()

    # ---- per tensor ----------------------------------------------------------------------------
    def field_of(self, t):
        entry = self.info.get(id(t))
        return entry[1] if entry is not None else None

    def depth_of(self, t):
        entry = self.info.get(id(t))
        return entry[2] if entry is not None else 0

    def add_input(self, x):
        self.info[id(x)] = (x, (INPUT_FIELD, INPUT_FIELD), 0)

    # ---- hooks ---------------------------------------------------------------------------------
    def pre_hook(self, module, args):
        inside_leaf = bool(self.stack) and self.stack[-1].leaf
        if not inside_leaf:
            self.stack.append(_Frame(module, all(m is None for m in module._modules.values())))

    def post_hook(self, module, args, out):
        frame = self.stack[-1] if self.stack else None
        if frame is None or frame.module is not module:
            return None  # a module called inside a leaf: part of that leaf's row
        self.stack.pop()
        if frame.leaf:
            self.leaf_row(frame, _first_tensor(out))
        return None

    def op_hook(self, fn, args, kwargs, out):
        name = fn.__name__
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, Tensor)]
        depth = max((self.depth_of(t) for t in tensors), default=0) + (name in WEIGHT_OPS)
        self.info[id(out)] = (out, op_field(name, args, kwargs, out, self.field_of), depth)
        self.new_outputs.add(id(out))
        macs = op_macs(name, args, kwargs, out)
        if name in WEIGHT_OPS:
            self.trace.macs_conv_linear += macs
            self.trace.weight_layers += 1
        op = (name, tensors, macs)
        if self.stack and self.stack[-1].leaf:
            self.stack[-1].ops.append(op)
        elif not (name == "Cat" and len(tensors) == 1):  # cat([x]): nothing joined, no row
            parent = self.paths.get(id(self.stack[-1].module), "") if self.stack else ""
            shown = _shown_name(name, tensors, out)
            self.add_row(_join(parent, op_label(shown)), shown, "op", out, [op], ())

    # ---- rows ----------------------------------------------------------------------------------
    def leaf_row(self, frame, out):
        m = frame.module
        path = self.paths.get(id(m))
        if path is None:  # not registered in the model: name it after its class
            parent = self.paths.get(id(self.stack[-1].module), "") if self.stack else ""
            path = _join(parent, m._get_name().lower())
        own = list(m._parameters.values()) + list(m._buffers.values())
        self.add_row(path or m._get_name(), m._get_name(), "module", out, frame.ops, own)

    def add_row(self, name, type_, kind, out, ops, own_state):
        row = Row(
            _unique(name, self.seen_names), type_, kind, tuple(out.shape) if out is not None else ()
        )
        for t in list(own_state) + [t for _, tensors, _ in ops for t in tensors]:
            self.count_state(row, t)
        row.macs = sum(m for _, _, m in ops)
        if out is not None:
            if id(out) in self.new_outputs:
                row.memory_bytes = out.numel() * out.dtype.itemsize
                self.new_outputs.discard(id(out))
            f = self.field_of(out)
            if f is not None:
                row.rf, row.jump, row.start = (tuple(axis[i] for axis in f) for i in range(3))
        self.trace.rows.append(row)

    def count_state(self, row, t):
        """Add a parameter or buffer to the first row that uses it (shared ones count once)."""
        if t is None or id(t) in self.counted:
            return
        if id(t) in self.param_ids:
            if t.requires_grad:
                row.params_trainable += t.numel()
            else:
                row.params_non_trainable += t.numel()
        elif id(t) in self.buffer_ids:
            row.buffers += t.numel()
        else:
            return
        self.counted.add(id(t))


def _shown_name(name, tensors, out):
    """A reshape (N, ...) -> (N, M) is ``flatten`` (``x.flatten(1)``); other ops keep their name."""
    if (
        name == "Reshape"
        and tensors
        and len(out.shape) == 2
        and len(tensors[0].shape) >= 3
        and out.shape[0] == tensors[0].shape[0]
    ):
        return "Flatten"
    return name


def _first_tensor(out):
    """The tensor a module returned (the first one of a tuple/list/dict), or None."""
    if isinstance(out, Tensor):
        return out
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for item in items:
        t = _first_tensor(item)
        if t is not None:
            return t
    return None


def _all_tensors(out):
    if isinstance(out, Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    return [t for item in items for t in _all_tensors(item)]


def _join(parent, name):
    return f"{parent}.{name}" if parent else name


def _unique(name, seen):
    candidate, i = name, 0
    while candidate in seen:
        i += 1
        candidate = f"{name}_{i}"
    seen.add(candidate)
    return candidate


def trace_model(model, x):
    """Run ``model(x)`` (the caller sets eval mode and no_grad) and return its :class:`Trace`."""
    tracer = _Tracer(model)
    tracer.add_input(x)
    handles = []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(tracer.pre_hook))
            handles.append(m.register_forward_hook(tracer.post_hook))
        with trace_ops(tracer.op_hook):
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    outs = _all_tensors(out)
    trace = tracer.trace
    trace.depth = max((tracer.depth_of(t) for t in outs), default=0)
    if outs:
        trace.output_shape = tuple(outs[0].shape)
        f = tracer.field_of(outs[0])
        trace.output_field = None if f is None else tuple(tuple(a[i] for a in f) for i in range(3))
    return trace
