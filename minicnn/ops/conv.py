"""2-D convolution (a kernel family: backend.conv2d_forward / conv2d_backward)."""

from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

from ..amp.autocast import cast_inputs
from ..autograd import Function
from ..backends import common_device
from ..tensor import Tensor
from ._util import check_same_dtype, check_tensor, pair
from .geometry import Conv2dGeometry

IntPair = Union[int, Tuple[int, int]]


class Conv2d(Function):
    """Cross-correlation of x (N, C, H, W) with w (K, C/G, R, S), plus a bias b (K,):

        y[n, k, p, q] = b[k] + Σ_{c, r, s} w[k, c, r, s] · xpad[n, g C/G + c, p sh + r dh, q sw + s
        dw]

    where g = k // (K/G) is the group of output channel k (Krizhevsky et al. 2012 split AlexNet's
    convolutions into G = 2 such groups, one per GPU) and xpad is x zero-padded by (ph, pw), plus
    ``extra`` = (eh, ew) more zero rows/columns at the bottom/right (torch's asymmetric 'same').
    The gradients are convolutions again:

        db[k] = Σ_{n, p, q} dy[n, k, p, q]
        dw[k, c, r, s] = Σ_{n, p, q} dy[n, k, p, q] · xpad[n, g C/G + c, p sh + r dh, q sw + s dw]
        dx = the transposed convolution of dy with w (col2im of w^T dy in the im2col form).
    """

    @staticmethod
    def forward(ctx, x, w, b, g: Conv2dGeometry):
        ctx.g = g
        ctx.save_for_backward(x, w)
        return ctx.backend.conv2d_forward(_pad_extra(ctx.xp, x, g.extra), w, b, g.kernel_geometry)

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        g = ctx.g
        dout = dout.astype(x.dtype, copy=False)
        dx, dw, db = ctx.backend.conv2d_backward(
            dout,
            _pad_extra(ctx.xp, x, g.extra),
            w,
            g.kernel_geometry,
            needs=ctx.needs_input_grad[:3],
        )
        if dx is not None and g.extra != (0, 0):
            dx = ctx.xp.ascontiguousarray(dx[:, :, : g.H, : g.W])
        return dx, dw, db


def _pad_extra(xp, x, extra):
    """x (N, C, H, W) with ``extra`` = (eh, ew) zero rows/columns appended at the bottom/right."""
    if extra == (0, 0):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))


def resolve_padding(op, padding, stride, dilation, kernel):
    """int / pair / 'valid' / 'same' -> symmetric (ph, pw) and extra bottom/right (eh, ew)."""
    if not isinstance(padding, str):
        return pair(op, "padding", padding, 0), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(
            f"{op}: padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}"
        )
    if stride != (1, 1):
        raise ValueError(
            f"{op}: padding='same' is not supported for strided convolutions (stride={stride})"
        )
    total = [d * (k - 1) for d, k in zip(dilation, kernel)]  # torch: left = total // 2
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride: IntPair = 1,
    padding: Union[IntPair, str] = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """torch.nn.functional.conv2d: input (N, C, H, W) or (C, H, W), weight (K, C/groups, R, S),
    bias (K,) or None -> (N, K, P, Q), sizes from Conv2dGeometry (minicnn/ops/geometry.py).

    stride, dilation: int or pair, >= 1. padding: int or pair >= 0, 'valid' (0) or 'same' (output
    size = input size; stride 1 only; an odd total padding puts the extra row/column at the
    bottom/right, as torch does).
    """
    op = "conv2d"
    input, weight, bias = cast_inputs("low", input, weight, bias)
    check_tensor(op, "input", input, ndim=(3, 4))
    check_tensor(op, "weight", weight, ndim=4)
    if bias is not None:
        check_tensor(op, "bias", bias, ndim=1)
    check_same_dtype(op, input=input, weight=weight, bias=bias)
    common_device(op, [t for t in (input, weight, bias) if t is not None])
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
    padding, extra = resolve_padding(op, padding, stride, dilation, weight.shape[2:])
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    g = Conv2dGeometry.of(
        input.shape, weight.shape, stride, padding, dilation, int(groups), extra, op
    )
    x = input.unsqueeze(0) if input.ndim == 3 else input  # unbatched (C, H, W), as torch accepts
    if bias is not None and bias.shape != (g.K,):
        raise ValueError(
            f"{op}: bias must have shape ({g.K},) for weight {weight.shape}, got {bias.shape}"
        )
    y = Conv2d.apply(x, weight, bias, g)
    return y.squeeze(0) if input.ndim == 3 else y
