"""Classification losses: cross_entropy (log_softmax + nll_loss, label smoothing) and nll_loss.

Inputs are (N, C), (N, C, d1, …) or unbatched (C,); the classes lie along dim 1 (dim 0 unbatched).
Targets are int64 class indices shaped like the input without the class dim, or — cross_entropy
only — class probabilities shaped like the input.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Optional

import numpy as np

from ..amp.autocast import cast_inputs
from ..autograd import Function, is_grad_enabled
from ..backends import _transfers, get_backend
from ..dtypes import int64
from ..tensor import Tensor
from ._util import check_same_dtype, check_tensor
from .activation import log_softmax

_REDUCTIONS = ("none", "mean", "sum")


def _index_coefficients(xp, target, weight, shape, class_dim, ignore_index, smoothing, dtype):
    """coef (shaped like the input) with loss_s = −Σ_c coef[s, c] · x[s, c], and Σ_s w[t_s].

    coef = (1 − ε) · w[t_s] · [c = t_s] + ε/C · w_c, zero for ignored s (t_s = ignore_index);
    the second sum is the 'mean' denominator (the summed weights of the non-ignored targets).
    """
    C = shape[class_dim]
    bshape = [1] * len(shape)
    bshape[class_dim] = C
    w = xp.ones(C, dtype) if weight is None else weight
    w_b = w.reshape(bshape)  # (1, C, 1, …)
    t = xp.expand_dims(target, class_dim)  # (N, 1, d1, …)
    valid = t != ignore_index  # (N, 1, d1, …)
    onehot = (t == xp.arange(C).reshape(bshape)) & valid  # (N, C, d1, …)
    target_w = onehot * w_b  # w[t_s] at class t_s
    coef = (
        target_w
        if smoothing == 0
        else (1.0 - smoothing) * target_w + (smoothing / C) * (valid * w_b)
    )
    out_of_range = valid & ((t < 0) | (t >= C))  # caught on "cpu"; raised later on a device
    coef = xp.where(out_of_range, xp.nan, coef)  # its loss is NaN meanwhile
    return coef.astype(dtype, copy=False), target_w.sum()


class NLLLoss(Function):
    """loss_s = −Σ_c coef[s, c] · x[s, c] with coef from :func:`_index_coefficients`;

    plain NLL (ε = 0): loss_s = −w[t_s] · x[s, t_s]. Reductions: 'none' (per sample), 'sum', and
    'mean' = Σ_s loss_s / Σ_s w[t_s] over non-ignored s (NaN when every target is ignored), as
    PyTorch. Linear in x, so dx = −coef · dloss (÷ Σ w[t_s] for 'mean').
    """

    @staticmethod
    def forward(ctx, x, target, weight, class_dim, ignore_index, reduction, smoothing):
        coef, denom = _index_coefficients(
            ctx.xp, target, weight, x.shape, class_dim, ignore_index, smoothing, x.dtype
        )
        ctx.save_for_backward(coef)
        ctx.class_dim, ctx.reduction, ctx.denom = class_dim, reduction, denom
        # where(): a masked-out logit of -inf has coef 0 and must add 0, not 0 · -inf = NaN
        with np.errstate(invalid="ignore"):
            losses = -ctx.xp.where(coef != 0, coef * x, 0).sum(axis=class_dim)  # (N, d1, …)
        if reduction == "none":
            return losses
        with np.errstate(invalid="ignore", divide="ignore"):
            return losses.sum() if reduction == "sum" else losses.sum() / denom

    @staticmethod
    def backward(ctx, dout):
        (coef,) = ctx.saved_tensors
        if ctx.reduction == "none":
            dout = ctx.xp.expand_dims(dout, ctx.class_dim)
        dx = -coef * dout
        if ctx.reduction == "mean":  # ignored entries (coef 0) stay 0, even when all are (0/0)
            with np.errstate(invalid="ignore", divide="ignore"):
                dx = ctx.xp.where(coef != 0, dx / ctx.denom, 0)
        return dx.astype(coef.dtype, copy=False), None, None


# ---- argument checks ----------------------------------------------------------------------------
def _reduction(op, size_average, reduce, reduction):
    """The legacy size_average/reduce pair (deprecated, as in torch) or ``reduction``, checked."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
        warnings.warn(
            f"{op}: size_average and reduce are deprecated, use reduction='{reduction}'",
            stacklevel=3,
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_input(op, input, weight, ignore_index):
    """Check input, weight and ignore_index; returns the class dim (1, or 0 for unbatched input)."""
    check_tensor(op, "input", input)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-D tensor")
    class_dim = 0 if input.ndim == 1 else 1
    C = input.shape[class_dim]
    if weight is not None:
        check_tensor(op, "weight", weight)
        if weight.shape != (C,):
            raise ValueError(
                f"{op}: weight must have shape ({C},), one value per class of the "
                f"input {input.shape}, got {weight.shape}"
            )
        check_same_dtype(op, input=input, weight=weight)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op}: ignore_index must be an integer, got {ignore_index!r}")
    return class_dim


def _check_index_target(op, input, target, weight, class_dim, ignore_index):
    """int64 class indices shaped like input without the class dim, each in [0, C) or ignored."""
    expected = input.shape[:class_dim] + input.shape[class_dim + 1 :]
    if target.shape != expected:
        raise ValueError(
            f"{op}: target must have shape {expected} for an input of shape "
            f"{input.shape}, got {target.shape}"
        )
    if target.dtype != int64:
        raise TypeError(f"{op}: target must hold int64 class indices, got dtype {target.dtype}")
    C = input.shape[class_dim]
    if target.device == "cpu":
        t = target.numpy()
        bad = (t != ignore_index) & ((t < 0) | (t >= C))
        if bad.any():
            raise _range_error(
                op, t[bad].flat[0], int(np.flatnonzero(bad)[0]), t.shape, C, ignore_index
            )
    else:
        _defer_range_check(op, get_backend(target.device), target._data, C, ignore_index)
    if weight is not None and weight.requires_grad and is_grad_enabled():
        raise ValueError(
            f"{op}: not differentiable with respect to weight (as in PyTorch); pass weight.detach()"
        )


def _range_error(op, value, flat_index, shape, C, ignore_index):
    index = np.unravel_index(flat_index, shape) if len(shape) > 1 else flat_index
    index = tuple(int(i) for i in index) if len(shape) > 1 else int(index)
    return ValueError(
        f"{op}: target value {value} is out of range for {C} classes "
        f"(valid: 0..{C - 1}, or ignore_index={ignore_index}), at index {index}"
    )


def _defer_range_check(op, backend, t, C, ignore_index):
    """On "emu"/"cuda": find the first out-of-range target on the device, without reading it; the
    next read of a device value (``loss.item()``, the training loop's metrics) reads it and raises
    (backends/_transfers.py). Meanwhile that target's loss is NaN (_index_coefficients)."""
    if t.size == 0:
        return
    xp, flat = backend.xp, t.reshape(-1)
    bad = (flat != ignore_index) & ((flat < 0) | (flat >= C))
    first = xp.argmax(bad)  # the first bad one, or 0 (take: indexed on the device, no read)
    flags = xp.stack([xp.where(xp.take(bad, first), first, -1), xp.take(flat, first)])

    def raise_if_bad(values):
        if values[0] >= 0:
            raise _range_error(op, int(values[1]), int(values[0]), t.shape, C, ignore_index)

    _transfers.defer(backend, flags, raise_if_bad)


def _check_prob_target(op, input, target, ignore_index):
    """Class probabilities: floating, the input's shape and dtype; no ignore_index."""
    if target.dtype.kind != "f":
        raise TypeError(
            f"{op}: a target shaped like the input {input.shape} holds class "
            f"probabilities and must be floating point, got dtype {target.dtype}"
        )
    check_same_dtype(op, input=input, target=target)
    if ignore_index != -100:
        raise ValueError(
            f"{op}: ignore_index={ignore_index} is not supported for class-probability targets"
        )


# ---- the losses ---------------------------------------------------------------------------------
def _prob_target_loss(logp, target, weight, class_dim, reduction, smoothing):
    """loss_s = −Σ_c w_c · q[s, c] · logp[s, c], q = (1 − ε) · target + ε/C; 'mean' ÷ #samples.

    Built from differentiable ops, so a target that requires grad gets its gradient (as torch).
    """
    C = logp.shape[class_dim]
    coef = target if smoothing == 0 else target * (1.0 - smoothing) + smoothing / C
    if weight is not None:
        coef = coef * weight.reshape(*[C if d == class_dim else 1 for d in range(logp.ndim)])
    losses = -(logp * coef).sum(class_dim)
    if reduction == "none":
        return losses
    total = losses.sum()
    samples = logp.numel() // C if C else 0
    return total if reduction == "sum" else total * (1.0 / samples if samples else float("nan"))


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log likelihood of log-probabilities ``input`` at class indices ``target``.

    loss_s = −weight[t_s] · input[s, t_s] (0 where t_s = ignore_index); 'mean' divides the sum by
    the summed weights of the non-ignored targets. Same as ``torch.nn.functional.nll_loss``.
    """
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    input, weight = cast_inputs("float32", input, weight)  # autocast: float32 (amp/autocast.py)
    class_dim = _check_input("nll_loss", input, weight, ignore_index)
    check_tensor("nll_loss", "target", target, floating=False)
    _check_index_target("nll_loss", input, target, weight, class_dim, ignore_index)
    return NLLLoss.apply(input, target, weight, class_dim, int(ignore_index), reduction, 0.0)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Optional[Tensor] = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy of logits ``input`` against class indices or class probabilities ``target``.

    = nll_loss(log_softmax(input, class_dim), target) for index targets. Label smoothing ε mixes
    the target with the uniform distribution: (1 − ε) · nll + ε/C · Σ_c −w_c · logp_c, both parts
    divided under 'mean' by the summed weights of the non-ignored targets (as PyTorch). Probability
    targets (the input's shape): −Σ_c w_c q_c logp_c, 'mean' divides by the number of samples.

    An index target out of [0, C) (and not ignore_index) raises ValueError naming the op, the
    value and its index: at once on "cpu"; on "emu"/"cuda" the range is checked on the device
    (no host copy, no sync per call), that target's loss is NaN, and the error is raised at the
    next read of a device value (``loss.item()``, ``.numpy()``, the training loop's metrics).
    """
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
    input, target, weight = cast_inputs("float32", input, target, weight)  # autocast: float32
    class_dim = _check_input("cross_entropy", input, weight, ignore_index)
    check_tensor("cross_entropy", "target", target, floating=False)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(
            f"cross_entropy: label_smoothing must be a real number, got {label_smoothing!r}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    smoothing = float(label_smoothing)
    if target.shape == input.shape:
        _check_prob_target("cross_entropy", input, target, ignore_index)
        logp = log_softmax(input, class_dim)
        return _prob_target_loss(logp, target, weight, class_dim, reduction, smoothing)
    if target.dtype.kind == "f" and target.ndim == input.ndim - 1:
        raise TypeError(
            f"cross_entropy: target {target.shape} holds class indices and must be int64, "
            f"got dtype {target.dtype} (class-probability targets have the input's "
            f"shape {input.shape})"
        )
    _check_index_target("cross_entropy", input, target, weight, class_dim, ignore_index)
    logp = log_softmax(input, class_dim)
    return NLLLoss.apply(logp, target, weight, class_dim, int(ignore_index), reduction, smoothing)
