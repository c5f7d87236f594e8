"""Hypothesis strategies and arguments shared by the pooling tests."""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import minicnn.reference as ref


# ---- the oracle: minicnn.reference (explicit loops over the output pixels) ----------------------
def has_empty_window(case):
    """Whether some max-pool window reads only padding (torch then returns -inf): where the
    reference's max of a finite input is -inf."""
    y, _ = ref.max_pool2d_forward(np.zeros((1, 1, case["H"], case["W"])), **max_args(case))
    return bool(np.isinf(y).any())


# ---- hypothesis strategies ----------------------------------------------------------------------
@st.composite
def pool_cases(draw, dilation=True):
    """Kernel, stride (also > kernel), padding (≤ kernel // 2), dilation, ceil_mode and an input
    size at or near the smallest that gives an output."""
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    pad = (draw(st.integers(0, R // 2)), draw(st.integers(0, S // 2)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    sizes = []
    for r, s, p, d in zip((R, S), stride, pad, dil):
        lo = max(1, d * (r - 1) + 1 - 2 * p - (s - 1 if ceil_mode else 0))
        sizes.append(draw(st.integers(lo, lo + 5)))
    H, W = sizes
    P = ref.pool_output_size(H, R, stride[0], pad[0], dil[0], ceil_mode)
    Q = ref.pool_output_size(W, S, stride[1], pad[1], dil[1], ceil_mode)
    assume(P >= 1 and Q >= 1)
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return dict(
        N=N, C=C, H=H, W=W, R=R, S=S, stride=stride, pad=pad, dil=dil, ceil_mode=ceil_mode, P=P, Q=Q
    )


def random_input(case, seed, ties=False):
    rng = np.random.default_rng(seed)
    shape = (case["N"], case["C"], case["H"], case["W"])
    return rng.integers(-2, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)


def max_args(c):
    return dict(
        kernel_size=(c["R"], c["S"]),
        stride=c["stride"],
        padding=c["pad"],
        dilation=c["dil"],
        ceil_mode=c["ceil_mode"],
    )


def avg_args(c):
    return dict(
        kernel_size=(c["R"], c["S"]), stride=c["stride"], padding=c["pad"], ceil_mode=c["ceil_mode"]
    )
