"""The fully connected layer, by loops over rows, outputs and features."""

import numpy as np

from ._util import f64


def linear_forward(x, w, b=None):
    """y[m, o] = b[o] + Σ_i x[m, i] · w[o, i] for x (..., I), w (O, I), b (O,): y = x Wᵀ + b, the
    leading dims of x kept (flattened into rows m here)."""
    x, w = f64(x), f64(w)
    (O, I), rows = w.shape, x.reshape(-1, w.shape[1])
    y = np.zeros((rows.shape[0], O))
    for m, o in np.ndindex(rows.shape[0], O):
        y[m, o] = 0.0 if b is None else b[o]
        for i in range(I):
            y[m, o] += rows[m, i] * w[o, i]
    return y.reshape(x.shape[:-1] + (O,))


def linear_backward(dy, x, w):
    """(dx, dw, db): dx[m, i] = Σ_o dy[m, o] w[o, i],  dw[o, i] = Σ_m dy[m, o] x[m, i],
    db[o] = Σ_m dy[m, o]  (dx = dy W, dW = dyᵀ x)."""
    dy, x, w = f64(dy), f64(x), f64(w)
    (O, I), rows, d = w.shape, x.reshape(-1, w.shape[1]), dy.reshape(-1, w.shape[0])
    dx, dw, db = np.zeros(rows.shape), np.zeros(w.shape), np.zeros(O)
    for m, o in np.ndindex(rows.shape[0], O):
        db[o] += d[m, o]
        for i in range(I):
            dx[m, i] += d[m, o] * w[o, i]
            dw[o, i] += d[m, o] * rows[m, i]
    return dx.reshape(x.shape), dw, db
