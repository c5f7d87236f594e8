"""conv2d: the 2-D convolution (cross-correlation, as every deep-learning library), by loops.

    y[n, k, p, q] = b[k] + Σ_{c<C/G} Σ_{r<R} Σ_{s<S} w[k, c, r, s] · x[n, g·C/G + c, h, v]
    h = p·sh − pt + r·dh,   v = q·sw − pl + s·dw,   g = k // (K/G),   x = 0 outside the input

with stride (sh, sw), padding (pt, pb) rows and (pl, pr) columns, dilation (dh, dw) and G groups:
filter k sees only the C/G input channels of its group g. Grouped convolution is how AlexNet split
its layers over two GPUs (Krizhevsky et al. 2012, section 3.2: "the kernels of layer 3 take input
from all kernel maps in layer 2; those of layers 2, 4, 5 only from the maps on the same GPU");
G = C = K is a depthwise convolution. Output size, per axis:

    P = (H + pt + pb − dh·(R − 1) − 1) // sh + 1,   Q likewise from W, S.

Every term of the sum multiplies one weight by one input, so the backward pass sends dy[n, k, p, q]
back along the same terms: dx[n, ci, h, v] += dy · w[k, c, r, s] and dw[k, c, r, s] += dy · x[n,
ci, h, v]; db[k] = Σ_{n, p, q} dy[n, k, p, q].
"""

import numpy as np

from ._util import f64, pair


def _padding(padding):
    """((top, bottom), (left, right)) from p, (ph, pw) or ((pt, pb), (pl, pr))."""
    if np.ndim(padding) == 0:
        padding = (padding, padding)
    return tuple(pair(p) for p in padding)


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Checked (stride, ((pt, pb), (pl, pr)), dilation, P, Q)."""
    (_, C, H, W), (K, Cg, R, S) = x_shape, w_shape
    assert C == Cg * groups and K % groups == 0, "channels must split into the groups"
    stride, padding, dilation = pair(stride), _padding(padding), pair(dilation)
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = stride, padding, dilation
    P = (H + pt + pb - dh * (R - 1) - 1) // sh + 1
    Q = (W + pl + pr - dw * (S - 1) - 1) // sw + 1
    return stride, padding, dilation, P, Q


def _terms(x_shape, w_shape, stride, padding, dilation, groups):
    """Every product of the sum above: (n, k, p, q, input channel ci, c, r, s, h, v)."""
    (N, _, H, W), (K, Cg, R, S) = x_shape, w_shape
    (sh, sw), ((pt, _), (pl, _)), (dh, dw), P, Q = _geometry(
        x_shape, w_shape, stride, padding, dilation, groups
    )
    for n, k, p, q in np.ndindex(N, K, P, Q):
        g = k // (K // groups)  # the group of filter k
        for c, r, s in np.ndindex(Cg, R, S):
            h, v = p * sh - pt + r * dh, q * sw - pl + s * dw
            if 0 <= h < H and 0 <= v < W:  # outside: zero padding, no term
                yield n, k, p, q, g * Cg + c, c, r, s, h, v


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y (N, K, P, Q) for x (N, C, H, W), w (K, C/groups, R, S), b (K,) or None.

    ``padding``: p, (ph, pw), or ((pt, pb), (pl, pr)) for asymmetric padding (torch's 'same').
    """
    x, w = f64(x), f64(w)
    *_, P, Q = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    y = np.zeros((x.shape[0], w.shape[0], P, Q))
    for n, k, p, q, ci, c, r, s, h, v in _terms(
        x.shape, w.shape, stride, padding, dilation, groups
    ):
        y[n, k, p, q] += w[k, c, r, s] * x[n, ci, h, v]
    if b is not None:
        for n, k, p, q in np.ndindex(*y.shape):
            y[n, k, p, q] += b[k]
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(dx, dw, db) for dy (N, K, P, Q): each product's two factors get dy times the other one."""
    dy, x, w = f64(dy), f64(x), f64(w)
    dx, dw, db = np.zeros(x.shape), np.zeros(w.shape), np.zeros(w.shape[0])
    for n, k, p, q, ci, c, r, s, h, v in _terms(
        x.shape, w.shape, stride, padding, dilation, groups
    ):
        dx[n, ci, h, v] += dy[n, k, p, q] * w[k, c, r, s]
        dw[k, c, r, s] += dy[n, k, p, q] * x[n, ci, h, v]
    for n, k, p, q in np.ndindex(*dy.shape):
        db[k] += dy[n, k, p, q]
    return dx, dw, db
