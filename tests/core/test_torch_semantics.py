"""Corner cases where NumPy's rules differ from PyTorch's; minicnn follows PyTorch."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from conftest import assert_close


@pytest.mark.parametrize(
    "index,expected_shape",
    [
        ((0, slice(None), [0, 1]), (3, 2)),
        ((0, Ellipsis, [0, 2, 0]), (3, 3)),
        ((slice(None), 1, [0, 3]), (2, 2)),
        ((0, None, slice(None), [1]), (1, 3, 1)),
    ],
)
def test_integer_then_advanced_index_keeps_torch_order(index, expected_shape):
    x = np.arange(24.0).reshape(2, 3, 4)
    t = minicnn.tensor(x, requires_grad=True)
    y = t[index]
    assert y.shape == expected_shape
    # torch semantics: select the integer dims first, then index the rest
    basic = tuple(
        i if isinstance(i, int) else slice(None) if isinstance(i, list) else i for i in index
    )
    rest = tuple(i for i in index if not isinstance(i, int))
    rest = tuple(slice(None) if i is None else i for i in rest)
    expected = x[basic][rest]
    assert_close(y, expected)
    y.backward(np.ones(y.shape))
    g = np.zeros_like(x)
    np.add.at(g[basic], rest, 1.0)  # g[basic] is a view: scatter through it
    assert_close(t.grad, g)


def test_x0_index_pattern_values():
    x = minicnn.tensor(np.arange(24.0).reshape(2, 3, 4))
    assert x[0, :, [0, 1]].tolist() == [[0, 1], [4, 5], [8, 9]]


def test_empty_dim_tuple_reduces_everything():
    x = minicnn.tensor([1.0, 2.0, 3.0])
    assert x.sum(dim=()).item() == 6.0
    assert x.mean(dim=[]).item() == 2.0


def test_cross_entropy_with_masked_minus_inf_logit():
    logits = minicnn.tensor([[0.0, -np.inf], [1.0, 2.0]], requires_grad=True)
    loss = F.cross_entropy(logits, minicnn.tensor([0, 1]))
    expected = (0.0 + np.log(1 + np.exp(-1.0))) / 2
    assert np.isclose(loss.item(), expected)
    loss.backward()
    assert np.isfinite(logits.grad.numpy()).all()


def test_pow_zero_gradient_at_zero():
    x = minicnn.tensor([0.0, 1.0], requires_grad=True)
    (x**0).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


def test_relu_passes_gradient_of_nan_input():
    x = minicnn.tensor([np.nan, -1.0, 2.0], requires_grad=True)
    F.relu(x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "make,dtype",
    [
        (lambda: minicnn.tensor([1, 2]) * 0.5, np.float32),
        (lambda: minicnn.tensor([1, 2]) / 2, np.float32),
        (lambda: minicnn.tensor([1, 2]).exp(), np.float32),
        (lambda: minicnn.tensor([1, 2]) + minicnn.ones(2), np.float32),
        (lambda: minicnn.ones(3) + minicnn.tensor(np.float64(2.0)), np.float32),
        (lambda: minicnn.ones(3) + minicnn.ones(3, dtype="float64"), np.float64),
        (lambda: minicnn.tensor([1, 2]) ** 2, np.int64),
        (lambda: minicnn.tensor(np.float64(1.5)), np.float64),
        (lambda: minicnn.cat([minicnn.ones(2), minicnn.ones(2, dtype="float64")]), np.float64),
    ],
)
def test_type_promotion_follows_torch(make, dtype):
    assert make().dtype == dtype


def test_promotion_keeps_gradients_in_the_input_dtype():
    a = minicnn.ones(3, requires_grad=True)
    b = minicnn.ones(3, dtype="float64", requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_squeeze_tuple_and_transpose_of_scalar():
    assert minicnn.zeros(1, 3, 1).squeeze((0, 2)).shape == (3,)
    assert minicnn.tensor(2.0).transpose(0, -1).item() == 2.0


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: minicnn.cat(minicnn.ones(2)), TypeError, "cat: expected a list"),
        (lambda: minicnn.cat([minicnn.tensor(1.0)]), ValueError, "cat: zero-dimensional"),
        (
            lambda: minicnn.ones(2, 3) == minicnn.ones(3, 2),
            ValueError,
            r"shapes \(2, 3\) and \(3, 2\)",
        ),
        (lambda: minicnn.tensor([[1, 2], [3]]), TypeError, "tensor: cannot make"),
        (lambda: minicnn.ones(2).mean(0.5), TypeError, "mean: dim"),
        (
            lambda: F.conv2d(minicnn.randn(1, 0, 5, 5), minicnn.randn(2, 0, 3, 3)),
            ValueError,
            "conv2d: weight",
        ),
        (lambda: minicnn.tensor([1, 2]) ** -1, ValueError, "pow: integer"),
        (lambda: minicnn.nn.Dropout(1.0), ValueError, "Dropout: p"),
    ],
)
def test_bad_input_errors_name_the_op(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_backward_on_non_scalar_is_a_value_error_and_a_runtime_error():
    y = minicnn.ones(2, requires_grad=True) * 2
    with pytest.raises(ValueError, match="scalar outputs"):
        y.backward()
    with pytest.raises(RuntimeError):
        y.backward()
