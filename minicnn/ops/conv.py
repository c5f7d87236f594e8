"""2-D convolution (a kernel family: backend.conv2d_forward / conv2d_backward)."""
from __future__ import annotations

import numbers

from ..autograd import Function
from ..tensor import common_device
from ._util import check_same_dtype, check_tensor, pair


class Conv2d(Function):
    """Cross-correlation of x (N, C, H, W) with w (K, C/G, R, S), plus a bias b (K,):

        y[n, k, p, q] = b[k] + Σ_{c, r, s} w[k, c, r, s] · xpad[n, g C/G + c, p sh + r dh, q sw + s dw]

    where g = k // (K/G) is the group of output channel k (Krizhevsky et al. 2012 split AlexNet's
    convolutions into G = 2 such groups, one per GPU) and xpad is x zero-padded by (ph, pw), plus
    ``extra`` = (eh, ew) more zero rows/columns at the bottom/right (torch's asymmetric 'same').
    The gradients are convolutions again:

        db[k] = Σ_{n, p, q} dy[n, k, p, q]
        dw[k, c, r, s] = Σ_{n, p, q} dy[n, k, p, q] · xpad[n, g C/G + c, p sh + r dh, q sw + s dw]
        dx = the transposed convolution of dy with w (col2im of w^T dy in the im2col form).
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, extra):
        ctx.conv = (stride, padding, dilation, groups)
        ctx.extra = extra
        ctx.save_for_backward(x, w)
        return ctx.backend.conv2d_forward(_pad_extra(ctx.xp, x, extra), w, b, *ctx.conv)

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        H, W = x.shape[2:]
        dout = dout.astype(x.dtype, copy=False)
        dx, dw, db = ctx.backend.conv2d_backward(
            dout, _pad_extra(ctx.xp, x, ctx.extra), w, *ctx.conv, needs=ctx.needs_input_grad[:3])
        if dx is not None and ctx.extra != (0, 0):
            dx = ctx.xp.ascontiguousarray(dx[:, :, :H, :W])
        return dx, dw, db


def _pad_extra(xp, x, extra):
    """x (N, C, H, W) with ``extra`` = (eh, ew) zero rows/columns appended at the bottom/right."""
    if extra == (0, 0):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))


def _resolve_padding(op, padding, stride, dilation, kernel):
    """int / pair / 'valid' / 'same' -> symmetric (ph, pw) and extra bottom/right (eh, ew)."""
    if not isinstance(padding, str):
        return pair(op, "padding", padding, 0), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"{op}: padding must be an int, a pair of ints, 'valid' or 'same', "
                         f"got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                         f"(stride={stride})")
    total = [d * (k - 1) for d, k in zip(dilation, kernel)]      # torch: left = total // 2
    return (total[0] // 2, total[1] // 2), (total[0] % 2, total[1] % 2)


def _check_conv_shapes(op, x, w, b, groups):
    C, (K, Cg) = x.shape[-3], w.shape[:2]
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups!r}")
    if K == 0 or Cg == 0 or min(w.shape[2:]) < 1:
        raise ValueError(f"{op}: weight {w.shape} must have at least one output channel, one input "
                         f"channel per group and a non-empty kernel")
    if K % groups:
        raise ValueError(f"{op}: out_channels {K} of weight {w.shape} must be divisible by "
                         f"groups={groups}")
    if C % groups or Cg * groups != C:
        raise ValueError(f"{op}: input {x.shape} has {C} channels but weight {w.shape} with "
                         f"groups={groups} expects {Cg * groups} (C must equal "
                         f"weight.shape[1] * groups)")
    if b is not None and b.shape != (K,):
        raise ValueError(f"{op}: bias must have shape ({K},) for weight {w.shape}, got {b.shape}")


def _check_kernel_fits(op, x, w, padding, extra, dilation):
    H, W = x.shape[-2:]
    Hp, Wp = H + 2 * padding[0] + extra[0], W + 2 * padding[1] + extra[1]
    Rd, Sd = [d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:])]
    if Rd > Hp or Sd > Wp:
        raise ValueError(f"{op}: kernel larger than the padded input: input {x.shape} padded to "
                         f"{Hp} x {Wp}, weight {w.shape} with dilation {dilation} spans "
                         f"{Rd} x {Sd}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d: input (N, C, H, W) or (C, H, W), weight (K, C/groups, R, S),
    bias (K,) or None -> (N, K, P, Q) with P = (H + 2 ph - dh (R - 1) - 1) // sh + 1 (Q alike).

    stride, dilation: int or pair, >= 1. padding: int or pair >= 0, 'valid' (0) or 'same' (output
    size = input size; stride 1 only; an odd total padding puts the extra row/column at the
    bottom/right, as torch does).
    """
    op = "conv2d"
    check_tensor(op, "input", input, ndim=(3, 4))
    check_tensor(op, "weight", weight, ndim=4)
    if bias is not None:
        check_tensor(op, "bias", bias, ndim=1)
    check_same_dtype(op, input=input, weight=weight, bias=bias)
    common_device(op, [t for t in (input, weight, bias) if t is not None])
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
    padding, extra = _resolve_padding(op, padding, stride, dilation, weight.shape[2:])
    _check_conv_shapes(op, input, weight, bias, groups)
    _check_kernel_fits(op, input, weight, padding, extra, dilation)
    x = input.unsqueeze(0) if input.ndim == 3 else input  # unbatched (C, H, W), as torch accepts
    y = Conv2d.apply(x, weight, bias, stride, padding, dilation, int(groups), extra)
    return y.squeeze(0) if input.ndim == 3 else y
