"""Pooling by loops over the output pixels: max_pool2d, avg_pool2d, adaptive_avg_pool2d.

A pooling window of output pixel (p, q) reads the input positions

    h = p·sh − ph + r·dh  (r < R),   v = q·sw − pw + s·dw  (s < S)

of every (n, c) plane separately, with stride (sh, sw), padding (ph, pw) ≤ kernel // 2 on each side
and dilation (dh, dw) (max pooling only). :func:`pool_output_size` counts the windows. Max pooling
with windows that overlap (R > stride) is AlexNet's "overlapping pooling" (Krizhevsky et al. 2012,
section 3.4: 3×3 windows, stride 2); ResNet and DenseNet end with a global average pooling.
"""

import math

import numpy as np

from ._util import f64, pair


def pool_output_size(n, R, stride, pad, dilation=1, ceil_mode=False):
    """The number of windows along one axis of length n, counted one by one.

    Window k starts at k·stride in padded coordinates (the padded axis is [0, n + 2·pad)) and spans
    dilation·(R − 1) + 1. Without ceil_mode a window must fit in the padded axis. With ceil_mode a
    last, partial window is also kept if it starts inside the input or the left padding (torch's
    rule: it may run past the padded border, never start in the right padding).
    """
    padded, span, k = n + 2 * pad, dilation * (R - 1) + 1, 0
    while k * stride + span <= padded or (
        ceil_mode and k * stride < padded - span + stride and k * stride < n + pad
    ):
        k += 1
    return k


def _windows(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """(p, q, positions) of every output pixel: the window's (h, v), in row-major kernel order."""
    (R, S), (ph, pw), (dh, dw) = pair(kernel_size), pair(padding), pair(dilation)
    sh, sw = pair(kernel_size if stride is None else stride)
    H, W = x_shape[-2:]
    P = pool_output_size(H, R, sh, ph, dh, ceil_mode)
    Q = pool_output_size(W, S, sw, pw, dw, ceil_mode)
    for p, q in np.ndindex(P, Q):
        yield (
            p,
            q,
            [(p * sh - ph + r * dh, q * sw - pw + s * dw) for r in range(R) for s in range(S)],
        )


def _out_shape(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    (R, S), (ph, pw), (dh, dw) = pair(kernel_size), pair(padding), pair(dilation)
    sh, sw = pair(kernel_size if stride is None else stride)
    N, C, H, W = x_shape
    return (
        N,
        C,
        pool_output_size(H, R, sh, ph, dh, ceil_mode),
        pool_output_size(W, S, sw, pw, dw, ceil_mode),
    )


# ---- max pooling ---------------------------------------------------------------------------------
def _argmax(plane, positions):
    """The (h, v) of the window's maximum, or None if the window reads only padding.

    Padding counts as −inf; ties go to the first maximum in row-major order; a NaN wins over every
    number (and a later NaN over an earlier one), as torch's loop.
    """
    H, W = plane.shape
    best = None
    for h, v in positions:
        if 0 <= h < H and 0 <= v < W:
            value = plane[h, v]
            if best is None or value > plane[best] or np.isnan(value):
                best = (h, v)
    return best


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): y[n, c, p, q] = max over the window, indices the flat h·W + v of the maximum.

    A window that dilation makes read only padding gives −inf and torch's index: the first window
    row ≥ 0 times W plus the first window column ≥ 0 (it may point outside the plane).
    """
    x = f64(x)
    W = x.shape[3]
    shape = _out_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y, indices = np.empty(shape), np.empty(shape, np.int64)
    for p, q, positions in _windows(x.shape, kernel_size, stride, padding, dilation, ceil_mode):
        for n, c in np.ndindex(*x.shape[:2]):
            best = _argmax(x[n, c], positions)
            if best is None:
                h = min(h for h, _ in positions if h >= 0)
                v = min(v for _, v in positions if v >= 0)
                y[n, c, p, q], indices[n, c, p, q] = -np.inf, h * W + v
            else:
                y[n, c, p, q], indices[n, c, p, q] = x[n, c][best], best[0] * W + best[1]
    return y, indices


def max_pool2d_backward(dy, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """dx: each window's dy goes to its maximum (a subgradient at ties); windows that read only
    padding output the constant −inf and pass nothing."""
    dy, x = f64(dy), f64(x)
    dx = np.zeros(x.shape)
    for p, q, positions in _windows(x.shape, kernel_size, stride, padding, dilation, ceil_mode):
        for n, c in np.ndindex(*x.shape[:2]):
            best = _argmax(x[n, c], positions)
            if best is not None:
                dx[n, c][best] += dy[n, c, p, q]
    return dx


# ---- average pooling -----------------------------------------------------------------------------
def _divisor(positions, H, W, padding, count_include_pad=True, divisor_override=None):
    """torch's divisor: the override; else the window's positions inside the padded input
    [−ph, H + ph) × [−pw, W + pw) (a ceil_mode window may run past it); else those in the input."""
    if divisor_override:
        return divisor_override
    ph, pw = pair(padding)
    if count_include_pad:
        return sum(-ph <= h < H + ph and -pw <= v < W + pw for h, v in positions)
    return sum(0 <= h < H and 0 <= v < W for h, v in positions)


def _avg_windows(x_shape, kernel_size, stride, padding, ceil_mode, divisor):
    """(p, q, the in-input positions, divisor) of every average-pooling window."""
    H, W = x_shape[-2:]
    for p, q, positions in _windows(x_shape, kernel_size, stride, padding, 1, ceil_mode):
        inside = [(h, v) for h, v in positions if 0 <= h < H and 0 <= v < W]
        yield p, q, inside, _divisor(positions, H, W, padding, **divisor)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, **divisor):
    """y[n, c, p, q] = Σ_{(h, v) in window, inside the input} x[n, c, h, v] / divisor[p, q].

    ``divisor``: torch's count_include_pad=True and divisor_override=None (see _divisor).
    """
    x = f64(x)
    y = np.zeros(_out_shape(x.shape, kernel_size, stride, padding, 1, ceil_mode))
    windows = _avg_windows(x.shape, kernel_size, stride, padding, ceil_mode, divisor)
    for p, q, inside, div in windows:
        for h, v in inside:
            y[:, :, p, q] += x[:, :, h, v] / div
    return y


def avg_pool2d_backward(
    dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False, **divisor
):
    """dx: every input pixel of a window gets dy / divisor (summed over the windows it is in)."""
    dy, dx = f64(dy), np.zeros(x_shape)
    windows = _avg_windows(x_shape, kernel_size, stride, padding, ceil_mode, divisor)
    for p, q, inside, div in windows:
        for h, v in inside:
            dx[:, :, h, v] += dy[:, :, p, q] / div
    return dx


# ---- adaptive average pooling --------------------------------------------------------------------
def _bins(H, W, P, Q):
    """(i, j, rows, columns) of every bin: rows floor(i·H/P) .. ceil((i+1)·H/P) − 1, likewise
    columns. Bins cover the input, overlap where P does not divide H, repeat pixels where P > H."""
    for i, j in np.ndindex(P, Q):
        rows = range(math.floor(i * H / P), math.ceil((i + 1) * H / P))
        cols = range(math.floor(j * W / Q), math.ceil((j + 1) * W / Q))
        yield i, j, rows, cols


def adaptive_avg_pool2d_forward(x, output_size):
    """y[n, c, i, j] = the mean of bin (i, j) of x[n, c] (output_size: (P, Q) or an int)."""
    x = f64(x)
    (N, C, H, W), (P, Q) = x.shape, pair(output_size)
    y = np.zeros((N, C, P, Q))
    for i, j, rows, cols in _bins(H, W, P, Q):
        for n, c, h, v in np.ndindex(N, C, len(rows), len(cols)):
            y[n, c, i, j] += x[n, c, rows[h], cols[v]] / (len(rows) * len(cols))
    return y


def adaptive_avg_pool2d_backward(dy, x_shape):
    """dx: every pixel of bin (i, j) gets dy[n, c, i, j] / (bin area)."""
    dy = f64(dy)
    (N, C, H, W), (P, Q) = x_shape, dy.shape[2:]
    dx = np.zeros(x_shape)
    for i, j, rows, cols in _bins(H, W, P, Q):
        for n, c, h, v in np.ndindex(N, C, len(rows), len(cols)):
            dx[n, c, rows[h], cols[v]] += dy[n, c, i, j] / (len(rows) * len(cols))
    return dx
