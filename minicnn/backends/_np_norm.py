"""NumPy kernels of the normalization families: local response norm and batch norm.

Arrays in, arrays out, shapes beside every buffer. Inputs are (N, C, H, W): the ops view 3-D and
5-D inputs as 4-D before calling, so the CUDA kernels later need one layout only.

- LRN across channels, PyTorch's window: channel c sums the squares of channels
  [c - size//2, c + (size-1)//2] ∩ [0, C). The window is a loop over at most 2C - 1 channel offsets
  of whole (N, H, W) slabs, exact (no prefix-sum cancellation).
- BatchNorm over (N, H, W) per channel, two-pass statistics (mean, then mean of squared deviations).
  With the C++ helper (csrc/cpu/batchnorm.h) each direction is one threaded kernel, whole channels
  per task, sums in vector lanes then double: statistics, then normalise + affine (forward); the
  two sums Σdy and Σdy·x̂, then dx (backward). The NumPy versions (``_reference`` suffix) are the
  readable definition and the fallback.
- BatchNorm + ReLU fused (batch_norm_relu_*): the normalise pass clamps at 0, and the backward
  passes read dy · [y > 0] through ReLU's output y, one pass each less than the two ops.
"""

from __future__ import annotations

import numpy as np

from ._cpp import cpp_kernel, load_cpu_extension

_C = load_cpu_extension()  # None: NumPy does everything


# ---- local response normalization -------------------------------------------------------------
def _channel_window_sum(a, before, after):
    """out[:, c] = Σ a[:, j] for j in [c - before, c + after] ∩ [0, C);  a, out: (N, C, H, W)."""
    C = a.shape[1]
    out = np.zeros_like(a)
    for off in range(max(-before, 1 - C), min(after, C - 1) + 1):
        if off >= 0:  # out[c] += a[c + off]
            out[:, : C - off] += a[:, off:]
        else:
            out[:, -off:] += a[:, : C + off]
    return out


def local_response_norm_forward(x, size, alpha, beta, k):
    """y = x · scale^-β with scale = k + α/size · Σ_window x².  Returns (y, scale).

    C++ (csrc/cpu/lrn.h, on the thread pool) when available, else local_response_norm_reference.
    """
    fn = cpp_kernel(_C, "lrn_forward", x.dtype)
    if fn is None:
        return local_response_norm_forward_reference(x, size, alpha, beta, k)
    y, scale = fn(_ncl(x), size, alpha, beta, k)
    return y.reshape(x.shape), scale.reshape(x.shape)


def local_response_norm_backward(dout, x, scale, size, alpha, beta):
    """dx of local_response_norm_backward_reference; C++ (csrc/cpu/lrn.h) when available."""
    fn = cpp_kernel(_C, "lrn_backward", x.dtype)
    if fn is None or dout.dtype != x.dtype or scale.dtype != x.dtype:
        return local_response_norm_backward_reference(dout, x, scale, size, alpha, beta)
    return fn(_ncl(dout), _ncl(x), _ncl(scale), size, alpha, beta).reshape(x.shape)


def local_response_norm_forward_reference(x, size, alpha, beta, k):
    """y = x · scale^-β with scale = k + α/size · Σ_window x².  Returns (y, scale).

    x, y, scale: (N, C, H, W); the window of channel c is [c - size//2, c + (size-1)//2].
    """
    scale = k + (alpha / size) * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    y = x * scale**-beta
    return y.astype(x.dtype, copy=False), scale.astype(x.dtype, copy=False)


def local_response_norm_backward_reference(dout, x, scale, size, alpha, beta):
    """dx_i = dy_i · s_i^-β − (2αβ/size) · x_i · Σ_{c: i ∈ window(c)} dy_c · x_c · s_c^(-β-1),
    s = scale.

    {c : i ∈ window(c)} = [i - (size-1)//2, i + size//2]: the transposed window (mirrored for even
    size). dout, x, scale, dx: (N, C, H, W).
    """
    t = dout * x * scale ** (-beta - 1)  # (N, C, H, W)
    back = _channel_window_sum(t, (size - 1) // 2, size // 2)  # (N, C, H, W)
    dx = dout * scale**-beta - (2.0 * alpha * beta / size) * x * back
    return dx.astype(x.dtype, copy=False)


# ---- batch normalization ----------------------------------------------------------------------
_AXES = (0, 2, 3)  # everything but C


def _per_channel(v):
    """(C,) → (1, C, 1, 1) for broadcasting against (N, C, H, W)."""
    return v.reshape(1, -1, 1, 1)


def _affine(xhat, weight, bias):
    """weight · xhat + bias with weight/bias (C,) or None (1 and 0)."""
    y = xhat if weight is None else xhat * _per_channel(weight)
    return y if bias is None else y + _per_channel(bias)


def batch_norm_forward_training_reference(
    x, weight, bias, running_mean, running_var, momentum, eps
):
    """Normalise with the batch statistics; update the running ones IN PLACE (if given).

    mean = E[x], var = E[(x - mean)²] over (N, H, W) (biased, used to normalise);
    running_mean ← (1-m)·running_mean + m·mean, running_var ← (1-m)·running_var + m·var·M/(M-1)
    (unbiased, M = N·H·W) — cuDNN's cudnnBatchNormalizationForwardTraining contract.
    x, y: (N, C, H, W); weight, bias, running_*: (C,) or None. Returns (y, mean, invstd), each (C,).
    """
    M = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=_AXES)  # (C,)
    xc = x - _per_channel(mean)  # (N, C, H, W)
    var = (xc * xc).mean(axis=_AXES)  # (C,)
    invstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)  # (C,)
    _update_running(running_mean, running_var, mean, var, momentum, M)
    y = _affine(xc * _per_channel(invstd), weight, bias)
    return y.astype(x.dtype, copy=False), mean, invstd


def batch_norm_forward_inference_reference(x, weight, bias, running_mean, running_var, eps):
    """y = weight · (x - running_mean) / sqrt(running_var + eps) + bias.

    x, y: (N, C, H, W); running_*: (C,). Returns (y, mean, invstd): the statistics used, (C,)
    copies, so backward is right even if the running buffers change in between.
    """
    mean = running_mean.copy()  # (C,)
    invstd = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)  # (C,)
    y = _affine((x - _per_channel(mean)) * _per_channel(invstd), weight, bias)
    return y.astype(x.dtype, copy=False), mean, invstd


def _affine_grads(dout, xhat):
    """dweight = Σ dy · xhat, dbias = Σ dy over (N, H, W); both (C,)."""
    return (dout * xhat).sum(axis=_AXES), dout.sum(axis=_AXES)


def batch_norm_backward_training_reference(dout, x, weight, mean, invstd):
    """Gradients through the batch statistics (Ioffe & Szegedy 2015, section 3):

    dx = weight · invstd / M · (M·dy − Σdy − xhat · Σ(dy·xhat)), M = N·H·W.
    dout, x, dx: (N, C, H, W); weight (C,) or None; mean, invstd (C,). Returns (dx, dweight, dbias).
    """
    M = x.shape[0] * x.shape[2] * x.shape[3]
    xhat = (x - _per_channel(mean)) * _per_channel(invstd)  # (N, C, H, W)
    dweight, dbias = _affine_grads(dout, xhat)  # (C,), (C,)
    g = invstd if weight is None else weight * invstd  # (C,)
    dx = _per_channel(g) * (dout - _per_channel(dbias / M) - xhat * _per_channel(dweight / M))
    return dx.astype(x.dtype, copy=False), dweight, dbias


def batch_norm_backward_inference_reference(dout, x, weight, mean, invstd):
    """Fixed statistics make batch norm an affine map: dx = dy · weight · invstd.

    dout, x, dx: (N, C, H, W); weight (C,) or None; mean, invstd (C,). Returns (dx, dweight, dbias).
    """
    xhat = (x - _per_channel(mean)) * _per_channel(invstd)  # (N, C, H, W)
    dweight, dbias = _affine_grads(dout, xhat)
    g = invstd if weight is None else weight * invstd  # (C,)
    return (dout * _per_channel(g)).astype(x.dtype, copy=False), dweight, dbias


# ---- batch norm kernels: C++ when available -----------------------------------------------------
def _ncl(a):
    """(N, C, H, W) -> (N, C, H*W) view (a copy if a is not contiguous)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def _vector(v, dtype):
    return None if v is None else np.ascontiguousarray(v, dtype=dtype)


def _update_running(running_mean, running_var, mean, var, momentum, M):
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += (momentum * M / max(M - 1, 1)) * var


def batch_norm_forward_training(x, weight, bias, running_mean, running_var, momentum, eps):
    """Normalise with the batch statistics; update the running ones IN PLACE (if given).

    See batch_norm_forward_training_reference for the math (cuDNN's contract: biased variance to
    normalise, unbiased M/(M-1) into running_var). Returns (y, mean, invstd), each (C,) but y.
    """
    if cpp_kernel(_C, "batch_norm_forward", x.dtype) is None:
        return batch_norm_forward_training_reference(
            x, weight, bias, running_mean, running_var, momentum, eps
        )
    return _forward(x, weight, bias, running_mean, running_var, True, momentum, eps)


def batch_norm_forward_inference(x, weight, bias, running_mean, running_var, eps):
    """y = weight · (x - running_mean) / sqrt(running_var + eps) + bias.

    Returns (y, mean, invstd)."""
    if cpp_kernel(_C, "channel_affine", x.dtype) is None:
        return batch_norm_forward_inference_reference(
            x, weight, bias, running_mean, running_var, eps
        )
    return _forward(x, weight, bias, running_mean, running_var, False, None, eps)


def _forward(x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
    """The C++ forward, batch statistics (updating the running ones) when training, else the
    running ones; the normalise + affine pass clamps at 0 when ``relu``. (y, mean, invstd)."""
    x3 = _ncl(x)  # (N, C, H*W)
    weight, bias = _vector(weight, x.dtype), _vector(bias, x.dtype)
    if training:  # statistics and y in one threaded kernel
        kernel = cpp_kernel(_C, "batch_norm_forward", x.dtype)
        y, mean, var, invstd = kernel(x3, weight, bias, eps, relu)  # (N, C, L), (C,) ×3
        M = x.shape[0] * x.shape[2] * x.shape[3]
        _update_running(running_mean, running_var, mean, var, momentum, M)
        return y.reshape(x.shape), mean, invstd
    mean = np.array(running_mean, dtype=x.dtype)  # (C,) a copy
    invstd = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype, copy=False)  # (C,)
    scale = invstd if weight is None else weight * invstd
    y = cpp_kernel(_C, "channel_affine", x.dtype)(x3, mean, scale, bias, relu)
    return y.reshape(x.shape), mean, invstd


def batch_norm_backward_training(dout, x, weight, mean, invstd):
    """dx = weight · invstd / M · (M·dy − Σdy − x̂ · Σ(dy·x̂)), M = N·H·W.

    Returns (dx, dweight, dbias)."""
    if cpp_kernel(_C, "batch_norm_backward", x.dtype) is None:
        return batch_norm_backward_training_reference(dout, x, weight, mean, invstd)
    return _backward(dout.astype(x.dtype, copy=False), x, weight, mean, invstd, True)


def batch_norm_backward_inference(dout, x, weight, mean, invstd):
    """Fixed statistics: dx = dy · weight · invstd; returns (dx, dweight, dbias)."""
    if cpp_kernel(_C, "batch_norm_backward", x.dtype) is None:
        return batch_norm_backward_inference_reference(dout, x, weight, mean, invstd)
    return _backward(dout.astype(x.dtype, copy=False), x, weight, mean, invstd, False)


def _backward(dout, x, weight, mean, invstd, training, mask=None):
    """The C++ backward, one threaded kernel: the sums Σdy, Σdy·x̂ (dbias, dweight), then dx with
    the batch statistics' terms when training, else dy · weight · invstd. With ``mask`` (ReLU's
    output y, (N, C, H*W)) every pass reads dy · [y > 0]. (dx, dweight, dbias)."""
    mean, invstd = _vector(mean, x.dtype), _vector(invstd, x.dtype)
    kernel = cpp_kernel(_C, "batch_norm_backward", x.dtype)
    dx, dweight, dbias = kernel(
        _ncl(dout), _ncl(x), mean, invstd, _vector(weight, x.dtype), mask, training
    )
    return dx.reshape(x.shape), dweight, dbias


# ---- batch norm + ReLU fused: C++ only (None: the caller composes the two ops) -----------------
def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """(y, mean, invstd): y = max(0, batch_norm(x)) with relu folded into the normalise pass;
    the same numbers as batch_norm_forward_* followed by relu. None without the C++ kernels."""
    if cpp_kernel(_C, "batch_norm_forward" if training else "channel_affine", x.dtype) is None:
        return None  # (the kernel _forward runs)
    return _forward(x, weight, bias, running_mean, running_var, training, momentum, eps, True)


def batch_norm_relu_backward(dout, y, x, weight, mean, invstd, training):
    """(dx, dweight, dbias) of batch norm for the gradient dout · [y > 0], y = the fused output:
    the mask is applied as the passes read dout. None without the C++ kernels."""
    if cpp_kernel(_C, "batch_norm_backward", x.dtype) is None:
        return None
    if dout.dtype != x.dtype or y.dtype != x.dtype:
        return None
    return _backward(dout, x, weight, mean, invstd, training, _ncl(y))
