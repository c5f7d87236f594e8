"""The geometry of a convolution and of a pooling, computed and checked once, by the op.

``Conv2dGeometry`` and ``Pool2dGeometry`` hold every size of one call (letters as everywhere in
minicnn: N batch, C channels, H x W input, K output channels, R x S kernel or window, P x Q
output; stride (sh, sw), padding (ph, pw), dilation (dh, dw), G groups). The op builds one from
the argument shapes (minicnn/ops/conv.py, pool.py); the output size is computed here and nowhere
else; the backends receive the object and only assert that their arrays match it. The C++
extensions bind a struct with the same field names (csrc/geometry.h) built from these objects.

Sizes are checked here, before anything is allocated, on every device: each extent, and each
in-plane index (H·W, P·Q) and per-group reduction (C/G·R·S, K/G·R·S), must fit the 32-bit ints
the kernels index with, and no tensor may have 2^63 elements or more (the flat index is 64-bit).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import KW_ONLY, dataclass, field, replace
from functools import cached_property
from typing import Optional

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

__all__ = ["Conv2dGeometry", "Pool2dGeometry", "conv2d_output_size", "pool2d_output_size"]


def conv2d_output_size(n: int, r: int, stride: int, pad: int, dil: int) -> int:
    """Output length along one axis: floor((n + 2 pad - dil (r - 1) - 1) / stride) + 1.

    ``pad`` here is the total padding on both sides divided by two; Conv2dGeometry adds its
    asymmetric ``extra`` to n."""
    return (n + 2 * pad - dil * (r - 1) - 1) // stride + 1


def pool2d_output_size(n: int, r: int, stride: int, pad: int, dil: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape``: floor (or ceil) of (n + 2 pad - dil (r - 1) - 1) / stride,
    plus 1; with ceil_mode a last window that would start at or past n + pad is dropped."""
    span = n + 2 * pad - dil * (r - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def check_pool_padding(op: str, kernel_size, padding) -> None:
    """Pooling pads by at most half the window (torch's rule; nn.MaxPool2d checks it early)."""
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(
            f"{op}: padding should be at most half of kernel_size, got "
            f"padding={tuple(padding)} and kernel_size={tuple(kernel_size)}"
        )


def _check_ints(g, names: str) -> None:
    """Each named field of ``g`` is an int, or a tuple of ints (NumPy integers are made Python
    ints)."""
    for name in names.split():
        v = getattr(g, name)
        if type(v) is int:  # the common case, without the ABC checks below
            continue
        items = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral):
                raise TypeError(f"{g.op}: geometry field {name} must be an int, got {v!r}")
        ints = tuple(int(item) for item in items)
        object.__setattr__(g, name, ints if isinstance(v, (tuple, list)) else ints[0])


def _check_index_sizes(op: str, shapes: dict, planes: dict, reductions: dict) -> None:
    """The size limits of the module docstring; the error names the op and the offending shape."""
    for what, shape in shapes.items():
        if math.prod(shape) > INT64_MAX:
            raise ValueError(f"{op}: {what} of shape {shape} has 2^63 elements or more")
        if max(shape, default=0) > INT32_MAX:
            raise ValueError(
                f"{op}: {what} of shape {shape} has an extent that does not fit a "
                f"32-bit int (each dimension must be < 2^31)"
            )
    for what, (shape, plane) in planes.items():
        if plane[0] * plane[1] > INT32_MAX:
            raise ValueError(
                f"{op}: {what} of shape {shape} has planes of {plane[0]} x {plane[1]} "
                f"= {plane[0] * plane[1]} pixels; the kernels index a plane with "
                f"32-bit ints (at most 2^31 - 1 pixels)"
            )
    for what, size in reductions.items():
        if size > INT32_MAX:
            raise ValueError(
                f"{op}: {what} = {size} exceeds 2^31 - 1 (the reduction index of "
                f"the kernels would overflow)"
            )


def _window_fields(stride, padding, dilation) -> dict:
    """The fields sh, sw, ph, pw, dh, dw from the (stride, padding, dilation) pairs."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    return dict(sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)


@dataclass(frozen=True)
class _Geometry2d:
    """What both geometries hold: the input (N, C, H, W), the window's stride (sh, sw), padding
    (ph, pw) and dilation (dh, dw), and the output size P x Q that a subclass computes."""

    N: int
    C: int
    H: int
    W: int
    _: KW_ONLY
    sh: int = 1
    sw: int = 1
    ph: int = 0
    pw: int = 0
    dh: int = 1
    dw: int = 1
    op: str = field(default="", compare=False, repr=False)  # errors name it; default_op if ""
    P: int = field(init=False)
    Q: int = field(init=False)

    def _check_sizes(self, int_fields: str) -> None:
        """The named fields are ints and the input sizes are >= 0 (first, op defaults)."""
        if not self.op:
            object.__setattr__(self, "op", self.default_op)
        _check_ints(self, "N C H W sh sw ph pw dh dw " + int_fields)
        if min(self.N, self.C, self.H, self.W) < 0:
            raise ValueError(f"{self.op}: sizes must be >= 0, got input {self.x_shape}")

    def _set_output(self, P, Q, shapes: dict, reductions: dict) -> None:
        """Set P and Q, then check the index sizes of the input, the output and ``shapes``."""
        object.__setattr__(self, "P", int(P))
        object.__setattr__(self, "Q", int(Q))
        planes = {"input": (self.x_shape, (self.H, self.W)), "output": (self.y_shape, (P, Q))}
        shapes = {"input": self.x_shape, **shapes, "output": self.y_shape}
        _check_index_sizes(self.op, shapes, planes, reductions)

    stride = property(lambda self: (self.sh, self.sw))
    padding = property(lambda self: (self.ph, self.pw))
    dilation = property(lambda self: (self.dh, self.dw))
    x_shape = property(lambda self: (self.N, self.C, self.H, self.W), doc="(N, C, H, W)")


@dataclass(frozen=True)
class Conv2dGeometry(_Geometry2d):
    """x (N, C, H, W) * w (K, C/G, R, S) -> y (N, K, P, Q), checked; P, Q are computed.

    Output pixel (p, q) reads input pixel (p sh - ph + r dh, q sw - pw + s dw) for kernel offset
    (r, s); outside the input reads 0. ``eh``/``ew`` are extra zero rows/columns at the bottom/
    right (torch's asymmetric padding='same'): the op appends them to x and hands the backends
    ``kernel_geometry``, the same convolution of the padded input with eh = ew = 0.
    """

    K: int
    R: int
    S: int
    G: int = 1
    extra: tuple = (0, 0)  # (eh, ew)
    default_op = "conv2d"  # the name errors give when ``op`` is not given

    @classmethod
    def of(
        cls,
        x_shape,
        w_shape,
        stride=(1, 1),
        padding=(0, 0),
        dilation=(1, 1),
        groups=1,
        extra=(0, 0),
        op="conv2d",
    ) -> Conv2dGeometry:
        """The geometry of conv2d(x, w) from the shapes and the (pairs of) hyperparameters; an
        unbatched (C, H, W) x is one image (N = 1), and errors name the shape as given."""
        if len(x_shape) not in (3, 4) or len(w_shape) != 4:
            raise ValueError(
                f"{op}: input must be 3-D or 4-D and weight 4-D, got shapes "
                f"{tuple(x_shape)} and {tuple(w_shape)}"
            )
        (N, C, H, W), (K, _, R, S) = (1, *x_shape) if len(x_shape) == 3 else x_shape, w_shape
        window = _window_fields(stride, padding, dilation)
        g = cls(N, C, H, W, K, R, S, G=groups, extra=tuple(extra), **window, op=op)
        if tuple(w_shape) != g.w_shape:
            raise ValueError(
                f"{op}: input {tuple(x_shape)} has {C} channels but weight "
                f"{tuple(w_shape)} with groups={groups} expects "
                f"{w_shape[1] * groups} (C must equal weight.shape[1] * groups)"
            )
        return g

    def __post_init__(self):
        self._check_sizes("K R S G extra")
        op = self.op
        if min(self.sh, self.sw, self.dh, self.dw) < 1:
            raise ValueError(
                f"{op}: stride and dilation must be >= 1, got stride {self.stride}, "
                f"dilation {self.dilation}"
            )
        if min(self.ph, self.pw, self.eh, self.ew) < 0:
            raise ValueError(f"{op}: padding must be >= 0, got {self.padding} (+{self.extra})")
        self._check_channels()
        Hp, Wp = self.H + 2 * self.ph + self.eh, self.W + 2 * self.pw + self.ew
        Rd, Sd = self.dh * (self.R - 1) + 1, self.dw * (self.S - 1) + 1
        if Rd > Hp or Sd > Wp:
            raise ValueError(
                f"{op}: kernel larger than the padded input: input {self.x_shape} "
                f"padded to {Hp} x {Wp}, weight {self.w_shape} with dilation "
                f"{self.dilation} spans {Rd} x {Sd}"
            )
        P = conv2d_output_size(self.H + self.eh, self.R, self.sh, self.ph, self.dh)
        Q = conv2d_output_size(self.W + self.ew, self.S, self.sw, self.pw, self.dw)
        reductions = {
            "input channels per group x kernel (C/G·R·S)": self.Cg * self.R * self.S,
            "output channels per group x kernel (K/G·R·S)": self.Kg * self.R * self.S,
        }
        self._set_output(P, Q, {"weight": self.w_shape}, reductions)

    def _check_channels(self):
        op, K, G = self.op, self.K, self.G
        if G < 1:
            raise ValueError(f"{op}: groups must be a positive integer, got {G!r}")
        if K < 1 or self.C < 1 or self.R < 1 or self.S < 1 or self.C < G:
            raise ValueError(
                f"{op}: weight {self.w_shape} must have at least one output channel, "
                f"one input channel per group and a non-empty kernel"
            )
        if K % G:
            raise ValueError(
                f"{op}: out_channels {K} of weight {self.w_shape} must be divisible by groups={G}"
            )
        if self.C % G:
            raise ValueError(
                f"{op}: input {self.x_shape} has {self.C} channels, not divisible by "
                f"groups={G} (C must equal weight.shape[1] * groups)"
            )

    # ---- derived sizes ------------------------------------------------------------------------
    Cg = property(lambda self: self.C // self.G, doc="input channels per group")
    Kg = property(lambda self: self.K // self.G, doc="output channels per group")
    eh = property(lambda self: self.extra[0], doc="extra zero rows at the bottom")
    ew = property(lambda self: self.extra[1], doc="extra zero columns at the right")
    groups = property(lambda self: self.G)
    w_shape = property(
        lambda self: (self.K, self.C // self.G, self.R, self.S), doc="(K, C/G, R, S)"
    )
    y_shape = property(lambda self: (self.N, self.K, self.P, self.Q), doc="(N, K, P, Q)")

    @cached_property
    def kernel_geometry(self) -> Conv2dGeometry:
        """This convolution of x padded by ``extra``: symmetric padding only (what kernels take)."""
        if self.extra == (0, 0):
            return self
        return replace(self, H=self.H + self.eh, W=self.W + self.ew, extra=(0, 0))


@dataclass(frozen=True)
class Pool2dGeometry(_Geometry2d):
    """x (N, C, H, W) pooled to y (N, C, P, Q) with window R x S: max and average pooling.

    Window (p, q) starts at input pixel (p sh - ph, q sw - pw); its offset (r, s) reads
    (p sh - ph + r dh, q sw - pw + s dw). ``ceil_mode`` keeps a last partial window (see
    pool2d_output_size). Average pooling's divisor options (``count_include_pad``,
    ``divisor_override``) travel here too. Adaptive pooling (``Pool2dGeometry.adaptive``) uses
    N, C, H, W, P, Q only.
    """

    R: int = 1
    S: int = 1
    _: KW_ONLY
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    default_op = "pool2d"
    out: tuple | None = field(default=None, repr=False)  # adaptive pooling: (P, Q) as given

    @classmethod
    def of(
        cls,
        x_shape,
        kernel_size,
        stride,
        padding=(0, 0),
        dilation=(1, 1),
        ceil_mode=False,
        op="pool2d",
        **divisor,
    ) -> Pool2dGeometry:
        """The geometry of a max or average pooling of an (N, C, H, W) input, pairs given;
        ``divisor``: average pooling's count_include_pad and divisor_override."""
        window = _window_fields(stride, padding, dilation)
        return cls(*x_shape, *kernel_size, **window, ceil_mode=bool(ceil_mode), **divisor, op=op)

    @classmethod
    def adaptive(cls, x_shape, out_size, op="adaptive_avg_pool2d") -> Pool2dGeometry:
        """Adaptive pooling of an (N, C, H, W) input to ``out_size`` (P, Q)."""
        return cls(*x_shape, op=op, out=tuple(out_size))

    def __post_init__(self):
        self._check_sizes("R S")
        P, Q = self._window_output() if self.out is None else self.out
        self._check_divisor()
        self._set_output(P, Q, {}, {})

    def _check_divisor(self):
        """count_include_pad made a bool; divisor_override None or a non-zero int."""
        op, d = self.op, self.divisor_override
        object.__setattr__(self, "count_include_pad", bool(self.count_include_pad))
        if d is None:
            return
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{op}: divisor_override must be an int or None, got {d!r}")
        if d == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
        object.__setattr__(self, "divisor_override", int(d))

    def _window_output(self):
        op, kernel = self.op, (self.R, self.S)
        if min(kernel + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"{op}: kernel_size, stride and dilation must be >= 1 and padding "
                f">= 0, got {kernel}, {self.stride}, {self.dilation}, {self.padding}"
            )
        check_pool_padding(op, kernel, self.padding)
        out = tuple(
            pool2d_output_size(n, r, s, p, d, self.ceil_mode)
            for n, r, s, p, d in zip(
                (self.H, self.W), kernel, self.stride, self.padding, self.dilation
            )
        )
        if min(out) < 1:
            raise ValueError(
                f"{op}: input of shape {self.x_shape} with kernel_size={kernel}, stride="
                f"{self.stride}, padding={self.padding}, dilation={self.dilation}, ceil_mode="
                f"{self.ceil_mode} gives output size {out}; it must be at least 1 (the kernel is "
                f"larger than the padded input)"
            )
        return out

    kernel_size = property(lambda self: (self.R, self.S))
    out_size = property(lambda self: (self.P, self.Q))
    y_shape = property(lambda self: (self.N, self.C, self.P, self.Q), doc="(N, C, P, Q)")
