"""Pooling against PyTorch (optional; skipped where torch is not installed): random cases,
NaN/inf inputs and windows of only padding."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
from conftest import assert_close
from pool_cases import avg_args, has_empty_window, max_args, pool_cases, random_input


# ---- optional: torch ----------------------------------------------------------------------------
def _torch_grads(torch_fn, xv, dout):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(xv, requires_grad=True)
    out = torch_fn(xt)
    y = out[0] if isinstance(out, tuple) else out
    y.backward(torch.tensor(dout))
    return out, xt.grad.numpy()


@given(case=pool_cases(), seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool2d_matches_torch(case, seed, ties):
    torch = pytest.importorskip("torch")
    c = case
    assume(not has_empty_window(c))
    xv = random_input(c, seed, ties)
    dout = np.random.default_rng(seed + 1).standard_normal((c["N"], c["C"], c["P"], c["Q"]))
    (yt, it), gt = _torch_grads(
        lambda t: torch.nn.functional.max_pool2d(t, **max_args(c), return_indices=True), xv, dout
    )
    x = minicnn.tensor(xv, requires_grad=True)
    y, idx = F.max_pool2d(x, **max_args(c), return_indices=True)
    y.backward(dout)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), it.numpy())
    assert_close(x.grad, gt)


def test_max_pool2d_matches_torch_on_nan_inf_and_only_padding_windows():
    torch = pytest.importorskip("torch")
    xv = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    xv[0, 0, 1, 1] = xv[0, 0, 2, 3] = np.nan
    xv[0, 1, :2, :2] = -np.inf
    for kw in [
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, stride=1, padding=1),
        dict(kernel_size=2, stride=2, padding=1, dilation=4, ceil_mode=True),
    ]:
        yt, it = torch.nn.functional.max_pool2d(torch.tensor(xv), **kw, return_indices=True)
        y, idx = F.max_pool2d(minicnn.tensor(xv), **kw, return_indices=True)
        np.testing.assert_array_equal(y.numpy(), yt.numpy())
        np.testing.assert_array_equal(idx.numpy(), it.numpy())


@given(
    case=pool_cases(dilation=False),
    seed=st.integers(0, 2**16),
    include=st.booleans(),
    override=st.sampled_from([None, None, 2, -3]),
)
def test_avg_pool2d_matches_torch(case, seed, include, override):
    torch = pytest.importorskip("torch")
    c = case
    xv = random_input(c, seed)
    dout = np.random.default_rng(seed + 1).standard_normal((c["N"], c["C"], c["P"], c["Q"]))
    kw = dict(avg_args(c), count_include_pad=include, divisor_override=override)
    yt, gt = _torch_grads(lambda t: torch.nn.functional.avg_pool2d(t, **kw), xv, dout)
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.avg_pool2d(x, **kw)
    y.backward(dout)
    assert_close(y, yt.detach().numpy())
    assert_close(x.grad, gt)


@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    P=st.integers(1, 12),
    Q=st.integers(1, 12),
    keep_h=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_adaptive_avg_pool2d_matches_torch(H, W, P, Q, keep_h, seed):
    """(torch's backward refuses an empty output, which minicnn allows: P, Q ≥ 1 here.)"""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((2, 3, H, W))
    size = (None if keep_h else P, Q)
    dout = rng.standard_normal((2, 3, H if keep_h else P, Q))
    yt, gt = _torch_grads(lambda t: torch.nn.functional.adaptive_avg_pool2d(t, size), xv, dout)
    x = minicnn.tensor(xv, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, size)
    y.backward(dout)
    assert_close(y, yt.detach().numpy())
    assert_close(x.grad, gt)
