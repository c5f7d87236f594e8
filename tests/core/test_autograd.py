"""The autograd engine: graph reuse, broadcasting, no_grad, errors; Tensor ops under gradcheck."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import Tensor
from minicnn.backends import is_available
from minicnn.gradcheck import gradcheck, separated
from conftest import assert_close


def t64(shape, seed=0, requires_grad=True):
    return minicnn.tensor(
        np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad
    )


def test_tensor_used_twice_accumulates():
    x = minicnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x + x * 3).sum()  # dy/dx = 2x + 3
    y.backward()
    assert_close(x.grad, np.array([5.0, 7.0, 9.0]), np.float32)


def test_residual_and_dense_concatenation():
    x = t64((2, 3))
    w = t64((3, 3), seed=1)
    f = (x @ w).relu()
    out = minicnn.cat([x, f + x, f], dim=1)  # DenseNet-style reuse of x and f
    out.sum().backward()
    xv, wv = x.numpy(), w.numpy()
    mask = (xv @ wv > 0).astype(float)
    dfx = (np.ones((2, 3)) * 2 * mask) @ wv.T  # f appears twice
    assert_close(x.grad, 1 + 1 + dfx)
    assert_close(w.grad, xv.T @ (2 * mask))


def test_gradients_accumulate_across_backward_calls():
    x = t64((4,))
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    assert_close(x.grad, np.full(4, 5.0))


@pytest.mark.parametrize(
    "sa,sb", [((2, 3), (3,)), ((2, 1), (1, 4)), ((3, 1, 5), (4, 1)), ((1,), (2, 2)), ((), (2, 3))]
)
def test_broadcast_gradients_reduce_to_input_shape(sa, sb):
    a, b = t64(sa), t64(sb, seed=1)
    for op in (
        lambda a, b: a + b,
        lambda a, b: a - b,
        lambda a, b: a * b,
        lambda a, b: a / (b * b + 1),
    ):
        a.grad = b.grad = None
        out = op(a, b)
        out.backward(np.ones(out.shape))
        assert a.grad.shape == sa and b.grad.shape == sb
        assert gradcheck(op, (a, b))


def test_no_grad_records_nothing():
    x = t64((3,))
    with minicnn.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert minicnn.is_grad_enabled()

    @minicnn.no_grad()
    def f(v):
        return v * 2

    assert not f(x).requires_grad


def test_detach_cuts_the_graph():
    x = t64((3,))
    y = (x.detach() * x).sum()
    y.backward()
    assert_close(x.grad, x.numpy())


def test_backward_errors():
    x = t64((2, 2))
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="grad has shape"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(RuntimeError, match="does not require grad"):
        minicnn.tensor([1.0]).backward()
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = t64((3,))
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert_close(x.grad, 4 * x.numpy())


def test_retain_grad_on_intermediate():
    x = t64((3,))
    h = x * 2
    h.retain_grad()
    (h * h).sum().backward()
    assert_close(h.grad, 2 * h.numpy())


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        minicnn.tensor([1, 2, 3], requires_grad=True)


def test_mixed_devices_are_an_error():
    a = minicnn.tensor([1.0, 2.0])
    b = Tensor(np.array([1.0, 2.0], dtype=np.float32), device="emu")
    with pytest.raises(ValueError, match="'cpu' and 'emu'"):
        a + b


def test_bad_operands_and_shapes():
    a = t64((2, 3))
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        a + t64((4,))
    with pytest.raises(TypeError, match="mul: operands"):
        a * "x"
    with pytest.raises(ValueError, match="matmul: shapes"):
        a @ t64((2, 3))
    with pytest.raises(ValueError, match="reshape"):
        a.reshape(4, 2)
    with pytest.raises(IndexError, match="sum: dim 2"):
        a.sum(2)
    with pytest.raises(ValueError, match="cat: tensor 1"):
        minicnn.cat([a, t64((3, 3))], dim=1)


def test_deep_graph_does_not_hit_recursion_limit():
    x = t64((2,))
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    assert_close(x.grad, np.full(2, 1.0001**5000), rtol=1e-9)


def test_float32_stays_float32():
    x = minicnn.randn(3, 4, requires_grad=True)
    y = ((x * 2.5 + 1) / 3 - x**2).exp().log().softmax(1).mean()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32


UNARY = {
    "neg": lambda a: -a,
    "pow3": lambda a: a**3,
    "pow_half": lambda a: (a * a + 1) ** 0.5,
    "exp": lambda a: a.exp(),
    "log": lambda a: (a * a + 0.5).log(),
    "sum_dim": lambda a: a.sum(1),
    "sum_keepdim": lambda a: a.sum((0, 2), keepdim=True),
    "mean": lambda a: a.mean(),
    "mean_dim": lambda a: a.mean(-1, keepdim=True),
    "reshape": lambda a: a.reshape(4, -1) * 2,
    "view": lambda a: a.view(-1),
    "flatten": lambda a: a.flatten(1),
    "transpose": lambda a: a.transpose(0, 2),
    "permute": lambda a: a.permute(2, 0, 1),
    "unsqueeze": lambda a: a.unsqueeze(1).squeeze(1),
    "getitem": lambda a: a[1, :, ::2],
    "getitem_fancy": lambda a: a[[0, 0, 1]],
    "softmax": lambda a: a.softmax(1),
    "log_softmax": lambda a: a.log_softmax(-1),
    "relu": lambda a: a.relu(),
    "cat": lambda a: minicnn.cat([a, a * 2, a[:, :1]], dim=1),
    "T": lambda a: a.T,
    "clone": lambda a: a.clone() * a,
    "to_float64": lambda a: a.to(minicnn.float64),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_gradcheck(name):
    x = minicnn.tensor(separated((2, 3, 4), seed=3, gap=0.05), requires_grad=True)
    assert gradcheck(UNARY[name], (x,), tol=1e-6)


@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 4)),
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),
        ((2, 1, 2, 3), (4, 3, 2)),
    ],
)
def test_matmul_gradcheck(sa, sb):
    a, b = t64(sa), t64(sb, seed=1)
    assert_close((a @ b).numpy(), a.numpy() @ b.numpy())
    assert gradcheck(lambda a, b: a @ b, (a, b), tol=1e-6)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_sum_mean_any_dims(shape, data):
    x = t64(tuple(shape))
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    keep = data.draw(st.booleans())
    d = tuple(dims) if dims else None
    assert_close(x.sum(d, keep), x.numpy().sum(axis=d, keepdims=keep))
    assert_close(x.mean(d, keep), x.numpy().mean(axis=d, keepdims=keep))
    assert gradcheck(lambda v: v.mean(d, keep) * 3 + v.sum(d, keep), (x,))


def test_factories_and_conversion():
    assert minicnn.tensor([1.5]).dtype == np.float32
    assert minicnn.tensor([1, 2]).dtype == np.int64
    assert minicnn.tensor(np.zeros(2)).dtype == np.float64
    assert minicnn.zeros(2, 3).shape == (2, 3) and minicnn.ones((4,)).numpy().sum() == 4
    assert minicnn.randn(5, dtype="float64").dtype == np.float64
    x = minicnn.tensor([[1.0, 2.0]])
    assert x.tolist() == [[1.0, 2.0]] and float(x.sum()) == 3.0
    assert x.to("cpu") is x and x.double().dtype == np.float64
    with pytest.raises(ValueError, match="unknown device"):
        minicnn.tensor([1.0], device="tpu")
    if not is_available("cuda"):  # the error says why, and suggests "emu"
        with pytest.raises(RuntimeError, match="emu"):
            x.to("cuda")
    assert x.to("emu").device == "emu" and x.to("emu").tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="item"):
        minicnn.zeros(2).item()


def test_manual_seed_reproduces_randn():
    minicnn.manual_seed(7)
    a = minicnn.randn(4).numpy()
    minicnn.manual_seed(7)
    assert np.array_equal(a, minicnn.randn(4).numpy())


def test_against_torch_on_a_small_graph():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    av, bv = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    a, b = minicnn.tensor(av, requires_grad=True), minicnn.tensor(bv, requires_grad=True)
    ta, tb = torch.tensor(av, requires_grad=True), torch.tensor(bv, requires_grad=True)
    out = ((a @ b).relu() + (a @ b).softmax(1)).log_softmax(0).mean() + (a**2).sum() / b.exp().sum()
    tout = ((ta @ tb).relu() + (ta @ tb).softmax(1)).log_softmax(0).mean() + (
        ta**2
    ).sum() / tb.exp().sum()
    out.backward()
    tout.backward()
    assert_close(out.numpy(), tout.detach().numpy())
    assert_close(a.grad, ta.grad.numpy())
    assert_close(b.grad, tb.grad.numpy())
