"""Dropout (Srivastava et al. 2014), inverted: scaled at training time, identity at test time."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from ._util import check_tensor


class Dropout(Function):
    """y = x · m / (1 − p), m_i ~ Bernoulli(1 − p) drawn from ``minicnn.random.generator()``;
    dx = dy · m / (1 − p) with the same mask.

    The mask is made on the input's device (``backend.dropout_mask``): NumPy's generator on
    "cpu"; on "emu" and "cuda" a Philox4x32-10 kernel (csrc/kernels/random.cu) keyed by one draw
    of the generator, so no mask is ever copied from the host, and ``manual_seed`` /
    ``set_rng_state`` still fix it.

    Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov 2014, "Dropout: A Simple Way to
    Prevent Neural Networks from Overfitting", JMLR 15; the 1/(1 − p) scale at training time
    ("inverted dropout") replaces the paper's scaling of the weights by (1 − p) at test time.
    """

    @staticmethod
    def forward(ctx, x, p):
        mask = ctx.backend.dropout_mask(x.shape, p, x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, dout):
        (mask,) = ctx.saved_tensors
        return dout * mask


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1 − p) when ``training``.

    As ``torch.nn.functional.dropout``, except: ``p`` must lie in [0, 1) (p = 1 would zero
    everything), and ``inplace`` is accepted for compatibility but a new tensor is returned (the
    input may be saved by another op for its backward). Not training, or p = 0: the input itself.
    Seed with ``minicnn.manual_seed`` for reproducible masks.
    """
    check_tensor("dropout", "input", input)
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout: p must be a real number, got {p!r}")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got p={p}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout: training must be a bool, got {training!r}")
    if not training or p == 0:
        return input
    return Dropout.apply(input, float(p))
