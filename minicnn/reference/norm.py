"""Normalisations by loops: local response normalisation (across channels) and batch norm.

Both work on (N, C, ...) inputs of any trailing shape; the trailing dims are flattened into L
positions (H·W for images), so x[n, c, l] below is x[n, c, h, w] with l = h·W + w.
"""

import numpy as np

from ._util import f64


def _flat(a):
    """(N, C, L) view of an (N, C, ...) array."""
    return a.reshape(a.shape[0], a.shape[1], -1)


# ---- local response normalisation ----------------------------------------------------------------
def lrn_window(c, size, C):
    """The channels summed for output channel c: [c − size//2, c + (size−1)//2], clipped to
    [0, C) (zero padding). Asymmetric for even sizes, as torch."""
    return [j for j in range(c - size // 2, c + (size - 1) // 2 + 1) if 0 <= j < C]


def _lrn_base(a, n, c, l, size, alpha, k):
    """s_c = k + α/size · Σ_{j ∈ window(c)} a[n, j, l]²  (torch divides α by size)."""
    return k + alpha / size * sum(a[n, j, l] ** 2 for j in lrn_window(c, size, a.shape[1]))


def local_response_norm_forward(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """b[n, c, l] = a[n, c, l] / s_c^β with s_c = k + α/size · Σ_{j ∈ window(c)} a[n, j, l]².

    Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
    Networks", section 3.3 ("brightness normalization" over n = 5 adjacent kernel maps, k = 2,
    α = 1e-4, β = 0.75; there α is not divided by n).
    """
    a = _flat(f64(x))
    b = np.empty(a.shape)
    for n, c, l in np.ndindex(*a.shape):
        b[n, c, l] = a[n, c, l] / _lrn_base(a, n, c, l, size, alpha, k) ** beta
    return b.reshape(np.shape(x))


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """dx[i] = Σ_c dy[c] · ∂b_c/∂a_i, the Jacobian written out at every (n, l):

    ∂b_c/∂a_i = [i = c] · s_c^−β − a_c · β · s_c^(−β−1) · (2α/size) · a_i   for i ∈ window(c).
    """
    a, g = _flat(f64(x)), _flat(f64(dy))
    dx = np.zeros(a.shape)
    for n, c, l in np.ndindex(*a.shape):
        base = _lrn_base(a, n, c, l, size, alpha, k)
        dx[n, c, l] += g[n, c, l] * base**-beta
        for i in lrn_window(c, size, a.shape[1]):  # through the denominator
            dx[n, i, l] -= (
                g[n, c, l] * a[n, c, l] * beta * base ** (-beta - 1) * 2 * alpha / size * a[n, i, l]
            )
    return dx.reshape(np.shape(x))


# ---- batch normalisation -------------------------------------------------------------------------
def _channel_stats(a, c):
    """Mean and biased variance of channel c over the batch and the positions, and their count M."""
    values = [a[n, c, l] for n in range(a.shape[0]) for l in range(a.shape[2])]
    M = len(values)
    mean = sum(values) / M
    return mean, sum((v - mean) ** 2 for v in values) / M, M


def batch_norm_forward(
    x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """(y, new running_mean, new running_var); the running buffers given are not modified.

    y[n, c, l] = weight[c] · (x[n, c, l] − μ_c) / sqrt(σ²_c + eps) + bias[c]   (weight 1, bias 0
    when None). Training: μ, σ² are the mean and biased variance of channel c over the M = N·L
    values of the batch, and running ← (1 − momentum) · running + momentum · statistic, with the
    unbiased variance σ² · M/(M − 1) (as torch); running buffers may then be None. Inference: μ, σ²
    are the running buffers. Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network
    Training by Reducing Internal Covariate Shift", algorithm 1 and section 3.1.
    """
    a = _flat(f64(x))
    y = np.empty(a.shape)
    new_mean, new_var = f64(running_mean), f64(running_var)
    for c in range(a.shape[1]):
        if training:
            mean, var, M = _channel_stats(a, c)
            if running_mean is not None:
                new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / (M - 1)
        else:
            mean, var = running_mean[c], running_var[c]
        scale = 1.0 if weight is None else weight[c]
        shift = 0.0 if bias is None else bias[c]
        for n, l in np.ndindex(a.shape[0], a.shape[2]):
            y[n, c, l] = scale * (a[n, c, l] - mean) / np.sqrt(var + eps) + shift
    return y.reshape(np.shape(x)), new_mean, new_var


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, training=False, eps=1e-5):
    """(dx, dweight, dbias), with x̂ = (x − μ)/σ̂, σ̂ = sqrt(σ² + eps) and sums over (n, l):

    dweight[c] = Σ dy · x̂,   dbias[c] = Σ dy;
    inference (μ, σ² constants): dx = weight · dy / σ̂;
    training (μ, σ² depend on every x of the channel — Ioffe & Szegedy 2015, section 3):
        dx = weight / σ̂ · (dy − mean(dy) − x̂ · mean(dy · x̂)).
    """
    a, g = _flat(f64(x)), _flat(f64(dy))
    dx, dweight, dbias = np.zeros(a.shape), np.zeros(a.shape[1]), np.zeros(a.shape[1])
    N, _, L = a.shape
    for c in range(a.shape[1]):
        mean, var, M = _channel_stats(a, c) if training else (running_mean[c], running_var[c], 0)
        sigma = np.sqrt(var + eps)
        scale = 1.0 if weight is None else weight[c]
        for n, l in np.ndindex(N, L):
            dweight[c] += g[n, c, l] * (a[n, c, l] - mean) / sigma
            dbias[c] += g[n, c, l]
        for n, l in np.ndindex(N, L):
            xhat = (a[n, c, l] - mean) / sigma
            if training:  # mean(dy) = dbias / M, mean(dy·x̂) = dweight / M
                dx[n, c, l] = scale / sigma * (g[n, c, l] - dbias[c] / M - xhat * dweight[c] / M)
            else:
                dx[n, c, l] = scale / sigma * g[n, c, l]
    return dx.reshape(np.shape(x)), dweight, dbias
