"""Pooling kernels for the "cpu" backend: max, average and adaptive-average pooling of (N, C, H, W).

Version 1 (this file): NumPy. A window of output pixel (p, q) starts at (p*sh - ph, q*sw - pw) in
the input; its kernel offset (r, s) reads input pixel (p*sh - ph + r*dh, q*sw - pw + s*dw). For a
fixed (r, s) those pixels, over all (p, q) at once, are one strided slice of the padded input, so
every kernel below loops over the R*S kernel offsets, never over the P*Q output pixels.

The ops (minicnn/ops/pool.py) validate the arguments and compute the output size (P, Q) — including
ceil_mode's extra windows, which may run past the padded border — into a Pool2dGeometry
(minicnn/ops/geometry.py) that the kernels below take; the NumPy versions take plain pairs.

Version 2: with the C++ helper (csrc/cpu/pool.h) max and average pooling loop over each window
directly, one (n, c) plane per task on the helper's thread pool: no padded copy of x and no
R*S passes over the whole batch. The NumPy versions above stay as the readable definition, the
fallback and the tests' second opinion (``_reference`` suffix). Adaptive average pooling with
bins that tile the input exactly (H % P == 0, W % Q == 0: the global pool, the identity) is a
reshape and a mean; other sizes use the averaging matrices.
"""

from __future__ import annotations

import numpy as np

from ..ops.geometry import Pool2dGeometry
from ._cpp import cpp_kernel, load_cpu_extension

_C = load_cpu_extension()  # None: NumPy does everything


# ---- helpers ------------------------------------------------------------------------------------
def _padded_size(n, p_out, r, stride, pad, dil):
    """Length of the padded axis: n + 2*pad, or more where a ceil_mode window runs past it."""
    return max(n + 2 * pad, (p_out - 1) * stride + (r - 1) * dil + 1)


def _pad(x, kernel_size, stride, padding, dilation, out_size, value):
    """x (N, C, H, W) inside a (N, C, Hp, Wp) array of ``value``, with (ph, pw) rows/cols before."""
    N, C, H, W = x.shape
    (R, S), (sh, sw), (ph, pw), (dh, dw), (P, Q) = kernel_size, stride, padding, dilation, out_size
    Hp = _padded_size(H, P, R, sh, ph, dh)
    Wp = _padded_size(W, Q, S, sw, pw, dw)
    xpad = np.full((N, C, Hp, Wp), value, dtype=x.dtype)  # (N, C, Hp, Wp)
    xpad[:, :, ph : ph + H, pw : pw + W] = x
    return xpad


def _offset(r, s, stride, dilation, out_size):
    """Index of kernel offset (r, s) of every window in the padded input: a (P, Q) strided view."""
    (sh, sw), (dh, dw), (P, Q) = stride, dilation, out_size
    rows = slice(r * dh, r * dh + (P - 1) * sh + 1, sh)
    cols = slice(s * dw, s * dw + (Q - 1) * sw + 1, sw)
    return (slice(None), slice(None), rows, cols)


def _first_inside(p_out, stride, pad, dil):
    """First input coordinate >= 0 read by each window along one axis, (P,), as torch's loop start.

    A window starting at p*stride - pad reads start, start + dil, …; it can reach past the end of
    the input (the window is then empty along this axis when the result is >= the input size).
    """
    start = np.arange(p_out) * stride - pad
    skip = np.where(start < 0, -(start // dil), 0)  # ceil(-start / dil) steps
    return start + skip * dil


# ---- max pooling --------------------------------------------------------------------------------
def max_pool2d_forward_reference(x, kernel_size, stride, padding, dilation, out_size):
    """y = max over each window (padding reads as -inf) and argmax, torch's ``indices``.

    argmax (N, C, P, Q) int64 is the flat h*W + w index into the input plane of the first maximum in
    row-major window order; a NaN wins over any number (the last NaN of a window), as in torch.
    A window holding only padding gives -inf and torch's index of its first in-plane position.
    """
    N, C, H, W = x.shape
    (R, S), (sh, sw), (ph, pw), (dh, dw), (P, Q) = kernel_size, stride, padding, dilation, out_size
    xpad = _pad(x, kernel_size, stride, padding, dilation, out_size, -np.inf)  # (N, C, Hp, Wp)
    y = np.full((N, C, P, Q), -np.inf, dtype=x.dtype)  # (N, C, P, Q)
    h0 = _first_inside(P, sh, ph, dh)  # (P,)
    w0 = _first_inside(Q, sw, pw, dw)  # (Q,)
    argmax = np.empty((N, C, P, Q), dtype=np.int64)  # (N, C, P, Q)
    argmax[...] = h0[:, None] * W + w0[None, :]
    hs = np.arange(P) * sh - ph  # (P,) window starts
    ws = np.arange(Q) * sw - pw  # (Q,)
    for r in range(R):
        for s in range(S):
            v = xpad[_offset(r, s, stride, dilation, out_size)]  # (N, C, P, Q)
            better = (v > y) | np.isnan(v)
            np.copyto(y, v, where=better)
            index = (hs + r * dh)[:, None] * W + (ws + s * dw)[None, :]  # (P, Q)
            np.copyto(argmax, index, where=better)
    return y, argmax


def max_pool2d_backward_reference(dout, argmax, x_shape, kernel_size, stride, padding, dilation):
    """dx[n, c, argmax[n, c, p, q]] += dout[n, c, p, q]: each window's gradient goes to its argmax.

    Windows that hold only padding (their output is the constant -inf) pass no gradient.
    """
    N, C, H, W = x_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    P, Q = dout.shape[2:]
    inside = (_first_inside(P, sh, ph, dh) < H)[:, None] & (_first_inside(Q, sw, pw, dw) < W)[
        None, :
    ]  # (P, Q)
    if not inside.all():
        dout = np.where(inside, dout, 0)
        argmax = np.where(inside, argmax, 0)
    plane = np.arange(N * C, dtype=np.int64).reshape(N, C, 1, 1) * (H * W)  # (N, C, 1, 1)
    dx = np.bincount((argmax + plane).ravel(), weights=dout.ravel(), minlength=N * C * H * W)
    return dx.reshape(x_shape).astype(dout.dtype, copy=False)  # (N, C, H, W)


# ---- average pooling ----------------------------------------------------------------------------
def _window_counts(n, p_out, r, stride, pad, count_include_pad):
    """Divisor factor of each window along one axis, (P,), exactly as torch counts it.

    With count_include_pad the window is clipped to the padded extent [-pad, n + pad) (a ceil_mode
    window may run past it); without, to the input [0, n).
    """
    start = np.arange(p_out) * stride - pad
    end = np.minimum(start + r, n + pad)
    if not count_include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, n)
    return end - start


def _avg_divisor(x_shape, out_size, window, divisor, dtype):
    """The (P, Q) divisor of every window: divisor_override, or the (clipped) window area.
    ``window`` is (kernel_size, stride, padding), ``divisor`` (count_include_pad,
    divisor_override)."""
    ((R, S), stride, padding), (P, Q) = window, out_size
    count_include_pad, divisor_override = divisor
    if divisor_override is not None:
        return np.full((P, Q), divisor_override, dtype=dtype)
    ch = _window_counts(x_shape[2], P, R, stride[0], padding[0], count_include_pad)  # (P,)
    cw = _window_counts(x_shape[3], Q, S, stride[1], padding[1], count_include_pad)  # (Q,)
    return (ch[:, None] * cw[None, :]).astype(dtype)


def avg_pool2d_forward_reference(
    x, kernel_size, stride, padding, out_size, count_include_pad=True, divisor_override=None
):
    """y[p, q] = Σ_window x / divisor (padding reads as 0)."""
    (R, S), dilation = kernel_size, (1, 1)
    xpad = _pad(x, kernel_size, stride, padding, dilation, out_size, 0)  # (N, C, Hp, Wp)
    y = np.zeros(x.shape[:2] + tuple(out_size), dtype=x.dtype)  # (N, C, P, Q)
    for r in range(R):
        for s in range(S):
            y += xpad[_offset(r, s, stride, dilation, out_size)]
    window, divisor = (kernel_size, stride, padding), (count_include_pad, divisor_override)
    y /= _avg_divisor(x.shape, out_size, window, divisor, x.dtype)
    return y


def avg_pool2d_backward_reference(
    dout, x_shape, kernel_size, stride, padding, count_include_pad=True, divisor_override=None
):
    """dx[h, w] = Σ over the windows reading (h, w) of dout[p, q] / divisor[p, q]."""
    N, C, H, W = x_shape
    (R, S), (ph, pw), dilation = kernel_size, padding, (1, 1)
    out_size = dout.shape[2:]
    window, divisor = (kernel_size, stride, padding), (count_include_pad, divisor_override)
    g = dout / _avg_divisor(x_shape, out_size, window, divisor, dout.dtype)  # (N, C, P, Q)
    Hp = _padded_size(H, out_size[0], R, stride[0], ph, 1)
    Wp = _padded_size(W, out_size[1], S, stride[1], pw, 1)
    dxpad = np.zeros((N, C, Hp, Wp), dtype=dout.dtype)  # (N, C, Hp, Wp)
    for r in range(R):
        for s in range(S):
            dxpad[_offset(r, s, stride, dilation, out_size)] += g
    return np.ascontiguousarray(dxpad[:, :, ph : ph + H, pw : pw + W])  # (N, C, H, W)


# ---- adaptive average pooling -------------------------------------------------------------------
def _adaptive_matrix(n, p_out, dtype):
    """(P, n) averaging matrix: row i is 1/len on bin [floor(i*n/P), ceil((i+1)*n/P)), 0
    elsewhere."""
    i = np.arange(p_out)
    start = (i * n) // p_out  # (P,)
    end = -((-(i + 1) * n) // p_out)  # (P,) ceil division
    cols = np.arange(n)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])  # (P, n)
    return (inside / (end - start)[:, None]).astype(dtype)


def adaptive_avg_pool2d_forward_reference(x, out_size):
    """y = A_h x A_wᵀ per plane, A the bin-averaging matrices: y[p, q] = mean of bin (p, q)."""
    H, W = x.shape[2:]
    A_h = _adaptive_matrix(H, out_size[0], x.dtype)  # (P, H)
    A_w = _adaptive_matrix(W, out_size[1], x.dtype)  # (Q, W)
    return np.ascontiguousarray(A_h @ x @ A_w.T)  # (N, C, P, Q)


def adaptive_avg_pool2d_backward_reference(dout, x_shape):
    """dx = A_hᵀ dout A_w (the adjoint of the forward's linear map)."""
    H, W = x_shape[2:]
    P, Q = dout.shape[2:]
    A_h = _adaptive_matrix(H, P, dout.dtype)  # (P, H)
    A_w = _adaptive_matrix(W, Q, dout.dtype)  # (Q, W)
    return np.ascontiguousarray(A_h.T @ dout @ A_w)  # (N, C, H, W)


# ---- the kernels: C++ when available ------------------------------------------------------------
def _window(g: Pool2dGeometry):
    return g.kernel_size, g.stride, g.padding, g.dilation


def _check(x_shape, g: Pool2dGeometry, y_shape=None):
    assert tuple(x_shape) == g.x_shape and (y_shape is None or tuple(y_shape) == g.y_shape), (
        f"{g.op}: arrays {tuple(x_shape)}, {y_shape} do not match {g}"
    )


def max_pool2d_forward(x, g: Pool2dGeometry):
    """(y, argmax) as max_pool2d_forward_reference (torch's indices, NaN and padding rules)."""
    _check(x.shape, g)
    fn = cpp_kernel(_C, "max_pool2d_forward", x.dtype)
    if fn is None:
        return max_pool2d_forward_reference(x, *_window(g), g.out_size)
    return fn(x, g)


def max_pool2d_backward(dout, argmax, g: Pool2dGeometry):
    """dx[n, c, argmax[n, c, p, q]] += dout[n, c, p, q] over windows that hold an input pixel."""
    _check(g.x_shape, g, dout.shape)
    fn = cpp_kernel(_C, "max_pool2d_backward", dout.dtype)
    if fn is None:
        return max_pool2d_backward_reference(dout, argmax, g.x_shape, *_window(g))
    return fn(dout, argmax, g)


def _divisor_options(g: Pool2dGeometry):
    return g.count_include_pad, g.divisor_override


def avg_pool2d_forward(x, g: Pool2dGeometry):
    """y[p, q] = Σ_window x / divisor (padding reads as 0; the divisor options in g)."""
    _check(x.shape, g)
    return _avg_pool2d(
        "avg_pool2d_forward",
        x,
        g,
        lambda: avg_pool2d_forward_reference(
            x, g.kernel_size, g.stride, g.padding, g.out_size, *_divisor_options(g)
        ),
    )


def avg_pool2d_backward(dout, g: Pool2dGeometry):
    """dx[h, w] = Σ over the windows reading (h, w) of dout[p, q] / divisor[p, q]."""
    _check(g.x_shape, g, dout.shape)
    return _avg_pool2d(
        "avg_pool2d_backward",
        dout,
        g,
        lambda: avg_pool2d_backward_reference(
            dout, g.x_shape, g.kernel_size, g.stride, g.padding, *_divisor_options(g)
        ),
    )


def _avg_pool2d(kernel, a, g: Pool2dGeometry, reference):
    """Run the C++ avg-pool ``kernel`` on ``a`` (x or dout) with its divisor, or ``reference()``."""
    fn = cpp_kernel(_C, kernel, a.dtype)
    if fn is None:
        return reference()
    window = (g.kernel_size, g.stride, g.padding)
    divisor = _avg_divisor(g.x_shape, g.out_size, window, _divisor_options(g), a.dtype)  # (P, Q)
    return fn(a, divisor, g)


def _tiles(n, p_out):
    """Bin length when the adaptive bins tile [0, n) exactly (n % p_out == 0), else None."""
    return n // p_out if p_out > 0 and n % p_out == 0 else None


def adaptive_avg_pool2d_forward(x, g: Pool2dGeometry):
    """y[p, q] = mean of bin (p, q); a reshaped mean where the bins tile the input."""
    _check(x.shape, g)
    N, C, H, W, P, Q = g.N, g.C, g.H, g.W, g.P, g.Q
    kh, kw = _tiles(H, P), _tiles(W, Q)
    if kh is None or kw is None or x.dtype not in (np.float32, np.float64):
        return adaptive_avg_pool2d_forward_reference(x, g.out_size)
    return x.reshape(N, C, P, kh, Q, kw).mean(axis=(3, 5))  # (N, C, P, Q)


def adaptive_avg_pool2d_backward(dout, g: Pool2dGeometry):
    """dx = dout / (bin area) spread over each bin."""
    _check(g.x_shape, g, dout.shape)
    N, C, H, W, P, Q = g.N, g.C, g.H, g.W, g.P, g.Q
    kh, kw = _tiles(H, P), _tiles(W, Q)
    if kh is None or kw is None or dout.dtype not in (np.float32, np.float64):
        return adaptive_avg_pool2d_backward_reference(dout, g.x_shape)
    grad = dout * np.asarray(1.0 / (kh * kw), dtype=dout.dtype)  # (N, C, P, Q)
    dx = np.broadcast_to(grad.reshape(N, C, P, 1, Q, 1), (N, C, P, kh, Q, kw))
    return np.ascontiguousarray(dx).reshape(g.x_shape)  # (N, C, H, W)
