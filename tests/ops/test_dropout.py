"""dropout: mask statistics, 1/(1-p) scaling, masks from minicnn.random (manual_seed), eval
identity, backward with the forward's mask, gradcheck with a seeded fn, float32, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck, separated

from conftest import assert_close


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_statistics_and_scaling(p):
    x = minicnn.ones(200, 500, dtype="float64")
    y = F.dropout(x, p).numpy()
    kept = y != 0
    # 100k Bernoulli draws: the kept fraction is 1-p within ~6 standard deviations (< 0.01)
    assert abs(kept.mean() - (1 - p)) < 6 * np.sqrt(p * (1 - p) / y.size)
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)  # inverted dropout: E[y] = x
    assert abs(y.mean() - 1.0) < 0.03


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_mask_comes_from_minicnn_random(p):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    minicnn.manual_seed(123)
    xt = minicnn.tensor(x, requires_grad=True)
    y = F.dropout(xt, p)
    keep = minicnn.random.manual_seed(123).random(x.shape) >= p  # the same stream, by hand
    assert_close(y, ref.dropout_forward(x, keep, p))
    dy = np.random.default_rng(1).standard_normal(x.shape)
    y.backward(dy)
    assert_close(xt.grad, ref.dropout_backward(dy, keep, p))


def test_reproducible_with_manual_seed_and_advancing_otherwise():
    x = minicnn.randn(8, 16)
    minicnn.manual_seed(7)
    a, b = F.dropout(x, 0.5).numpy(), F.dropout(x, 0.5).numpy()
    minicnn.manual_seed(7)
    a2 = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a != 0, b != 0)  # consecutive calls draw new masks
    minicnn.manual_seed(8)
    assert not np.array_equal(a != 0, F.dropout(x, 0.5).numpy() != 0)


def test_identity_when_not_training_or_p_zero():
    x = minicnn.randn(3, 4, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    state = minicnn.get_rng_state()
    F.dropout(x, 0.3, False)
    assert minicnn.get_rng_state() == state  # no random numbers drawn in eval


def test_backward_uses_the_forward_mask():
    x = minicnn.tensor(separated((6, 7), seed=1), requires_grad=True)  # no exact zeros
    y = F.dropout(x, 0.4)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    y.backward(dy)
    mask = (y.numpy() != 0) / 0.6
    assert_close(x.grad, dy * mask)
    assert_close(y, x.numpy() * mask)


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_gradcheck_with_a_seeded_fn(p):
    def fn(x):
        minicnn.manual_seed(99)  # the same mask on every finite-difference evaluation
        return F.dropout(x, p)

    x = minicnn.tensor(separated((4, 5), seed=3), requires_grad=True)
    result = gradcheck(fn, (x,), tol=1e-7)
    assert result, str(result)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    p=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes_and_probabilities(shape, p, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    minicnn.manual_seed(seed)
    y = F.dropout(minicnn.tensor(x), p)
    if p == 0:
        assert_close(y, x)
        return
    u = minicnn.random.manual_seed(seed).random(tuple(shape))
    assert_close(y, ref.dropout_forward(x, u >= p, p), rtol=1e-12)


def test_float32_keeps_dtype_and_matches_float64():
    x = np.random.default_rng(4).standard_normal((5, 6))
    minicnn.manual_seed(5)
    y64 = F.dropout(minicnn.tensor(x), 0.3)
    minicnn.manual_seed(5)
    x32 = minicnn.tensor(x.astype(np.float32), requires_grad=True)
    y32 = F.dropout(x32, 0.3)
    y32.backward(np.ones((5, 6), np.float32))
    assert y32.dtype == np.float32 and x32.grad.dtype == np.float32
    assert_close(y32, y64, dtype=np.float32)


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, float("nan")])
def test_p_out_of_range(p):
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\), got p="):
        F.dropout(minicnn.randn(2, 2), p)


def test_bad_types():
    with pytest.raises(TypeError, match="dropout: p must be a real number"):
        F.dropout(minicnn.randn(2, 2), True)
    with pytest.raises(TypeError, match="dropout: p must be a real number"):
        F.dropout(minicnn.randn(2, 2), "0.5")
    with pytest.raises(TypeError, match="dropout: training must be a bool"):
        F.dropout(minicnn.randn(2, 2), 0.5, training=1)
    with pytest.raises(TypeError, match="dropout: input must be float32 or float64"):
        F.dropout(minicnn.tensor([1, 2, 3]), 0.5)
    with pytest.raises(TypeError, match="dropout: input must be a Tensor"):
        F.dropout(np.ones(3), 0.5)


def test_inplace_is_accepted_and_returns_a_new_tensor():
    x = minicnn.ones(4, 4)
    y = F.dropout(x, 0.5, inplace=True)
    assert y is not x
    assert_close(x, np.ones((4, 4)))


def test_statistics_match_torch():
    """Different generators give different masks; the distribution and scaling must agree."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    yt = torch.nn.functional.dropout(torch.ones(100, 1000, dtype=torch.float64), 0.3).numpy()
    y = F.dropout(minicnn.ones(100, 1000, dtype="float64"), 0.3).numpy()
    assert set(np.unique(y)) == set(np.unique(yt))
    assert abs((y == 0).mean() - (yt == 0).mean()) < 0.01
