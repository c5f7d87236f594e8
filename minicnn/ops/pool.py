"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d (kernels: backend.<op>_forward/backward).

Input (N, C, H, W), or (C, H, W) unbatched (then the output is 3-D too). Output size along one axis
(torch's ``pooling_output_shape``), for input n, kernel R, stride s, padding p, dilation d:

    P = floor((n + 2p - d(R-1) - 1) / s) + 1                      (ceil_mode=False)
    P = ceil((n + 2p - d(R-1) - 1) / s) + 1, minus 1 if the last window would start at or past
        n + p (ceil_mode=True: a last, partial window is kept only if it starts inside the input
        or the left padding; it may run past the padded border)

with p ≤ R // 2 and P ≥ 1 required.
"""
from __future__ import annotations

import numbers

from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor, pair


# ---- argument checking --------------------------------------------------------------------------
def _check_input(op, x):
    """(N, C, H, W) or (C, H, W) float input; every non-batch dimension non-empty, as torch."""
    check_tensor(op, "input", x, ndim=(3, 4))
    if 0 in x.shape[-3:]:
        raise ValueError(f"{op}: expected a (N, C, H, W) or (C, H, W) input with non-empty C, H, "
                         f"W (only the batch may be empty), got shape {x.shape}")


def _output_size(n, r, stride, pad, dil, ceil_mode):
    """Output length along one axis (module docstring)."""
    span = n + 2 * pad - dil * (r - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def _pool_geometry(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (kernel_size, stride, padding, dilation, out_size) pairs for a pooling of x."""
    _check_input(op, x)
    kernel = pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) \
        else pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding should be at most half of kernel_size, got "
                         f"padding={padding} and kernel_size={kernel}")
    H, W = x.shape[-2:]
    out = tuple(_output_size(n, r, s, p, d, bool(ceil_mode))
                for n, r, s, p, d in zip((H, W), kernel, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(
            f"{op}: input of shape {x.shape} with kernel_size={kernel}, stride={stride}, "
            f"padding={padding}, dilation={dilation}, ceil_mode={bool(ceil_mode)} gives output size "
            f"{out}; it must be at least 1 (the kernel is larger than the padded input)")
    return kernel, stride, padding, dilation, out


def _batched(x):
    """(N, C, H, W) view of a 3-D or 4-D array, and whether it was unbatched."""
    return (x[None], True) if x.ndim == 3 else (x, False)


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
        kernel, stride, padding, dilation, out = geometry
        y, argmax = ctx.backend.max_pool2d_forward(x4, kernel, stride, padding, dilation, out)
        ctx.geometry, ctx.x_shape, ctx.unbatched = geometry, x4.shape, unbatched
        ctx.save_for_backward(argmax)
        indices_out.append(argmax[0] if unbatched else argmax)
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, dout):
        (argmax,) = ctx.saved_tensors
        kernel, stride, padding, dilation, _ = ctx.geometry
        d4 = dout[None] if ctx.unbatched else dout
        dx = ctx.backend.max_pool2d_backward(d4, argmax, ctx.x_shape, kernel, stride, padding,
                                             dilation)
        return dx[0] if ctx.unbatched else dx


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling, torch.nn.functional.max_pool2d. With ``return_indices`` returns (output,
    indices): int64, the flat h*W + w position of each maximum in its input plane (no gradient)."""
    geometry = _pool_geometry("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    indices = []
    y = MaxPool2d.apply(input, geometry=geometry, indices_out=indices)
    if return_indices:
        return y, Tensor._wrap(indices[0], input.device)
    return y


# ---- average pooling ----------------------------------------------------------------------------
class AvgPool2d(Function):
    """y[n, c, p, q] = Σ_{r<R, s<S} x[n, c, p·sh - ph + r, q·sw - pw + s] / divisor[p, q].

    divisor (torch's): ``divisor_override`` if given; else with count_include_pad the window area
    clipped to the padded input [-ph, H + ph) (a ceil_mode window may run past it); else the number
    of input pixels in the window. Backward: every pixel of a window gets dy / divisor.
    """

    @staticmethod
    def forward(ctx, x, geometry, count_include_pad, divisor_override):
        x4, unbatched = _batched(x)
        kernel, stride, padding, _, out = geometry
        y = ctx.backend.avg_pool2d_forward(x4, kernel, stride, padding, out, count_include_pad,
                                           divisor_override)
        ctx.args = (kernel, stride, padding, count_include_pad, divisor_override)
        ctx.x_shape, ctx.unbatched = x4.shape, unbatched
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, dout):
        d4 = dout[None] if ctx.unbatched else dout
        dx = ctx.backend.avg_pool2d_backward(d4, ctx.x_shape, *ctx.args)
        return dx[0] if ctx.unbatched else dx


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling, torch.nn.functional.avg_pool2d (DenseNet's 2×2 transition pooling)."""
    op = "avg_pool2d"
    geometry = _pool_geometry(op, input, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral):
            raise TypeError(f"{op}: divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
        divisor_override = int(divisor_override)
    return AvgPool2d.apply(input, geometry=geometry, count_include_pad=bool(count_include_pad),
                           divisor_override=divisor_override)


# ---- adaptive average pooling -------------------------------------------------------------------
class AdaptiveAvgPool2d(Function):
    """y[n, c, i, j] = mean of x[n, c, a_i:b_i, c_j:d_j] with bins a_i = floor(i·H/P),
    b_i = ceil((i+1)·H/P) (and likewise along W): bins cover the input, overlap where P ∤ H, and
    repeat pixels where P > H. Backward: every pixel of a bin gets dy / (bin area)."""

    @staticmethod
    def forward(ctx, x, out_size):
        x4, unbatched = _batched(x)
        y = ctx.backend.adaptive_avg_pool2d_forward(x4, out_size)
        ctx.x_shape, ctx.unbatched = x4.shape, unbatched
        return y[0] if unbatched else y

    @staticmethod
    def backward(ctx, dout):
        d4 = dout[None] if ctx.unbatched else dout
        dx = ctx.backend.adaptive_avg_pool2d_backward(d4, ctx.x_shape)
        return dx[0] if ctx.unbatched else dx


def _adaptive_size(op, output_size, H, W):
    """output_size: an int or a pair whose entries are ints >= 0 or None (= the input size)."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(output_size):
        size = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2 and all(
            v is None or is_int(v) for v in output_size):
        size = tuple(n if v is None else int(v) for v, n in zip(output_size, (H, W)))
    else:
        raise TypeError(f"{op}: output_size must be an int or a pair of ints/None, "
                        f"got {output_size!r}")
    if min(size) < 0:
        raise ValueError(f"{op}: output_size must be >= 0, got {output_size!r}")
    return size


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling to a fixed (P, Q), torch.nn.functional.adaptive_avg_pool2d."""
    op = "adaptive_avg_pool2d"
    check_tensor(op, "input", input, ndim=(3, 4))
    if 0 in input.shape[-2:]:
        raise ValueError(f"{op}: expected non-empty H and W, got input shape {input.shape}")
    size = _adaptive_size(op, output_size, *input.shape[-2:])
    return AdaptiveAvgPool2d.apply(input, out_size=size)
