"""TEMPORARY conv2d for the "cuda" device, no longer used: since issue 4 "cuda" runs our conv2d CUDA
kernels (csrc/kernels/conv2d.cu). Kept only until those are checked on a GPU, then to be deleted
(with tests/test_xp_conv.py).

The explicit-GEMM algorithm of the cpu backend (minicnn/backends/_np_conv.py: im2col, one batched
matrix product per group, col2im for the data gradient), written against the array module of its
inputs, so the same code runs on CuPy arrays (the GEMMs then go to cuBLAS) and on NumPy arrays
(which is how the tests check it on machines without a GPU). Same functions, arguments and results
as the cpu backend's conv2d_*; letters N, C, H, W, K, R, S, P, Q, G as there.

    cols[n, (c R + r) S + s, p Q + q] = xpad[n, c, p sh + r dh, q sw + s dw]
    y[n, g] = w[g] (Kg, Cg R S) @ cols[n, g] (Cg R S, P Q)
"""
from __future__ import annotations

import sys

COLS_BUDGET_BYTES = 256 << 20  # largest column buffer built at once (at least one image's)


def _xp(a):
    """The array module of ``a`` (CuPy for cupy.ndarray, else NumPy), without importing CuPy needlessly."""
    if type(a).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    import numpy
    return numpy


def _output_size(H, W, R, S, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    return (H + 2 * ph - dh * (R - 1) - 1) // sh + 1, (W + 2 * pw - dw * (S - 1) - 1) // sw + 1


def _window(r, s, stride, dilation, P, Q):
    """Slices of the padded input read by kernel offset (r, s) of every output pixel: (P, Q)."""
    (sh, sw), (dh, dw) = stride, dilation
    return (slice(None), slice(None), slice(r * dh, r * dh + sh * (P - 1) + 1, sh),
            slice(s * dw, s * dw + sw * (Q - 1) + 1, sw))


def im2col(x, R, S, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C*R*S, P*Q)."""
    xp = _xp(x)
    N, C, H, W = x.shape
    (ph, pw) = padding
    P, Q = _output_size(H, W, R, S, stride, padding, dilation)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))                 # (N, C, H+2ph, W+2pw)
    cols = xp.empty((N, C, R, S, P, Q), dtype=x.dtype)                     # (N, C, R, S, P, Q)
    for r in range(R):
        for s in range(S):
            cols[:, :, r, s] = xpad[_window(r, s, stride, dilation, P, Q)]
    return cols.reshape(N, C * R * S, P * Q)


def col2im(cols, x_shape, R, S, stride, padding, dilation):
    """The adjoint of im2col: cols (N, C*R*S, P*Q) summed into an (N, C, H, W) image."""
    xp = _xp(cols)
    N, C, H, W = x_shape
    (ph, pw) = padding
    P, Q = _output_size(H, W, R, S, stride, padding, dilation)
    cols = cols.reshape(N, C, R, S, P, Q)
    xpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)      # (N, C, H+2ph, W+2pw)
    for r in range(R):
        for s in range(S):
            xpad[_window(r, s, stride, dilation, P, Q)] += cols[:, :, r, s]
    return xp.ascontiguousarray(xpad[:, :, ph:ph + H, pw:pw + W])


def _chunks(x_shape, R, S, PQ, itemsize):
    """Batch slices whose columns fit in COLS_BUDGET_BYTES (at least one image each)."""
    N, C = x_shape[:2]
    step = max(1, COLS_BUDGET_BYTES // max(C * R * S * PQ * itemsize, 1))
    return [slice(i, min(i + step, N)) for i in range(0, N, step)]


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/G, R, S)) + b (K,) or None."""
    xp = _xp(x)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    G = groups
    P, Q = _output_size(H, W, R, S, stride, padding, dilation)
    wg = w.reshape(G, K // G, Cg * R * S)                                  # (G, Kg, Cg*R*S)
    y = xp.empty((N, K, P, Q), dtype=x.dtype)                              # (N, K, P, Q)
    for sl in _chunks(x.shape, R, S, P * Q, x.itemsize):
        cols = im2col(x[sl], R, S, stride, padding, dilation)              # (n, C*R*S, P*Q)
        cols = cols.reshape(cols.shape[0], G, Cg * R * S, P * Q)           # (n, G, Cg*R*S, P*Q)
        y[sl] = xp.matmul(wg, cols).reshape(-1, K, P, Q)
    if b is not None:
        y += b.reshape(1, K, 1, 1)
    return y


def conv2d_backward_data(dout, w, x_shape, stride, padding, dilation, groups):
    """dx (N, C, H, W) = col2im(w^T @ dout)."""
    xp = _xp(dout)
    N, K, P, Q = dout.shape
    _, Cg, R, S = w.shape
    G = groups
    wgT = w.reshape(G, K // G, Cg * R * S).transpose(0, 2, 1)              # (G, Cg*R*S, Kg)
    dx = xp.empty(tuple(x_shape), dtype=dout.dtype)                        # (N, C, H, W)
    for sl in _chunks(x_shape, R, S, P * Q, dout.itemsize):
        d = dout[sl].reshape(-1, G, K // G, P * Q)                         # (n, G, Kg, P*Q)
        dcols = xp.matmul(wgT, d).reshape(d.shape[0], -1, P * Q)           # (n, C*R*S, P*Q)
        dx[sl] = col2im(dcols, dx[sl].shape, R, S, stride, padding, dilation)
    return dx


def conv2d_backward_weight(dout, x, w_shape, stride, padding, dilation, groups):
    """dw (K, C/G, R, S) = Σ_n dout[n] @ cols[n]^T."""
    xp = _xp(dout)
    N, K, P, Q = dout.shape
    _, Cg, R, S = w_shape
    G = groups
    dw = xp.zeros((G, K // G, Cg * R * S), dtype=dout.dtype)               # (G, Kg, Cg*R*S)
    for sl in _chunks(x.shape, R, S, P * Q, x.itemsize):
        cols = im2col(x[sl], R, S, stride, padding, dilation)
        cols = cols.reshape(cols.shape[0], G, Cg * R * S, P * Q)           # (n, G, Cg*R*S, P*Q)
        d = dout[sl].reshape(-1, G, K // G, P * Q)                         # (n, G, Kg, P*Q)
        dw += xp.matmul(d, cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return dw.reshape(w_shape)


def conv2d_backward_bias(dout):
    """db (K,) = Σ_{n, p, q} dout."""
    return dout.sum(axis=(0, 2, 3))


def conv2d_backward(dout, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    """(dx, dw, db), each only where ``needs`` says so (else None)."""
    hyper = (stride, padding, dilation, groups)
    dx = conv2d_backward_data(dout, w, x.shape, *hyper) if needs[0] else None
    dw = conv2d_backward_weight(dout, x, w.shape, *hyper) if needs[1] else None
    db = conv2d_backward_bias(dout) if needs[2] else None
    return dx, dw, db
