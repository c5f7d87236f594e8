"""The backward engine's gradient accumulation: in place where only the engine holds the array,
never into an array someone else can see (Add hands one dout to both inputs, Cat hands out views,
the user's grad, a retained graph), and a fresh gradient becomes a leaf's .grad without a copy."""

import numpy as np
import pytest

import minicnn
from minicnn.autograd import Function
from minicnn.ops.shape import cat


def leaf(values):
    return minicnn.tensor(np.asarray(values, dtype=np.float32), requires_grad=True)


def data_pointer(a):
    return a.__array_interface__["data"][0]


class FreshTwice(Function):
    """y = 2x with a backward that returns a new array and records where it lives."""

    pointers = []

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, dout):
        g = 2 * dout
        FreshTwice.pointers.append(data_pointer(g))
        return g


class Passthrough(Function):
    """y = x with a backward that returns dout itself (the array the engine passed in)."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, dout):
        return dout


class SavedGrad(Function):
    """y = x · c with the gradient c·1 precomputed in forward and handed out by backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.grad = np.full_like(x, 3.0)
        return 3 * x

    @staticmethod
    def backward(ctx, dout):
        return ctx.grad * dout if not np.all(dout == 1) else ctx.grad


@pytest.mark.parametrize("order", ["add_first", "mul_first"])
def test_shared_dout_of_add_is_never_written(order):
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    s = x + y  # Add's backward gives the same array to x and y
    m = x * 3.0  # a fresh gradient for x
    total = (s.sum() + m.sum()) if order == "add_first" else (m.sum() + s.sum())
    total.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 1.0])


def test_tensor_used_many_times_sums_all_gradients():
    x = leaf([1.0, -2.0, 3.0])
    out = x + x + x * 2.0 + x * x
    g = np.array([1.0, 2.0, 3.0], np.float32)
    g_before = g.copy()
    out.backward(g)
    np.testing.assert_allclose(x.grad.numpy(), g * (4 + 2 * x.numpy()))
    np.testing.assert_array_equal(g, g_before)  # the user's grad is untouched


def test_cat_views_of_one_dout_are_never_written():
    x, y = leaf([[1.0, 2.0]]), leaf([[3.0, 4.0]])
    c = cat([x, y, x], 0)  # backward: three views of one dout
    (c * minicnn.tensor(np.arange(6, dtype=np.float32).reshape(3, 2))).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0 + 4.0, 1.0 + 5.0]])
    np.testing.assert_array_equal(y.grad.numpy(), [[2.0, 3.0]])


def test_leaf_grad_does_not_alias_the_users_grad():
    x = leaf([1.0, 2.0])
    g = np.array([5.0, 6.0], np.float32)
    Passthrough.apply(x).backward(g)
    assert not np.shares_memory(x.grad.numpy(), g)
    g[:] = 100.0
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 6.0])
    Passthrough.apply(x).backward(np.ones(2, np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 7.0])
    np.testing.assert_array_equal(g, [100.0, 100.0])


def test_fresh_gradient_becomes_the_leaf_grad_without_a_copy():
    x = leaf([1.0, 2.0])
    FreshTwice.pointers.clear()
    FreshTwice.apply(x).backward(np.ones(2, np.float32))
    assert data_pointer(x.grad.numpy()) == FreshTwice.pointers[-1]
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_gradient_kept_by_the_context_is_not_stolen_with_retain_graph():
    x = leaf([1.0, 2.0])
    y = SavedGrad.apply(x)
    y.backward(np.ones(2, np.float32), retain_graph=True)
    y.backward(np.ones(2, np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_retained_intermediate_grad_is_separate_from_the_leaf_grad():
    x = leaf([1.0, 2.0])
    h = Passthrough.apply(x)
    h.retain_grad()
    h.backward(np.array([1.0, 1.0], np.float32))
    assert not np.shares_memory(h.grad.numpy(), x.grad.numpy())
    x.grad.numpy()[:] = 0.0
    np.testing.assert_array_equal(h.grad.numpy(), [1.0, 1.0])


def test_repeated_backward_accumulates_into_grad():
    x = leaf([1.0, 2.0])
    for _ in range(3):
        (x * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_residual_block_gradients_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    wa = rng.standard_normal((3, 3, 3, 3)).astype(np.float32)
    x, w = minicnn.tensor(xa, requires_grad=True), minicnn.tensor(wa, requires_grad=True)
    F = minicnn.functional
    h = F.relu(F.conv2d(x, w, padding=1))
    out = F.relu(F.conv2d(h, w, padding=1) + x) + x  # x three times, w twice
    out.sum().backward()
    xt, wt = torch.tensor(xa, requires_grad=True), torch.tensor(wa, requires_grad=True)
    ht = torch.relu(torch.nn.functional.conv2d(xt, wt, padding=1))
    (torch.relu(torch.nn.functional.conv2d(ht, wt, padding=1) + xt) + xt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-4, atol=1e-4)
