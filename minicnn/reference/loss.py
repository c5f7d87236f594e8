"""Classification losses by loops over the samples: cross_entropy and nll_loss (torch's semantics).

The input is (N, C), (N, C, d1, ...) or unbatched (C,): the classes lie along dim 1 (dim 0
unbatched); every other position is one sample s, with a row z_s of C values. Each loss here is a
weighted sum over classes,

    loss_s = −Σ_c coef[s, c] · z[s, c],     z = log_softmax(x) (cross_entropy) or x (nll_loss),

and only the coefficients depend on the target, the class weights w and the label smoothing ε:

    class index t_s:     coef[s, c] = (1 − ε) · w[t_s] · [c = t_s] + ε/C · w[c]   (0 if t_s is
                         ignore_index); 'mean' divides the sum by Σ_s w[t_s] over kept samples
    probabilities q_s:   coef[s, c] = w[c] · ((1 − ε) · q[s, c] + ε/C); 'mean' divides by #samples

Label smoothing: Szegedy et al. 2016, "Rethinking the Inception Architecture", section 7. Backward,
with softmax σ = exp(z): ∂loss_s/∂x[s, j] = −coef[s, j] + σ[s, j] · Σ_c coef[s, c] (cross_entropy),
−coef[s, j] (nll_loss), and ∂loss_s/∂q[s, c] = −w[c] · (1 − ε) · z[s, c].
"""

import math

import numpy as np

from ._util import f64


def _rows(x):
    """(S, C) rows of x with the class axis last, and the class axis."""
    class_dim = 0 if x.ndim == 1 else 1
    return np.moveaxis(x, class_dim, -1).reshape(-1, x.shape[class_dim]), class_dim


def _log_softmax(row):
    """z_c = x_c − log Σ_j exp(x_j), computed with the maximum subtracted (no overflow)."""
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _coefficients(x, target, weight, ignore_index, smoothing):
    """(coef (S, C), the 'mean' denominator) for class-index or class-probability targets."""
    rows, class_dim = _rows(x)
    S, C = rows.shape
    w = np.ones(C) if weight is None else f64(weight)
    coef = np.zeros((S, C))
    if target.shape == x.shape:  # class probabilities
        q, _ = _rows(f64(target))
        for s, c in np.ndindex(S, C):
            coef[s, c] = w[c] * ((1 - smoothing) * q[s, c] + smoothing / C)
        return coef, S
    t, denom = np.asarray(target).reshape(-1), 0.0
    for s in range(S):
        if t[s] == ignore_index:
            continue
        for c in range(C):
            coef[s, c] = (1 - smoothing) * w[t[s]] * (c == t[s]) + smoothing / C * w[c]
        denom += w[t[s]]
    return coef, denom


def _reduce(losses, shape, reduction, denom):
    """'none': the per-sample losses in the target's shape; 'sum'; 'mean': sum / denom (NaN if
    denom is 0, every target ignored)."""
    if reduction == "none":
        return np.array(losses, dtype=np.float64).reshape(shape)
    total = np.float64(sum(losses))
    if reduction == "sum":
        return total
    return total / denom if denom else np.float64(np.nan)


def _loss(z_rows, x, coef, reduction, denom):
    losses = [
        -sum(coef[s, c] * z_rows[s][c] for c in range(coef.shape[1])) for s in range(coef.shape[0])
    ]
    class_dim = 0 if x.ndim == 1 else 1
    return _reduce(losses, x.shape[:class_dim] + x.shape[class_dim + 1 :], reduction, denom)


def _scales(dloss, reduction, denom, S):
    """∂L/∂loss_s for every sample s."""
    if reduction == "none":
        return list(f64(dloss).reshape(-1))
    if reduction == "sum":
        return [float(dloss)] * S
    return [float(dloss) / denom if denom else 0.0] * S  # all ignored: no sample contributes


def _to_input_shape(d_rows, x):
    """(S, C) rows back to the input's layout (the inverse of _rows)."""
    class_dim = 0 if x.ndim == 1 else 1
    moved = np.moveaxis(x, class_dim, -1).shape
    return np.moveaxis(d_rows.reshape(moved), -1, class_dim)


def cross_entropy_forward(
    x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """The loss (a float64 scalar, or per sample for reduction='none'); ``target`` holds int class
    indices (the input's shape without the class dim) or probabilities (the input's shape)."""
    x = f64(x)
    coef, denom = _coefficients(x, target, weight, ignore_index, label_smoothing)
    z = [_log_softmax(row) for row in _rows(x)[0]]
    return _loss(z, x, coef, reduction, denom)


def cross_entropy_backward(
    dloss, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """(dx, dtarget): dtarget is None for class-index targets."""
    x = f64(x)
    coef, denom = _coefficients(x, target, weight, ignore_index, label_smoothing)
    rows, _ = _rows(x)
    S, C = rows.shape
    w = np.ones(C) if weight is None else f64(weight)
    dx, dq = np.zeros((S, C)), np.zeros((S, C))
    for s, scale in enumerate(_scales(dloss, reduction, denom, S)):
        z = _log_softmax(rows[s])
        total = sum(coef[s])
        for j in range(C):
            dx[s, j] = scale * (-coef[s, j] + math.exp(z[j]) * total)
            dq[s, j] = -scale * w[j] * (1 - label_smoothing) * z[j]
    dtarget = _to_input_shape(dq, x) if np.shape(target) == x.shape else None
    return _to_input_shape(dx, x), dtarget


def nll_loss_forward(x, target, weight=None, ignore_index=-100, reduction="mean"):
    """loss_s = −w[t_s] · x[s, t_s] (x holds log-probabilities), reduced as cross_entropy."""
    x = f64(x)
    coef, denom = _coefficients(x, target, weight, ignore_index, 0.0)
    return _loss(_rows(x)[0], x, coef, reduction, denom)


def nll_loss_backward(dloss, x, target, weight=None, ignore_index=-100, reduction="mean"):
    """dx[s, j] = −coef[s, j] · ∂L/∂loss_s: nonzero only at the target class of kept samples."""
    x = f64(x)
    coef, denom = _coefficients(x, target, weight, ignore_index, 0.0)
    dx = np.zeros(coef.shape)
    for s, scale in enumerate(_scales(dloss, reduction, denom, coef.shape[0])):
        for j in range(coef.shape[1]):
            dx[s, j] = -scale * coef[s, j]
    return _to_input_shape(dx, x)
