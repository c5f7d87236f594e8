"""Fully connected layer: y = x W^T + b."""

from __future__ import annotations

import math
from typing import Optional

from ..amp.autocast import cast_inputs
from ..autograd import Function
from ..backends._lowp import matmul
from ..dtypes import HALF_DTYPES, float32
from ..backends import common_device
from ..tensor import Tensor
from ._util import check_same_dtype, check_tensor


class Linear(Function):
    """y = x W^T + b for x (M, I) — the leading dims of the input flattened into M —, W (O, I),
    b (O,):  dx = dy W,  dW = dy^T x,  db = Σ_m dy.

    One GEMM each way; generic array work, so it runs on the backend's array module (NumPy, or CuPy
    on "cuda") rather than a kernel of our own.
    """

    @staticmethod
    def forward(ctx, x, w, b):
        M, (O, I) = math.prod(x.shape[:-1]), w.shape
        y = matmul(x.reshape(M, I), w.T, b)  # (M, O), + b (O,) broadcast over rows
        ctx.save_for_backward(x, w)
        return y.reshape(x.shape[:-1] + (O,))

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        M, (O, I) = math.prod(x.shape[:-1]), w.shape
        d = dout.astype(x.dtype, copy=False).reshape(M, O)  # (M, O)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx = matmul(d, w).reshape(x.shape) if need_x else None  # (M, I)
        dw = matmul(d.T, x.reshape(M, I)) if need_w else None  # (O, I)
        db = _sum_rows(d) if need_b else None  # (O,)
        return dx, dw, db


def _sum_rows(d):
    """Σ_m d[m] (float32 accumulation for half d, rounded once)."""
    if d.dtype in HALF_DTYPES:
        return d.sum(axis=0, dtype=float32).astype(d.dtype)
    return d.sum(axis=0)


def linear(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """torch.nn.functional.linear: input (*, in_features), weight (out_features, in_features),
    bias (out_features,) or None -> (*, out_features)."""
    op = "linear"
    input, weight, bias = cast_inputs("low", input, weight, bias)
    check_tensor(op, "input", input)
    check_tensor(op, "weight", weight, ndim=2)
    if bias is not None:
        check_tensor(op, "bias", bias, ndim=1)
    check_same_dtype(op, input=input, weight=weight, bias=bias)
    common_device(op, [t for t in (input, weight, bias) if t is not None])
    if input.ndim == 0:
        raise ValueError(
            "linear: input must have at least 1 dimension (*, in_features), got a scalar"
        )
    if input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input {input.shape} has {input.shape[-1]} features but weight "
            f"{weight.shape} expects in_features={weight.shape[1]}"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape ({weight.shape[0]},) for weight "
            f"{weight.shape}, got {bias.shape}"
        )
    return Linear.apply(input, weight, bias)
