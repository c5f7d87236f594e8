"""Local response normalization across channels (AlexNet, section 3.3), PyTorch's convention."""

from __future__ import annotations

import numbers

from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor


class LocalResponseNorm(Function):
    """b_c = a_c / (k + α/n · Σ_{j=c-n//2}^{c+(n-1)//2} a_j²)^β, the sum clipped to [0, C).

    Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
    Networks", section 3.3 (there: n=5, k=2, α=1e-4, β=0.75 with α not divided by n; PyTorch and
    minicnn divide α by n). With s_c the denominator base, the exact gradient is

        ∂L/∂a_i = g_i s_i^-β − (2αβ/n) a_i Σ_{c: i ∈ window(c)} g_c a_c s_c^(-β-1),

    where {c : i ∈ window(c)} = [i − (n-1)//2, i + n//2] is the window mirrored (for even n the
    two differ). Kernels: backend.local_response_norm_forward / _backward on (N, C, H, W).
    """

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        shape = x.shape
        x4 = x.reshape(shape[0], shape[1], -1, 1)  # (N, C, H·W·…, 1)
        y, scale = ctx.backend.local_response_norm_forward(x4, size, alpha, beta, k)
        ctx.params = size, alpha, beta
        ctx.save_for_backward(x4, scale)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, dout):
        x4, scale = ctx.saved_tensors
        size, alpha, beta = ctx.params
        dx = ctx.backend.local_response_norm_backward(
            dout.reshape(x4.shape), x4, scale, size, alpha, beta
        )
        return dx.reshape(dout.shape)


def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"local_response_norm: {name} must be a real number, got {value!r}")
    return float(value)


def local_response_norm(
    input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """Normalise over ``size`` neighbouring channels of a (N, C, ...) input (3-D or more).

    Same as ``torch.nn.functional.local_response_norm``: α is divided by ``size``, the window of
    channel c is [c - size//2, c + (size-1)//2] (asymmetric for even ``size``), zero-padded at the
    channel ends.
    """
    check_tensor("local_response_norm", "input", input)
    if input.ndim < 3:
        raise ValueError(
            f"local_response_norm: input must be 3-D or more (N, C, ...), got shape {input.shape}"
        )
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"local_response_norm: size must be an integer, got {size!r}")
    if size < 1:
        raise ValueError(f"local_response_norm: size must be >= 1, got {size}")
    alpha, beta, k = _real("alpha", alpha), _real("beta", beta), _real("k", k)
    if input.numel() == 0:
        return input
    return LocalResponseNorm.apply(input, int(size), alpha, beta, k)
