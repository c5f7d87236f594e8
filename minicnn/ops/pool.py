"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d (kernels: backend.<op>_forward/backward).

Input (N, C, H, W), or (C, H, W) unbatched (then the output is 3-D too). The op checks the
arguments and computes a Pool2dGeometry once (minicnn/ops/geometry.py: the output size, torch's
``pooling_output_shape`` with ceil_mode; padding ≤ R // 2 and P ≥ 1 required) and hands it to
the backend.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor, pair
from .geometry import Pool2dGeometry

IntPair = Union[int, Tuple[int, int]]


# ---- argument checking --------------------------------------------------------------------------
def _check_input(op, x):
    """(N, C, H, W) or (C, H, W) float input; every non-batch dimension non-empty, as torch."""
    check_tensor(op, "input", x, ndim=(3, 4))
    if 0 in x.shape[-3:]:
        raise ValueError(
            f"{op}: expected a (N, C, H, W) or (C, H, W) input with non-empty C, H, "
            f"W (only the batch may be empty), got shape {x.shape}"
        )


def _shape4(x):
    """The (N, C, H, W) shape of a 4-D or unbatched 3-D input."""
    return (1, *x.shape) if x.ndim == 3 else x.shape


def _pool_geometry(
    op, x, kernel_size, stride, padding, dilation, ceil_mode, **divisor
) -> Pool2dGeometry:
    """The checked geometry of a max or average pooling of x (``divisor``: average pooling's
    count_include_pad and divisor_override)."""
    _check_input(op, x)
    kernel = pair(op, "kernel_size", kernel_size, 1)
    stride = (
        kernel
        if stride is None or (isinstance(stride, (tuple, list)) and not stride)
        else pair(op, "stride", stride, 1)
    )
    padding = pair(op, "padding", padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
    return Pool2dGeometry.of(
        _shape4(x), kernel, stride, padding, dilation, bool(ceil_mode), op, **divisor
    )


def _batched(x):
    """(N, C, H, W) view of a 3-D or 4-D array, and whether it was unbatched."""
    return (x[None], True) if x.ndim == 3 else (x, False)


def _run(unbatched, kernel, a, *args):
    """kernel(a, *args) on a batch: an unbatched (C, H, W) ``a`` runs as a batch of one."""
    out = kernel(a[None] if unbatched else a, *args)
    return out[0] if unbatched else out


# ---- max pooling --------------------------------------------------------------------------------
class MaxPool2d(Function):
    """y[n, c, p, q] = max_{r<R, s<S} x[n, c, p·sh - ph + r·dh, q·sw - pw + s·dw] (padding = -inf).

    The max over overlapping windows (R > stride) is AlexNet's "overlapping pooling" (Krizhevsky et
    al. 2012, §3.4: 3×3 windows with stride 2). Backward: dx[argmax] += dy — each window's gradient
    goes to the first maximum in row-major order, as torch (a subgradient at ties). A NaN in a
    window wins (torch's rule). A window that dilation makes read only padding gives -inf and
    torch's index, and passes no gradient (torch's backward sends it to that index, a wrong pixel).
    """

    @staticmethod
    def forward(ctx, x, geometry, indices_out):
        x4, unbatched = _batched(x)
        y, argmax = ctx.backend.max_pool2d_forward(x4, geometry)
        ctx.geometry, ctx.unbatched = geometry, unbatched
        ctx.save_for_backward(argmax)
        indices_out.append(argmax[0] if unbatched else argmax)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, dout):
        (argmax,) = ctx.saved_tensors
        return _run(ctx.unbatched, ctx.backend.max_pool2d_backward, dout, argmax, ctx.geometry)


def max_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Max pooling, torch.nn.functional.max_pool2d. With ``return_indices`` returns (output,
    indices): int64, the flat h*W + w position of each maximum in its input plane (no gradient)."""
    geometry = _pool_geometry(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode
    )
    indices = []
    y = MaxPool2d.apply(input, geometry=geometry, indices_out=indices)
    if return_indices:
        return y, Tensor._wrap(indices[0], input.device)
    return y


# ---- average pooling ----------------------------------------------------------------------------
class _LinearPool2d(Function):
    """A pooling linear in x: the backend's ``<kernel>_forward`` and ``<kernel>_backward``, each
    given the geometry (which carries every option)."""

    kernel: str

    @classmethod
    def forward(cls, ctx, x, geometry):
        ctx.geometry, ctx.unbatched = geometry, x.ndim == 3
        return _run(ctx.unbatched, getattr(ctx.backend, cls.kernel + "_forward"), x, geometry)

    @classmethod
    def backward(cls, ctx, dout):
        kernel = getattr(ctx.backend, cls.kernel + "_backward")
        return _run(ctx.unbatched, kernel, dout, ctx.geometry)


class AvgPool2d(_LinearPool2d):
    """y[n, c, p, q] = Σ_{r<R, s<S} x[n, c, p·sh - ph + r, q·sw - pw + s] / divisor[p, q].

    divisor (torch's): ``divisor_override`` if given; else with count_include_pad the window area
    clipped to the padded input [-ph, H + ph) (a ceil_mode window may run past it); else the number
    of input pixels in the window. Backward: every pixel of a window gets dy / divisor.
    """

    kernel = "avg_pool2d"


def avg_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: Optional[IntPair] = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> Tensor:
    """Average pooling, torch.nn.functional.avg_pool2d (DenseNet's 2×2 transition pooling)."""
    divisor = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    geometry = _pool_geometry(
        "avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode, **divisor
    )
    return AvgPool2d.apply(input, geometry=geometry)


# ---- adaptive average pooling -------------------------------------------------------------------
class AdaptiveAvgPool2d(_LinearPool2d):
    """y[n, c, i, j] = mean of x[n, c, a_i:b_i, c_j:d_j] with bins a_i = floor(i·H/P),
    b_i = ceil((i+1)·H/P) (and likewise along W): bins cover the input, overlap where P ∤ H, and
    repeat pixels where P > H. Backward: every pixel of a bin gets dy / (bin area)."""

    kernel = "adaptive_avg_pool2d"


def _adaptive_size(op, output_size, H, W):
    """output_size: an int or a pair whose entries are ints >= 0 or None (= the input size)."""

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(output_size):
        size = (int(output_size), int(output_size))
    elif (
        isinstance(output_size, (tuple, list))
        and len(output_size) == 2
        and all(v is None or is_int(v) for v in output_size)
    ):
        size = tuple(n if v is None else int(v) for v, n in zip(output_size, (H, W)))
    else:
        raise TypeError(
            f"{op}: output_size must be an int or a pair of ints/None, got {output_size!r}"
        )
    if min(size) < 0:
        raise ValueError(f"{op}: output_size must be >= 0, got {output_size!r}")
    return size


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Adaptive average pooling to a fixed (P, Q), torch.nn.functional.adaptive_avg_pool2d."""
    op = "adaptive_avg_pool2d"
    check_tensor(op, "input", input, ndim=(3, 4))
    if 0 in input.shape[-2:]:
        raise ValueError(f"{op}: expected non-empty H and W, got input shape {input.shape}")
    size = _adaptive_size(op, output_size, *input.shape[-2:])
    geometry = Pool2dGeometry.adaptive(_shape4(input), size, op)
    return AdaptiveAvgPool2d.apply(input, geometry=geometry)
