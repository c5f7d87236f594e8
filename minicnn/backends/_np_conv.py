"""conv2d on the "cpu" device: im2col + GEMM (the Caffe / cuDNN "explicit GEMM" algorithm).

Letters: N batch, C input channels, H x W input, K output channels, R x S kernel, P x Q output,
G groups (Cg = C/G, Kg = K/G). The kernels take the op's checked Conv2dGeometry ``g``
(minicnn/ops/geometry.py: sizes, P and Q, stride (sh, sw), symmetric padding (ph, pw) — the op
pads asymmetric 'same' itself —, dilation (dh, dw)).

    cols[(c R + r) S + s, (n P + p) Q + q] = xpad[n, c, p sh + r dh, q sw + s dw]
    y[:, g]  = w[g] (Kg, Cg R S) @ cols[g] (Cg R S, N P Q)                   forward
    dw[g]    = dout[:, g] (Kg, N P Q) @ cols[g]^T (N P Q, Cg R S)            backward-weight
    dx       = col2im(w[g]^T (Cg R S, Kg) @ dout[:, g] (Kg, N P Q))          backward-data

The batch is folded into the GEMM's columns ("folded" layout, cols (C R S, N P Q)): a batch chunk
is one GEMM per group however small P x Q is (ResNet's last stage at 64x64 input has 2x2 maps: one
GEMM per image would run at a fifth of the speed), and backward-weight reduces over the batch
inside the GEMM instead of a Python loop over images. The price is moving the batch axis of y and
dout in and out of the GEMM's columns (``fold_batch`` / ``unfold_batch``, one copy each; none for a
one-image chunk, whose GEMM reads dout and writes y in place). A 1x1, stride-1, unpadded
convolution needs no im2col: its columns are x itself. With stride 1 and K <= C, backward-data runs
as the equivalent convolution of dout instead of col2im (see ``_data_grad_as_conv``), and
backward-weight picks the faster GEMM orientation (``TRANSPOSED_DW_MIN_COLUMNS``).

The GEMMs go through ``_np_blas.gemm`` (NumPy's BLAS in blocks on the C++ thread pool); im2col,
col2im and the batch moves run in C++ (minicnn._C_cpu) when the extension imports;
``im2col_reference`` / ``col2im_reference`` are the readable NumPy versions (per-image layout),
the fallback otherwise and the tests' reference (they agree bit for bit). The columns are never kept
between forward and backward: backward-weight recomputes them, and all three kernels work on batch
chunks whose columns fit in ``COLS_BUDGET_BYTES`` (in scratch arrays kept per thread, see
``_Buffer``), so peak memory stays ~ one chunk of columns, not N of them.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ops.geometry import Conv2dGeometry, conv2d_output_size
from ._cpp import cpp_kernel, load_cpu_extension
from ._np_blas import blas_usable, gemm

_C = load_cpu_extension()  # None: the NumPy reference does the data movement

COLS_BUDGET_BYTES = 8 << 20  # largest column buffer built at once (at least one image's)
# conv2d's forward and backward build their columns in cache-sized panels inside C++ and multiply
# each as it is built (csrc/cpu/conv.h, conv_backward.h: no barrier between the phases);
# MINICNN_CONV_PANELS=0 goes back to the batch chunks below (conv2d_*_chunks).
CONV_PANELS = os.environ.get("MINICNN_CONV_PANELS") != "0"


def output_size(H, W, R, S, stride, padding, dilation):
    """(P, Q) of a convolution with symmetric padding (geometry.conv2d_output_size per axis)."""
    return (
        conv2d_output_size(H, R, stride[0], padding[0], dilation[0]),
        conv2d_output_size(W, S, stride[1], padding[1], dilation[1]),
    )


# ---- im2col / col2im ----------------------------------------------------------------------------
def im2col_reference(x, R, S, stride, padding, dilation):
    """x (N, C, H, W) -> cols (N, C*R*S, P*Q), in NumPy: windows of the zero-padded input."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x.shape
    P, Q = output_size(H, W, R, S, stride, padding, dilation)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H+2ph, W+2pw)
    span = (dh * (R - 1) + 1, dw * (S - 1) + 1)  # dilated kernel extent
    win = sliding_window_view(xpad, span, axis=(2, 3))  # (N, C, ., ., dhR, dwS)
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :P, :Q]  # (N, C, P, Q, R, S)
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(N, C * R * S, P * Q)


def col2im_reference(cols, x_shape, R, S, stride, padding, dilation):
    """The adjoint of im2col: scatter-add cols (N, C*R*S, P*Q) into an (N, C, H, W) image."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    N, C, H, W = x_shape
    P, Q = output_size(H, W, R, S, stride, padding, dilation)
    cols = cols.reshape(N, C, R, S, P, Q)
    xpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)  # (N, C, H+2ph, W+2pw)
    for r in range(R):
        for s in range(S):
            h0, w0 = r * dh, s * dw
            xpad[:, :, h0 : h0 + sh * (P - 1) + 1 : sh, w0 : w0 + sw * (Q - 1) + 1 : sw] += cols[
                :, :, r, s
            ]
    return np.ascontiguousarray(xpad[:, :, ph : ph + H, pw : pw + W])


def im2col(x, g: Conv2dGeometry, out=None):
    """x (N, C, H, W) -> cols (C*R*S, N*P*Q), the batch folded into the columns (into ``out``);
    ``g`` is the geometry of exactly these images (its N is x's)."""
    fn = cpp_kernel(_C, "im2col", x.dtype)
    if fn is not None:
        return fn(x, g, out=out)
    cols = im2col_reference(x, g.R, g.S, g.stride, g.padding, g.dilation)  # (N, C*R*S, P*Q)
    return unfold_batch(cols, out=out)


def col2im(cols, g: Conv2dGeometry, out=None):
    """cols (C*R*S, N*P*Q) -> dx (N, C, H, W) (into ``out``), summing overlapping windows."""
    fn = cpp_kernel(_C, "col2im", cols.dtype)
    if fn is not None:
        return fn(cols, g, out=out)
    per_image = fold_batch(cols, g.N)  # (N, C*R*S, P*Q)
    dx = col2im_reference(per_image, g.x_shape, g.R, g.S, g.stride, g.padding, g.dilation)
    return dx if out is None else _store(out, dx)


def unfold_batch(a, out=None):
    """a (N, K, L) -> (K, N*L) (into ``out``)."""
    fn = cpp_kernel(_C, "unfold_batch", a.dtype)
    if fn is not None:
        return fn(a, out=out)
    folded = np.ascontiguousarray(a.transpose(1, 0, 2)).reshape(a.shape[1], -1)
    return folded if out is None else _store(out, folded)


def fold_batch(a, N, bias=None, out=None):
    """a (K, N*L) -> (N, K, L), plus bias (K,) if given (into ``out``)."""
    fn = cpp_kernel(_C, "fold_batch", a.dtype)
    if fn is not None:
        return fn(a, N, bias, out=out)
    y = np.ascontiguousarray(a.reshape(a.shape[0], N, -1).transpose(1, 0, 2))  # (N, K, L)
    if bias is not None:
        y += bias.reshape(1, -1, 1)
    return y if out is None else _store(out, y)


def transpose(a):
    """(B, M, N) -> (B, N, M), contiguous."""
    fn = cpp_kernel(_C, "transpose", a.dtype)
    return np.ascontiguousarray(a.transpose(0, 2, 1)) if fn is None else fn(a)


def _store(out, value):
    out[...] = value
    return out


def _is_pointwise(R, S, stride, padding):
    """A 1x1, stride-1, unpadded convolution: the columns are the input itself."""
    return (R, S) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


# ---- batch chunks -------------------------------------------------------------------------------
def _chunks(x_shape, R, S, PQ, itemsize):
    """Slices of the batch whose columns fit in COLS_BUDGET_BYTES (at least one image each)."""
    N, C = x_shape[:2]
    per_image = max(C * R * S * PQ * itemsize, 1)
    step = max(1, COLS_BUDGET_BYTES // per_image)
    step = -(-N // -(-N // step)) if N else 1  # as even as possible: 8 + 8, not 13 + 3
    return [slice(i, min(i + step, N)) for i in range(0, N, step)]


WORKSPACE_MAX_BYTES = 32 << 20  # scratch arrays up to this size are kept for the next call


class _Buffer:
    """A scratch array of one role (columns, moved dout, …), kept between calls per thread.

    A fresh array per call costs page faults: big allocations come straight from the OS, and on
    this kind of machine faulting in a few MB takes as long as the GEMM that fills them. Each
    thread keeps one array per role and dtype (at most WORKSPACE_MAX_BYTES, larger ones are
    dropped after the call), so the memory held is a few column chunks (COLS_BUDGET_BYTES).
    """

    _local = threading.local()

    def __init__(self, role, dtype):
        self.key, self.dtype = (role, np.dtype(dtype)), np.dtype(dtype)

    def get(self, shape):
        size = int(np.prod(shape))
        cache = self._local.__dict__.setdefault("arrays", {})
        array = cache.get(self.key)
        if array is None or array.size < size:
            array = np.empty(size, dtype=self.dtype)
            if array.nbytes <= WORKSPACE_MAX_BYTES:
                cache[self.key] = array
        return array[:size].reshape(shape)


def _chunk(g: Conv2dGeometry, sl: slice) -> Conv2dGeometry:
    """The geometry of the images ``sl`` of the batch."""
    n = sl.stop - sl.start
    return g if n == g.N else replace(g, N=n)


def _columns(x, g: Conv2dGeometry, buffer):
    """cols (C*R*S, n*P*Q) of the images x (n, C, H, W), g their geometry."""
    n, C = x.shape[:2]
    if _is_pointwise(g.R, g.S, g.stride, g.padding):
        return (
            x.reshape(C, -1)
            if n == 1
            else unfold_batch(x.reshape(n, C, -1), out=buffer.get((C, x[0].size // C * n)))
        )
    return im2col(x, g, out=buffer.get((C * g.R * g.S, n * g.P * g.Q)))


def _dout_columns(dout, buffer):
    """dout (n, K, P, Q) as (K, n*P*Q): a view for one image, else moved into ``buffer``."""
    n, K = dout.shape[:2]
    if n == 1:
        return dout.reshape(K, -1)
    return unfold_batch(dout.reshape(n, K, -1), out=buffer.get((K, dout.size // K)))


def _grouped(a, G):
    """(G*M, J) -> (G, M, J)."""
    return a.reshape(G, -1, a.shape[-1])


def _matmul_groups(a, b, out, accumulate=False):
    """out[g] (+)= a[g] @ b[g] for stacks (G, M, I), (G, I, J) -> out (G, M, J), one GEMM per
    group (NumPy's stacked matmul does not use BLAS for some transposed operands)."""
    for g in range(a.shape[0]):
        gemm(a[g], b[g], out[g], accumulate)
    return out


# ---- kernels ------------------------------------------------------------------------------------
def _check(x_shape, w_shape, g):
    """The arrays' shapes against the geometry the op computed (cheap: NumPy is memory-safe)."""
    assert tuple(x_shape) == g.x_shape and tuple(w_shape) == g.w_shape and g.extra == (0, 0), (
        f"conv2d: arrays {tuple(x_shape)}, {tuple(w_shape)} do not match {g}"
    )


def _check_backward(dout, x_shape, w_shape, g):
    """_check, and dout's shape against the geometry's output."""
    _check(x_shape, w_shape, g)
    assert tuple(dout.shape) == g.y_shape, f"conv2d: dout {dout.shape} does not match {g}"


def _panels_kernel(name, *arrays):
    """The C++ panel kernel ``name`` for these arrays (csrc/cpu/conv.h, conv_backward.h), or None
    (no extension, no usable BLAS, MINICNN_CONV_PANELS=0, mixed dtypes)."""
    if not (CONV_PANELS and blas_usable()) or len({a.dtype for a in arrays}) != 1:
        return None
    return cpp_kernel(_C, name, arrays[0].dtype)


def conv2d_forward(x, w, b, g: Conv2dGeometry):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C/G, R, S)) + b (K,) or None."""
    _check(x.shape, w.shape, g)
    fused = _panels_kernel("conv2d_forward", x, w, *(() if b is None else (b,)))
    if fused is not None:
        return fused(x, w, b, g)  # columns in panels, multiplied as they are built
    return conv2d_forward_chunks(x, w, b, g)


def conv2d_forward_chunks(x, w, b, g: Conv2dGeometry):
    """conv2d_forward by batch chunks: im2col of a chunk, one GEMM per group, the batch move."""
    N, K, P, Q, R, S, G = g.N, g.K, g.P, g.Q, g.R, g.S, g.G
    wg = w.reshape(G, K // G, g.Cg * R * S)  # (G, Kg, Cg*R*S)
    y = np.empty((N, K, P, Q), dtype=x.dtype)  # (N, K, P, Q)
    cols_buf, y_buf = _Buffer("cols", x.dtype), _Buffer("out", x.dtype)
    for sl in _chunks(x.shape, R, S, P * Q, x.itemsize):
        cols = _columns(x[sl], _chunk(g, sl), cols_buf)  # (C*R*S, n*P*Q)
        n = cols.shape[1] // (P * Q)
        if n == 1:  # the GEMM writes this image's output in place
            _matmul_groups(wg, _grouped(cols, G), y[sl].reshape(G, K // G, P * Q))
            if b is not None:
                y[sl] += b.reshape(1, K, 1, 1)
            continue
        yk = _matmul_groups(wg, _grouped(cols, G), y_buf.get((G, K // G, n * P * Q)))
        fold_batch(yk.reshape(K, -1), n, b, out=y[sl].reshape(n, K, P * Q))  # + bias
    return y


def _transposed_kernel(w, G):
    """w'[c, k, r, s] = w[k, c, R-1-r, S-1-s] per group: (K, C/G, R, S) -> (C, K/G, R, S)."""
    fn = cpp_kernel(_C, "conv_transpose_kernel", w.dtype)
    if fn is not None:
        return fn(w, G)
    K, Cg, R, S = w.shape
    wt = w.reshape(G, K // G, Cg, R, S)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(wt).reshape(G * Cg, K // G, R, S)


@functools.lru_cache(maxsize=256)  # a layer's backward asks every step
def _data_grad_as_conv(g: Conv2dGeometry):
    """The geometry of the convolution of dout that gives dx, or None where col2im(w^T @ dout)
    is better.

    With stride 1, dx is a "full" convolution of dout with the flipped, transposed kernel:
    dx = conv(dout, w'[c, k, r, s] = w[k, c, R-1-r, S-1-s], padding d(R-1) - p, same dilation).
    Its columns have K R S rows instead of C R S and its GEMM reduces over K R S instead of K,
    and im2col gathers where col2im scatter-adds: 1.5-2x faster when K <= C (DenseNet's 128 -> 32).
    Building w' costs a pass over the weights, as much as col2im on N P Q = K columns: small maps
    (NPQ < 2K, ResNet's last stage) keep col2im.
    """
    if g.stride != (1, 1) or (g.R, g.S) == (1, 1) or g.K > g.C or g.N * g.P * g.Q < 2 * g.K:
        return None
    ph, pw = g.dh * (g.R - 1) - g.ph, g.dw * (g.S - 1) - g.pw
    if min(ph, pw) < 0:
        return None
    return Conv2dGeometry(
        g.N, g.K, g.P, g.Q, g.C, g.R, g.S, ph=ph, pw=pw, dh=g.dh, dw=g.dw, G=g.G, op=g.op
    )


def conv2d_backward_data(dout, w, g: Conv2dGeometry):
    """dx (N, C, H, W) from dout (N, K, P, Q) and w (K, C/G, R, S): col2im(w^T @ dout), or the
    equivalent convolution of dout (see _data_grad_as_conv)."""
    _check_backward(dout, g.x_shape, w.shape, g)
    as_conv = _data_grad_as_conv(g)
    if as_conv is not None:
        return conv2d_forward(dout, _transposed_kernel(w, g.G), None, as_conv)
    fused = _panels_kernel("conv2d_backward_data", dout, w)
    if fused is not None:
        return fused(dout, w, g)  # panels of w^T @ dout, each scattered into its own dx planes
    return conv2d_backward_data_chunks(dout, w, g)


def conv2d_backward_data_chunks(dout, w, g: Conv2dGeometry):
    """col2im(w^T @ dout) by batch chunks: the batch move, one GEMM per group, col2im."""
    P, Q, R, S, G, Cg = g.P, g.Q, g.R, g.S, g.G, g.Cg
    wgT = w.reshape(G, g.Kg, Cg * R * S).transpose(0, 2, 1)  # (G, Cg*R*S, Kg)
    dx = np.empty(g.x_shape, dtype=dout.dtype)  # (N, C, H, W)
    d_buf, dcols_buf = _Buffer("dout", dout.dtype), _Buffer("cols", dout.dtype)
    pointwise = _is_pointwise(R, S, g.stride, g.padding)
    for sl in _chunks(g.x_shape, R, S, P * Q, dout.itemsize):
        d = _dout_columns(dout[sl], d_buf)  # (K, n*P*Q)
        n = d.shape[1] // (P * Q)
        if pointwise and n == 1:  # dx of this image is the GEMM's output
            _matmul_groups(wgT, _grouped(d, G), dx[sl].reshape(G, Cg, P * Q))
            continue
        dcols = _matmul_groups(wgT, _grouped(d, G), dcols_buf.get((G, Cg * R * S, n * P * Q)))
        dcols = dcols.reshape(-1, n * P * Q)  # (C*R*S, n*P*Q)
        if pointwise:
            fold_batch(dcols, n, out=dx[sl].reshape(n, -1, P * Q))
        else:
            col2im(dcols, _chunk(g, sl), out=dx[sl])
    return dx


TRANSPOSED_DW_MIN_COLUMNS = 1024  # see conv2d_backward_weight


def conv2d_backward_weight(dout, x, g: Conv2dGeometry):
    """dw (K, C/G, R, S) = dout (K, N P Q) @ cols^T, recomputing the columns of x (N, C, H, W).

    With many columns (N P Q >= TRANSPOSED_DW_MIN_COLUMNS) it is computed transposed,
    dw^T (Cg R S, Kg) = cols @ dout^T, and transposed back: OpenBLAS runs that orientation 10-20%
    faster for the short K of most layers, which pays for the transpose once the GEMM is long.
    """
    _check_backward(dout, x.shape, g.w_shape, g)
    fused = _panels_kernel("conv2d_backward_weight", dout, x)
    if fused is not None:
        return fused(dout, x, g)  # panels of columns, each used as it is built (conv_backward.h)
    return conv2d_backward_weight_chunks(dout, x, g)


def conv2d_backward_weight_chunks(dout, x, g: Conv2dGeometry):
    """conv2d_backward_weight by batch chunks: im2col of a chunk, one GEMM per group."""
    P, Q, R, S, G, Cg, Kg = g.P, g.Q, g.R, g.S, g.G, g.Cg, g.Kg
    chunks = _chunks(x.shape, R, S, P * Q, x.itemsize)
    columns = (chunks[0].stop - chunks[0].start if chunks else 0) * P * Q  # per chunk
    transposed = columns >= TRANSPOSED_DW_MIN_COLUMNS
    shape = (G, Cg * R * S, Kg) if transposed else (G, Kg, Cg * R * S)
    acc = np.zeros(shape, dtype=dout.dtype)  # dw^T or dw, per group
    cols_buf, d_buf = _Buffer("cols", x.dtype), _Buffer("dout", dout.dtype)
    for i, sl in enumerate(chunks):
        cols = _columns(x[sl], _chunk(g, sl), cols_buf)  # (C*R*S, n*P*Q)
        cols = _grouped(cols, G)  # (G, Cg*R*S, n*P*Q)
        d = _grouped(_dout_columns(dout[sl], d_buf), G)  # (G, Kg, n*P*Q)
        a, b = (cols, d.transpose(0, 2, 1)) if transposed else (d, cols.transpose(0, 2, 1))
        _matmul_groups(a, b, acc, accumulate=i > 0)
    return (transpose(acc) if transposed else acc).reshape(g.w_shape)


def conv2d_backward_bias(dout):
    """db (K,) = Σ_{n, p, q} dout (N, K, P, Q)."""
    fn = cpp_kernel(_C, "channel_sums", dout.dtype)
    if fn is None:
        return dout.sum(axis=(0, 2, 3))
    N, K, P, Q = dout.shape  # explicit sizes: a -1 can't be inferred when N = 0
    return fn(dout.reshape(N, K, P * Q))


def conv2d_backward(dout, x, w, g: Conv2dGeometry, needs=(True, True, True)):
    """(dx, dw, db) for conv2d_forward, each computed only where ``needs`` says so (else None).

    Where both dx and dw are needed, the C++ kernel runs the tasks of both in one parallel_for
    (csrc/cpu/conv_backward.h conv2d_backward_panels): a weight gradient of few tasks (1x1
    layers on small maps) no longer leaves a core idle. The same tasks, so the same bits."""
    dout = np.ascontiguousarray(dout)
    both = _panels_kernel("conv2d_backward", dout, x, w) if needs[0] and needs[1] else None
    if both is not None:
        _check_backward(dout, x.shape, w.shape, g)
        as_conv = _data_grad_as_conv(g)
        wt = None if as_conv is None else _transposed_kernel(w, g.G)
        dx, dw = both(dout, x, w, g, wt, as_conv)
    else:
        dx = conv2d_backward_data(dout, w, g) if needs[0] else None
        dw = conv2d_backward_weight(dout, x, g) if needs[1] else None
    db = conv2d_backward_bias(dout) if needs[2] else None
    return dx, dw, db
