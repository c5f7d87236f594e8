"""ReLU, dropout given its mask, and the fully connected layer, by loops over the elements."""
import numpy as np

from ._util import f64


# ---- ReLU ----------------------------------------------------------------------------------------
def relu_forward(x):
    """y = max(x, 0), elementwise (Nair & Hinton 2010; AlexNet section 3.1 trains 6x faster with
    it than with tanh)."""
    x = f64(x)
    y = np.empty(x.shape)
    for i in np.ndindex(*x.shape):
        y[i] = x[i] if x[i] > 0 else 0.0
    return y


def relu_backward(dy, x):
    """dx = dy where x > 0, else 0 (the subgradient 0 at the kink x = 0, as torch)."""
    dy, x = f64(dy), f64(x)
    dx = np.zeros(x.shape)
    for i in np.ndindex(*x.shape):
        dx[i] = dy[i] if x[i] > 0 else 0.0
    return dx


# ---- dropout -------------------------------------------------------------------------------------
def dropout_forward(x, keep, p):
    """y = x / (1 − p) where keep is true, else 0 ("inverted" dropout, as torch: the expected value
    of y is x, so evaluation is the identity). keep[i] ~ Bernoulli(1 − p); minicnn draws it as
    ``minicnn.random.generator().random(x.shape) >= p``. Srivastava et al. 2014, JMLR 15."""
    x = f64(x)
    y = np.zeros(x.shape)
    for i in np.ndindex(*x.shape):
        if keep[i]:
            y[i] = x[i] / (1 - p)
    return y


def dropout_backward(dy, keep, p):
    """dx = dy / (1 − p) where keep is true, else 0: the same mask as the forward."""
    return dropout_forward(dy, keep, p)


# ---- linear --------------------------------------------------------------------------------------
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
