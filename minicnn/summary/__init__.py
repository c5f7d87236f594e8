"""Per-layer model summary: shapes, parameters, MACs, activation memory and receptive fields.

    s = minicnn.summary(model, (3, 224, 224))      # one forward pass at batch 1, evaluation mode
    print(s)                                      # the table and the totals
    s.to_dict(), s.to_json()                      # the same fields for tools
    Summary.from_dict(d), Summary.from_json(text)

The model runs once on random data under ``no_grad`` in evaluation mode (its train/eval flags are
restored afterwards), so the summary describes inference: dropout is skipped and GoogLeNet's
auxiliary heads do not run (their parameters are reported as not used by the forward pass).

Rows: one per call of a leaf module (a module without children) and one per op run directly in a
container's forward (``layer1.0.add``, ``features.denseblock1.cat_2``; the table shows their type as
the function, ``add()``); see ``_trace``. Receptive fields: see ``_rules``.

Parameters: ``params`` counts Parameters, as torchvision's num_params and torch-summary do;
Parameters with ``requires_grad=False`` are reported as non-trainable. BatchNorm's running mean
and variance are *buffers*: reported in their own column of the JSON and in the totals, never in
``params`` (Keras would call them non-trainable params); the integer ``num_batches_tracked`` is not
counted anywhere. A parameter or buffer is counted on the first row that uses it.

MACs: every op is counted by the rules in ``_rules`` (conv K·C/G·R·S·P·Q·N, linear in·out·N, pools
one per window element, LRN size + 2 per element, BN 2 per element, ReLU and add 1 per element,
concatenation and reshapes 0). ``macs_conv_linear`` counts conv and linear layers only, which is
what torchvision's published "GFLOPS" are (multiply-accumulates of conv and linear; at 224x224
alexnet 0.71, vgg16 15.47, googlenet 1.50, resnet18 1.81, resnet50 4.09, densenet121 2.83, which
the torchvision variants here reproduce). ``macs`` adds everything else (pools, LRN, BN, ReLU,
residual adds): +0.1-0.2% for AlexNet and VGG-16, +1.0% for ResNet-50, +1.5% for GoogLeNet and
+1.8% for DenseNet-121, whose BN-ReLU pairs run on every concatenated input. ``flops_forward`` is
2 · macs; ``flops_backward`` estimates the backward pass as twice the forward (a gradient for the
input and one for the weights per layer).

Memory: ``memory_bytes`` of a row is the size of its output (0 when the layer returns its input,
as dropout in evaluation); ``activation_bytes`` sums them: what a training forward pass keeps for
backward, roughly, not the peak of an inference pass.

Depth: conv and linear ops on the longest path from the input to the output (VGG-16: 16,
GoogLeNet: 22, ResNet-50: 50); ``weight_layers`` counts all conv/linear ops run.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..autograd import no_grad
from ..tensor import as_dtype, tensor
from ._collapse import collapse_rows
from ._format import compare_rows, compare_table, format_table, plot_compare
from ._trace import Row, trace_model

__all__ = [
    "Row",
    "Summary",
    "SummaryError",
    "compare_rows",
    "compare_table",
    "plot_compare",
    "skip_init",
    "summary",
]

_DERIVED = ("params", "flops_forward", "flops_backward", "largest_layer", "feature_rf")


class SummaryError(ValueError):
    """The model cannot run on the requested input (too small, wrong channels, bad size)."""


@dataclass
class Summary:
    model: str
    input_shape: tuple  # (N, C, H, W): batch included
    dtype: str
    rows: list = field(default_factory=list)
    params_trainable: int = 0
    params_non_trainable: int = 0
    params_unused: int = 0  # parameters no op of this forward pass touched
    buffers: int = 0
    macs: int = 0  # all ops
    macs_conv_linear: int = 0  # conv and linear only (torchvision's "GFLOPS")
    activation_bytes: int = 0  # sum of the rows' outputs
    state_bytes: int = 0  # parameters and buffers
    depth: int = 0
    weight_layers: int = 0
    output_shape: tuple = ()
    output_rf: tuple | None = None  # receptive field (H, W) of the output, in input pixels

    @property
    def params(self):
        return self.params_trainable + self.params_non_trainable

    @property
    def flops_forward(self):
        return 2 * self.macs

    @property
    def flops_backward(self):
        return 2 * self.flops_forward

    @property
    def feature_rf(self):
        """Receptive field (H, W) of one position of the last feature map larger than 1x1 (what
        the network sees before its global pool or classifier), or None."""
        for r in reversed(self.rows):
            if (
                r.jump is not None
                and r.jump[0] is not None
                and len(r.output_shape) == 4
                and r.output_shape[2] * r.output_shape[3] > 1
            ):
                return r.rf
        return None

    @property
    def largest_layer(self):
        """{name, type, params, fraction} of the row with the most parameters, or None;
        ``fraction`` is of the parameters the forward pass used."""
        used = sum(r.params for r in self.rows)
        if used == 0:
            return None
        big = max(self.rows, key=lambda r: r.params)
        return {
            "name": big.name,
            "type": big.type,
            "params": big.params,
            "fraction": big.params / used,
        }

    def __str__(self):
        return format_table(self)

    def to_dict(self):
        """Plain JSON types: tuples become lists; derived totals are included."""
        d = _jsonable(asdict(self))
        d["rows"] = [dict(_jsonable(asdict(r)), params=r.params) for r in self.rows]
        for key in _DERIVED:
            d[key] = _jsonable(getattr(self, key))
        return d

    def to_json(self, indent=2):
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d):
        row_keys = {f.name for f in fields(Row)}
        rows = [Row(**{k: _tupled(v) for k, v in r.items() if k in row_keys}) for r in d["rows"]]
        keys = {f.name for f in fields(cls)} - {"rows"}
        return cls(rows=rows, **{k: _tupled(v) for k, v in d.items() if k in keys})

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tupled(value):
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _check_input_size(input_size, batch_size):
    ok = (
        isinstance(input_size, (tuple, list))
        and len(input_size) >= 1
        and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0
            for n in input_size
        )
    )
    if not ok:
        raise SummaryError(
            f"summary: input_size must be a tuple of positive ints such as "
            f"(3, 224, 224), got {input_size!r}"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise SummaryError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    return (int(batch_size),) + tuple(int(n) for n in input_size)


def _model_state(model):
    """(device, dtype) of the model's first parameter, else ("cpu", float32)."""
    for p in model.parameters():
        return p.device, p.dtype
    return "cpu", np.dtype(np.float32)


def summary(model, input_size=None, *, batch_size=1, dtype=None, name=None, depth=None):
    """Run ``model`` once on a random (batch_size, *input_size) input and summarise it.

    ``input_size`` defaults to the model's ``default_input_size`` attribute, else (3, 224, 224);
    ``dtype`` to the model's parameter dtype; ``name`` (shown in the table) to the model's ``arch``
    attribute or class name; ``depth`` (a positive int, as torchinfo's) collapses the rows of
    modules nested deeper than ``depth`` into their ancestor's row (the totals do not change).
    Raises :class:`SummaryError` (a ValueError) when the model cannot run on that input.
    """
    if input_size is None:
        input_size = getattr(model, "default_input_size", (3, 224, 224))
    shape = _check_input_size(input_size, batch_size)
    if depth is not None and (
        isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1
    ):
        raise SummaryError(f"summary: depth must be a positive int, got {depth!r}")
    device, model_dtype = _model_state(model)
    dtype = model_dtype if dtype is None else as_dtype(dtype)
    data = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x = tensor(data, device=device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad(), np.errstate(all="ignore"):  # values do not matter, only shapes and counts
            trace = trace_model(model, x)
    except ValueError as e:  # the engine's shape errors: a user mistake
        label = name or getattr(model, "arch", model._get_name())
        raise SummaryError(f"{label} cannot run on an input of shape {shape}: {e}") from e
    finally:
        for m, mode in modes:
            m.training = mode
    s = _totals(model, trace, shape, dtype, name)
    if depth is not None:
        s.rows = collapse_rows(s.rows, depth, {n: m._get_name() for n, m in model.named_modules()})
    return s


def _totals(model, trace, shape, dtype, name):
    params = list(model.parameters())
    buffers = [b for b in model.buffers() if b.dtype.kind == "f"]
    s = Summary(
        model=name or getattr(model, "arch", model._get_name()),
        input_shape=shape,
        dtype=str(np.dtype(dtype)),
        rows=trace.rows,
    )
    s.params_trainable = sum(p.numel() for p in params if p.requires_grad)
    s.params_non_trainable = sum(p.numel() for p in params if not p.requires_grad)
    s.params_unused = s.params - sum(r.params for r in trace.rows)
    s.buffers = sum(b.numel() for b in buffers)
    s.macs = sum(r.macs for r in trace.rows)
    s.macs_conv_linear = trace.macs_conv_linear
    s.activation_bytes = sum(r.memory_bytes for r in trace.rows)
    s.state_bytes = sum(t.numel() * t.dtype.itemsize for t in params + buffers)
    s.depth, s.weight_layers = trace.depth, trace.weight_layers
    s.output_shape = trace.output_shape
    s.output_rf = trace.output_field[0] if trace.output_field else None
    return s


@contextlib.contextmanager
def skip_init():
    """``with skip_init(): model = build()`` builds layers without drawing their initial weights.

    torch's ``skip_init`` idea: a summary needs shapes, not values, and drawing VGG-16's 138M
    random weights takes longer than its forward pass. Inside the block the fill functions of
    ``minicnn.nn.init`` do nothing, so parameters and buffers keep whatever their freshly
    allocated memory holds: use such a model for summaries only.
    """
    from ..nn import init

    saved = {n: getattr(init, n) for n in init.__all__ if n.endswith("_")}
    try:
        for n in saved:
            setattr(init, n, _no_fill)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def _no_fill(tensor, *args, **kwargs):
    return tensor
