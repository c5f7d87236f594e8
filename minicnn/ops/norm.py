"""Batch normalization (Ioffe & Szegedy 2015) over (N, C), (N, C, L), (N, C, H, W) or
(N, C, D, H, W)."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Optional

from ..autograd import Function
from ..dtypes import HALF_DTYPES, float32
from ..tensor import Tensor
from ._util import check_same_dtype, check_tensor
from .activation import relu as relu_op


def _as_4d(shape):
    """View any (N, C, ...) shape as (N, C, rest, 1) for the (N, C, H, W) kernels."""
    return (shape[0], shape[1], math.prod(shape[2:]), 1)


class BatchNorm(Function):
    """y = weight · (x − μ) / sqrt(σ² + eps) + bias, per channel, statistics over (N, H, W).

    Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by Reducing
    Internal Covariate Shift", algorithm 1 (training) and section 3.1 (inference).
    Training: μ, σ² are the batch mean and biased variance, and the running buffers are updated in
    place: running ← (1 − momentum) · running + momentum · batch statistic, with the unbiased
    variance σ² · M/(M−1), M = N·H·W (as PyTorch). Inference: μ, σ² are the running buffers and
    the op is an affine map of x. Backward (training):

        dx = weight / sqrt(σ² + eps) · (dy − mean(dy) − x̂ · mean(dy · x̂)),
        dweight = Σ dy · x̂,  dbias = Σ dy   (sums and means over N, H, W).

    Kernels: backend.batch_norm_forward_training / _inference and batch_norm_backward on
    (N, C, H, W).
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        args = (running_mean, running_var, weight, bias, training, momentum, eps)
        return _forward(ctx, False, x, *args)

    @staticmethod
    def backward(ctx, dout):
        x4, weight, mean, invstd, relu_output = ctx.saved_tensors
        grads = ctx.backend.batch_norm_backward(
            dout.reshape(x4.shape), x4, weight, mean, invstd, ctx.training, relu_output
        )
        return _input_grads(ctx, dout.shape, *grads)


def _forward(ctx, relu, x, running_mean, running_var, weight, bias, training, momentum, eps):
    """BatchNorm's forward, and BatchNormReLU's (``relu``: the output y is saved for backward's
    mask dy · [y > 0])."""
    x4 = x.reshape(_as_4d(x.shape))  # (N, C, H, W)
    if training:
        y, mean, invstd = ctx.backend.batch_norm_forward_training(
            x4, weight, bias, running_mean, running_var, momentum, eps, relu
        )
    else:
        y, mean, invstd = ctx.backend.batch_norm_forward_inference(
            x4, weight, bias, running_mean, running_var, eps, relu
        )
    ctx.training = training
    ctx.save_for_backward(x4, weight, mean, invstd, y if relu else None)
    return y.reshape(x.shape)


def _input_grads(ctx, shape, dx, dweight, dbias):
    """(dx, -, -, dweight, dbias) for the inputs (x, running_mean, running_var, weight, bias),
    None where a gradient is not needed."""
    needs = ctx.needs_input_grad
    dx = dx.reshape(shape) if needs[0] else None
    return dx, None, None, dweight if needs[3] else None, dbias if needs[4] else None


def _check_channel_vector(name, t, C):
    if t is None:
        return
    if not isinstance(t, Tensor):
        raise TypeError(f"batch_norm: {name} must be a Tensor or None, got {type(t).__name__}")
    if t.shape != (C,):
        raise ValueError(
            f"batch_norm: {name} must have shape ({C},) for an input of {C} channels, "
            f"got shape {t.shape}"
        )


def _check_number(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"batch_norm: {name} must be a real number, got {value!r}")
    return float(value)


def _check_args(input, running_mean, running_var, weight, bias, training, momentum, eps):
    check_tensor("batch_norm", "input", input)
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: input must be 2-D or more (N, C, ...), got shape {input.shape}"
        )
    C = input.shape[1]
    tensors = dict(running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    for name, t in tensors.items():
        _check_channel_vector(name, t, C)
    if input.dtype in HALF_DTYPES:  # mixed precision: float32 parameters and statistics
        ok = (float32, input.dtype)
        bad = [f"{k} {t.dtype}" for k, t in tensors.items() if t is not None and t.dtype not in ok]
        if bad:
            raise TypeError(
                f"batch_norm: a {input.dtype} input takes float32 (or {input.dtype}) weight, bias "
                f"and running statistics, got {', '.join(bad)}"
            )
    else:
        check_same_dtype("batch_norm", input=input, **tensors)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "batch_norm: running_mean and running_var must either both be None or neither be None"
        )
    if not training and running_mean is None:
        raise ValueError(
            "batch_norm: running_mean and running_var must be given in evaluation mode "
            "(training=False); pass training=True to normalise with batch statistics"
        )
    momentum, eps = _check_number("momentum", momentum), _check_number("eps", eps)
    if eps < 0 or (training and eps == 0):
        raise ValueError(
            f"batch_norm: eps must be {'positive' if training else 'non-negative'}, got {eps}"
        )
    if training and input.shape[0] * math.prod(input.shape[2:]) == 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, "
            f"got input size {input.shape}"
        )
    return momentum, eps


def batch_norm(
    input: Tensor,
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Same as ``torch.nn.functional.batch_norm``; the running buffers are updated in place.

    Training with ``running_mean=running_var=None`` normalises with batch statistics and updates
    nothing; evaluation needs the running buffers (as PyTorch 2.x). An empty batch is returned as
    is and leaves the running buffers untouched.
    """
    return normalize(False, input, running_mean, running_var, weight, bias, training, momentum, eps)


def normalize(relu, input, running_mean, running_var, weight, bias, training, momentum, eps):
    """batch_norm (then ReLU, fused, when ``relu``) with every argument given, checked once: what
    F.batch_norm, F.batch_norm_relu and nn.BatchNorm2d run."""
    momentum, eps = _check_args(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    args = (running_mean, running_var, weight, bias, bool(training), momentum, eps)
    if relu and (input.numel() == 0 or input.dtype in HALF_DTYPES):  # no fused half kernel
        return relu_op(normalize(False, input, *args))
    if input.numel() == 0:
        return input
    if input.dtype in HALF_DTYPES and any(t is not None and t.dtype != float32 for t in args[:4]):
        return _half_parameters(input, *args)
    return (BatchNormReLU if relu else BatchNorm).apply(input, *args)


def _half_parameters(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """An all-half batch norm (a model made half, as torch's model.half()): the kernels take
    float32 parameters and statistics (issue 13's contract), so cast them on the way in (the
    gradients are cast back) and write the updated running statistics back into their buffers."""
    weight, bias, rm, rv = (
        None if t is None else t.float() for t in (weight, bias, running_mean, running_var)
    )
    y = BatchNorm.apply(x, rm, rv, weight, bias, bool(training), momentum, eps)
    for buffer, value in ((running_mean, rm), (running_var, rv)):
        if buffer is not None and value is not buffer:
            buffer._data[...] = value._data
    return y


# ---- batch norm + ReLU, fused --------------------------------------------------------------------
class BatchNormReLU(BatchNorm):
    """y = max(0, batch_norm(x)): the models' ``bn → relu`` pairs as one op.

    The same numbers as ``relu(batch_norm(x))`` (and the same running-buffer updates), one pass
    over memory fewer each way on cpu: the normalise pass clamps at 0, and backward reads
    dy · [y > 0] through the output y while it forms batch norm's sums and dx (Ioffe & Szegedy
    2015, sec. 3, with ReLU's dx = dy · [y > 0]). The intermediate batch-norm output is never
    stored. Kernels: BatchNorm's with relu=True / relu_output=y (composed of the batch norm and
    ReLU kernels on devices without a fused one); backward is BatchNorm's.
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        args = (running_mean, running_var, weight, bias, training, momentum, eps)
        return _forward(ctx, True, x, *args)


def batch_norm_relu(*args, **kwargs) -> Tensor:
    """``relu(batch_norm(*args, **kwargs))`` as one fused op: batch_norm's arguments (the same
    names, order and defaults) and checks."""
    try:
        bound = _BATCH_NORM_ARGS.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"batch_norm_relu: {e}") from None
    bound.apply_defaults()
    return normalize(True, *bound.arguments.values())


_BATCH_NORM_ARGS = inspect.signature(batch_norm)
