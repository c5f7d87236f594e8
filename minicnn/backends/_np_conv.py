"""conv2d on the "cpu" device: im2col + GEMM (the Caffe / cuDNN "explicit GEMM" algorithm).

Letters: N batch, C input channels, H x W input, K output channels, R x S kernel, P x Q output,
G groups (Cg = C/G, Kg = K/G). Hyperparameters arrive checked, as pairs: stride (sh, sw),
padding (ph, pw) — symmetric; the op pads asymmetric 'same' itself —, dilation (dh, dw).

    P = (H + 2 ph - dh (R - 1) - 1) // sh + 1          (Q likewise)
    cols[n, (c R + r) S + s, p Q + q] = xpad[n, c, p sh + r dh, q sw + s dw]
    y[n, g] = w[g] (Kg, Cg R S) @ cols[n, g] (Cg R S, P Q)             forward
    dw[g]   = Σ_n dout[n, g] (Kg, P Q) @ cols[n, g]^T (P Q, Cg R S)    backward-weight
    dx      = col2im(w[g]^T (Cg R S, Kg) @ dout[n, g] (Kg, P Q))        backward-data

im2col/col2im run in C++ (minicnn._C_cpu, OpenMP over (n, c) planes) when the extension imports;
``im2col_reference`` / ``col2im_reference`` are the readable NumPy versions, used otherwise and as
the tests' reference (the two agree bit for bit). The columns are never kept between forward and
backward: backward-weight recomputes them, and all three kernels work on batch chunks whose columns
fit in ``COLS_BUDGET_BYTES``, so peak memory stays ~ one chunk of columns, not N of them.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

try:
    from .. import _C_cpu as _C
except ImportError:  # no compiled helper: the NumPy reference does the data movement
    _C = None

# The kernels every backend provides; im2col/col2im(_reference) stay private to this module.
__all__ = ["conv2d_forward", "conv2d_backward", "conv2d_backward_data", "conv2d_backward_weight",
           "conv2d_backward_bias"]

COLS_BUDGET_BYTES = 64 << 20  # largest column buffer built at once (at least one image's)


def conv2d_output_size(H, W, R, S, stride, padding, dilation):
    """(P, Q) of a convolution with symmetric padding."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    return (H + 2 * ph - dh * (R - 1) - 1) // sh + 1, (W + 2 * pw - dw * (S - 1) - 1) // sw + 1


# ---- im2col / col2im ----------------------------------------------------------------------------
def im2col_reference(x, R, S, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C*R*S, P*Q), in NumPy: windows of the zero-padded input."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))                 # (N, C, H+2ph, W+2pw)
    span = (dh * (R - 1) + 1, dw * (S - 1) + 1)                            # dilated kernel extent
    win = sliding_window_view(xpad, span, axis=(2, 3))                     # (N, C, ., ., dhR, dwS)
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :P, :Q]                 # (N, C, P, Q, R, S)
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(N, C * R * S, P * Q)


def col2im_reference(cols, x_shape, R, S, stride, padding, dilation):
    """The adjoint of im2col: scatter-add cols (N, C*R*S, P*Q) into an (N, C, H, W) image."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x_shape
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    cols = cols.reshape(N, C, R, S, P, Q)
    xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)      # (N, C, H+2ph, W+2pw)
    for r in range(R):
        for s in range(S):
            h0, w0 = r * dh, s * dw
            xpad[:, :, h0:h0 + sh * (P - 1) + 1:sh, w0:w0 + sw * (Q - 1) + 1:sw] += cols[:, :, r, s]
    return np.ascontiguousarray(xpad[:, :, ph:ph + H, pw:pw + W])


def im2col(x, R, S, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C*R*S, P*Q); C++ when available, else the NumPy reference."""
    if _C is None:
        return im2col_reference(x, R, S, stride, padding, dilation)
    fn = _C.im2col_f32 if x.dtype == np.float32 else _C.im2col_f64
    return fn(x, R, S, *stride, *padding, *dilation)


def col2im(cols, x_shape, R, S, stride, padding, dilation):
    """cols (N, C*R*S, P*Q) -> dx (N, C, H, W), summing overlapping windows."""
    if _C is None:
        return col2im_reference(cols, x_shape, R, S, stride, padding, dilation)
    fn = _C.col2im_f32 if cols.dtype == np.float32 else _C.col2im_f64
    return fn(cols, *x_shape, R, S, *stride, *padding, *dilation)


def _is_pointwise(R, S, stride, padding):
    """A 1x1, stride-1, unpadded convolution: the columns are the input itself."""
    return (R, S) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _columns(x, R, S, stride, padding, dilation, G):
    """cols (n, G, Cg*R*S, P*Q) of the images x (n, C, H, W)."""
    n, C = x.shape[:2]
    if _is_pointwise(R, S, stride, padding):
        cols = x.reshape(n, C, -1)
    else:
        cols = im2col(x, R, S, stride, padding, dilation)                 # (n, C*R*S, P*Q)
    return cols.reshape(n, G, (C // G) * R * S, -1)


def _chunks(x_shape, R, S, PQ, itemsize):
    """Slices of the batch whose columns fit in COLS_BUDGET_BYTES (at least one image each)."""
    N, C = x_shape[:2]
    per_image = max(C * R * S * PQ * itemsize, 1)
    step = max(1, COLS_BUDGET_BYTES // per_image)
    return [slice(i, min(i + step, N)) for i in range(0, N, step)]


# ---- kernels ------------------------------------------------------------------------------------
def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/G, R, S)) + b (K,) or None."""
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    G = groups
    P, Q = conv2d_output_size(H, W, R, S, stride, padding, dilation)
    wg = w.reshape(G, K // G, Cg * R * S)                                  # (G, Kg, Cg*R*S)
    y = np.empty((N, K, P, Q), dtype=x.dtype)                              # (N, K, P, Q)
    for sl in _chunks(x.shape, R, S, P * Q, x.itemsize):
        cols = _columns(x[sl], R, S, stride, padding, dilation, G)         # (n, G, Cg*R*S, P*Q)
        y[sl] = np.matmul(wg, cols).reshape(-1, K, P, Q)                   # (n, G, Kg, P*Q)
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    return y


def conv2d_backward_data(dout, w, x_shape, stride, padding, dilation, groups):
    """dx (N, C, H, W) from dout (N, K, P, Q) and w (K, C/G, R, S): col2im(w^T @ dout)."""
    N, K, P, Q = dout.shape
    _, Cg, R, S = w.shape
    G = groups
    wgT = w.reshape(G, K // G, Cg * R * S).transpose(0, 2, 1)              # (G, Cg*R*S, Kg)
    dx = np.empty(x_shape, dtype=dout.dtype)                               # (N, C, H, W)
    for sl in _chunks(x_shape, R, S, P * Q, dout.itemsize):
        d = dout[sl].reshape(-1, G, K // G, P * Q)                         # (n, G, Kg, P*Q)
        dcols = np.matmul(wgT, d).reshape(d.shape[0], -1, P * Q)           # (n, C*R*S, P*Q)
        if _is_pointwise(R, S, stride, padding):
            dx[sl] = dcols.reshape(dx[sl].shape)
        else:
            dx[sl] = col2im(dcols, dx[sl].shape, R, S, stride, padding, dilation)
    return dx


def conv2d_backward_weight(dout, x, w_shape, stride, padding, dilation, groups):
    """dw (K, C/G, R, S) = Σ_n dout[n] @ cols[n]^T, recomputing the columns of x (N, C, H, W)."""
    N, K, P, Q = dout.shape
    _, Cg, R, S = w_shape
    G = groups
    dw = np.zeros((G, K // G, Cg * R * S), dtype=dout.dtype)               # (G, Kg, Cg*R*S)
    for sl in _chunks(x.shape, R, S, P * Q, x.itemsize):
        cols = _columns(x[sl], R, S, stride, padding, dilation, G)         # (n, G, Cg*R*S, P*Q)
        d = dout[sl].reshape(-1, G, K // G, P * Q)                         # (n, G, Kg, P*Q)
        for i in range(d.shape[0]):                                        # one GEMM per image
            dw += np.matmul(d[i], cols[i].transpose(0, 2, 1))              # no (n, …) temporary
    return dw.reshape(w_shape)


def conv2d_backward_bias(dout):
    """db (K,) = Σ_{n, p, q} dout (N, K, P, Q)."""
    return dout.sum(axis=(0, 2, 3))


def conv2d_backward(dout, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    """(dx, dw, db) for conv2d_forward, each computed only where ``needs`` says so (else None)."""
    hyper = (stride, padding, dilation, groups)
    dx = conv2d_backward_data(dout, w, x.shape, *hyper) if needs[0] else None
    dw = conv2d_backward_weight(dout, x, w.shape, *hyper) if needs[1] else None
    db = conv2d_backward_bias(dout) if needs[2] else None
    return dx, dw, db
