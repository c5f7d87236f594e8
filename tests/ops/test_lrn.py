"""local_response_norm: minicnn.reference's loops with LARGE alpha/beta (a small alpha hides a wrong
window: Chainer's test once passed with a 4-wide reference window against a 5-wide op), even and odd
sizes, size > C, 3-D/4-D/5-D inputs, gradcheck, float32, errors, optional torch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck, separated
from minicnn.reference.norm import lrn_window as window

from conftest import assert_close
from kernel_devices import ALL_DEVICES


def _run(x, dy, size, alpha, beta, k, device="cpu"):
    t = minicnn.tensor(x, device=device, requires_grad=True)
    y = F.local_response_norm(t, size, alpha, beta, k)
    y.backward(minicnn.tensor(dy, device=device))
    return y, t.grad


# ---- forward / backward vs the references -------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 9])
@pytest.mark.parametrize("alpha,beta,k", [(1.0, 0.75, 1.0), (3.0, 1.5, 0.5), (5.0, 2.0, 2.0)])
def test_forward_backward_match_naive_loops(size, alpha, beta, k):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 5, 2, 3))
    dy = rng.standard_normal(x.shape)
    y, dx = _run(x, dy, size, alpha, beta, k)
    assert_close(y, ref.local_response_norm_forward(x, size, alpha, beta, k))
    assert_close(dx, ref.local_response_norm_backward(dy, x, size, alpha, beta, k))


def test_window_is_torchs_asymmetric_window():
    """One hot channel j changes exactly the outputs c with j ∈ [c - size//2, c + (size-1)//2]."""
    C = 7
    for size in (2, 3, 4, 5):
        for j in range(C):
            x = np.ones((1, C, 1, 1))
            x[0, j] = 10.0
            y = F.local_response_norm(minicnn.tensor(x), size, alpha=size, beta=1.0, k=0.0).numpy()
            # with alpha = size and k = 0 the denominator is Σ_window a²: 100 + (len-1) if j inside
            hit = [c for c in range(C) if j in window(c, size, C)]
            for c in range(C):
                n = len(window(c, size, C))
                expect = x[0, c, 0, 0] / ((n - 1 + 100.0) if c in hit else n)
                assert y[0, c, 0, 0] == pytest.approx(expect), (size, j, c)
            assert hit == list(range(max(j - (size - 1) // 2, 0), min(j + size // 2, C - 1) + 1))


@pytest.mark.parametrize("shape", [(2, 4, 5), (1, 3, 2, 2, 2), (2, 1, 3, 3)])
@pytest.mark.parametrize("size", [2, 3, 6])
def test_3d_5d_and_single_channel_inputs(shape, size):
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    y, dx = _run(x, dy, size, 2.0, 1.25, 1.0)
    assert y.shape == shape
    assert_close(y, ref.local_response_norm_forward(x, size, 2.0, 1.25, 1.0))
    assert_close(dx, ref.local_response_norm_backward(dy, x, size, 2.0, 1.25, 1.0))


@pytest.mark.parametrize(
    "size,alpha,beta,k",
    [
        (5, 1e-4, 0.75, 2.0),
        (4, 3.0, 1.5, 1.0),
        (3, 5.0, 2.5, 0.7),
        (8, 2.0, 0.5, 1.0),
        (1, 4.0, 1.0, 1.0),
    ],
)
def test_gradcheck(size, alpha, beta, k):
    x = minicnn.tensor(separated((2, 6, 2, 2), seed=size), requires_grad=True)
    result = gradcheck(lambda t: F.local_response_norm(t, size, alpha, beta, k), (x,), tol=1e-6)
    assert result, str(result)


@given(
    N=st.integers(1, 2),
    C=st.integers(1, 6),
    L=st.integers(1, 4),
    size=st.integers(1, 8),
    alpha=st.floats(0.1, 5.0),
    beta=st.floats(0.25, 2.5),
    k=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_against_reference(N, C, L, size, alpha, beta, k, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((N, C, L)), rng.standard_normal((N, C, L))
    y, dx = _run(x, dy, size, alpha, beta, k)
    assert_close(y, ref.local_response_norm_forward(x, size, alpha, beta, k))
    assert_close(
        dx, ref.local_response_norm_backward(dy, x, size, alpha, beta, k), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_float32_agrees_with_float64_and_keeps_dtype(device):
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((2, 6, 3, 3)), rng.standard_normal((2, 6, 3, 3))
    y64, dx64 = _run(x, dy, 4, 3.0, 1.5, 1.0, device)
    y32, dx32 = _run(x.astype(np.float32), dy.astype(np.float32), 4, 3.0, 1.5, 1.0, device)
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    assert_close(y32, y64, dtype=np.float32)
    assert_close(dx32, dx64, dtype=np.float32)


def test_empty_input_and_no_grad():
    x = minicnn.zeros(0, 3, 2, 2)
    assert F.local_response_norm(x, 3).shape == (0, 3, 2, 2)
    with minicnn.no_grad():
        y = F.local_response_norm(minicnn.randn(1, 3, 2, 2, requires_grad=True), 3)
    assert not y.requires_grad


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,err,match",
    [
        (((2, 3), 2), ValueError, r"input must be 3-D or more .*got shape \(2, 3\)"),
        (((2, 3, 4), 0), ValueError, "size must be >= 1, got 0"),
        (((2, 3, 4), -2), ValueError, "size must be >= 1"),
        (((2, 3, 4), 2.5), TypeError, "size must be an integer"),
        (((2, 3, 4), True), TypeError, "size must be an integer"),
    ],
)
def test_bad_arguments(args, err, match):
    shape, size = args
    with pytest.raises(err, match="local_response_norm: " + match):
        F.local_response_norm(minicnn.randn(*shape), size)


def test_bad_types():
    with pytest.raises(TypeError, match="local_response_norm: input must be float32 or float64"):
        F.local_response_norm(minicnn.tensor(np.ones((1, 3, 2), dtype=np.int64)), 2)
    with pytest.raises(TypeError, match="local_response_norm: input must be a Tensor"):
        F.local_response_norm(np.ones((1, 3, 2)), 2)
    with pytest.raises(TypeError, match="local_response_norm: alpha must be a real number"):
        F.local_response_norm(minicnn.randn(1, 3, 2), 2, alpha="big")


# ---- optional: torch ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 7, 3, 3), (2, 5, 4), (1, 3, 2, 2, 2)])
@pytest.mark.parametrize(
    "size,alpha,beta,k",
    [(5, 1e-4, 0.75, 2.0), (4, 3.0, 1.5, 1.0), (2, 5.0, 2.0, 0.5), (9, 1.0, 0.75, 1.0)],
)
def test_matches_torch(shape, size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    y, dx = _run(x, dy, size, alpha, beta, k)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha, beta, k)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt.detach().numpy())
    assert_close(dx, xt.grad.numpy())
