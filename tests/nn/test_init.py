"""minicnn.nn.init: gains, fans, and the statistics of every initialiser (torch's formulas)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import nn
from minicnn.nn import init


def sample_std_tolerance(n, kurtosis):
    """4 standard errors of the sample std of n draws, relative (Var s² ≈ σ⁴ (κ - 1) / n)."""
    return 4 * 0.5 * math.sqrt((kurtosis - 1) / n)


UNIFORM_KURTOSIS, NORMAL_KURTOSIS = 1.8, 3.0


# ---- calculate_gain / fans --------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,param,expected",
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
        ("leaky_relu", math.sqrt(5), math.sqrt(2 / 6)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope 'a'"):
        init.calculate_gain("leaky_relu", "a")


@pytest.mark.parametrize(
    "shape,fans",
    [
        ((5, 3), (3, 5)),
        ((8, 4, 3, 3), (36, 72)),
        ((6, 2, 11, 11), (242, 726)),
        ((2, 3, 4), (12, 8)),
    ],
)
def test_fan_in_and_fan_out(shape, fans):
    assert init._calculate_fan_in_and_fan_out(minicnn.zeros(*shape)) == fans


def test_fan_needs_two_dims():
    with pytest.raises(ValueError, match=r"fewer than 2 dimensions, got shape \(5,\)"):
        init._calculate_fan_in_and_fan_out(minicnn.zeros(5))


@given(st.lists(st.integers(1, 5), min_size=2, max_size=4))
def test_fans_property(shape):
    receptive = int(np.prod(shape[2:]))
    assert init._calculate_fan_in_and_fan_out(minicnn.zeros(*shape)) == (
        shape[1] * receptive,
        shape[0] * receptive,
    )


# ---- statistics -------------------------------------------------------------------------------
def _check_uniform(t, bound):
    a = t.numpy().astype(np.float64)
    assert a.min() >= -bound and a.max() <= bound
    assert a.min() < -0.99 * bound and a.max() > 0.99 * bound  # it spans the whole interval
    tol = sample_std_tolerance(a.size, UNIFORM_KURTOSIS)
    assert a.std() == pytest.approx(bound / math.sqrt(3), rel=tol)
    assert abs(a.mean()) < 4 * bound / math.sqrt(3 * a.size)


def _check_normal(t, std, mean=0.0):
    a = t.numpy().astype(np.float64)
    assert a.std() == pytest.approx(std, rel=sample_std_tolerance(a.size, NORMAL_KURTOSIS))
    assert abs(a.mean() - mean) < 4 * std / math.sqrt(a.size)


CONV_SHAPE = (64, 32, 3, 3)  # fan_in 288, fan_out 576, 18432 draws


@pytest.mark.parametrize("dtype", [minicnn.float32, minicnn.float64])
def test_kaiming_uniform_default_is_leaky_relu_a0(dtype):
    t = minicnn.zeros(*CONV_SHAPE, dtype=dtype)
    out = init.kaiming_uniform_(t)
    assert out is t and t.dtype == dtype
    _check_uniform(t, math.sqrt(2) * math.sqrt(3 / 288))  # gain(leaky_relu, 0) = sqrt(2)


@pytest.mark.parametrize(
    "kwargs,bound",
    [
        ({"a": math.sqrt(5)}, 1 / math.sqrt(288)),  # torch's Conv2d/Linear default: 1/sqrt(fan_in)
        ({"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(6 / 576)),
        ({"nonlinearity": "linear"}, math.sqrt(3 / 288)),
        ({"a": 0.2, "nonlinearity": "leaky_relu"}, math.sqrt(2 / 1.04) * math.sqrt(3 / 288)),
    ],
)
def test_kaiming_uniform_bounds(kwargs, bound):
    _check_uniform(init.kaiming_uniform_(minicnn.zeros(*CONV_SHAPE), **kwargs), bound)


@pytest.mark.parametrize(
    "kwargs,std",
    [
        ({}, math.sqrt(2 / 288)),
        ({"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / 576)),
        ({"nonlinearity": "tanh"}, (5 / 3) / math.sqrt(288)),
    ],
)
def test_kaiming_normal_std(kwargs, std):
    _check_normal(
        init.kaiming_normal_(minicnn.zeros(*CONV_SHAPE, dtype=minicnn.float64), **kwargs), std
    )


def test_xavier():
    _check_uniform(init.xavier_uniform_(minicnn.zeros(*CONV_SHAPE)), math.sqrt(6 / (288 + 576)))
    _check_uniform(
        init.xavier_uniform_(minicnn.zeros(*CONV_SHAPE), gain=2.0), 2 * math.sqrt(6 / (288 + 576))
    )
    _check_normal(init.xavier_normal_(minicnn.zeros(200, 100)), math.sqrt(2 / 300))
    _check_normal(init.xavier_normal_(minicnn.zeros(200, 100), gain=0.5), 0.5 * math.sqrt(2 / 300))


def test_uniform_normal_constant():
    _check_uniform(init.uniform_(minicnn.zeros(20000), -3.0, 3.0), 3.0)
    a = init.uniform_(minicnn.zeros(20000)).numpy()
    assert a.min() >= 0 and a.max() <= 1 and abs(a.mean() - 0.5) < 0.01
    _check_normal(init.normal_(minicnn.zeros(20000), mean=2.0, std=0.5), 0.5, mean=2.0)
    np.testing.assert_array_equal(
        init.constant_(minicnn.zeros(2, 3), 0.25).numpy(), np.full((2, 3), 0.25)
    )
    np.testing.assert_array_equal(init.ones_(minicnn.zeros(4)).numpy(), np.ones(4))
    np.testing.assert_array_equal(init.zeros_(minicnn.ones(4)).numpy(), np.zeros(4))
    t = minicnn.tensor(5, dtype=minicnn.int64)  # constant fills work on integer tensors too
    init.zeros_(t)
    assert t.item() == 0 and t.dtype == minicnn.int64


def test_trunc_normal():
    t = init.trunc_normal_(minicnn.zeros(40000, dtype=minicnn.float64))
    a = t.numpy()
    assert a.min() >= -2 and a.max() <= 2
    # Var of N(0,1) truncated to [-2, 2]: 1 - 2·2·φ(2) / (Φ(2) - Φ(-2))
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    std = math.sqrt(1 - 4 * phi2 / math.erf(2 / math.sqrt(2)))
    assert a.std() == pytest.approx(std, rel=0.02)
    b = init.trunc_normal_(minicnn.zeros(5000), mean=1.0, std=0.02, a=0.99, b=1.05).numpy()
    assert b.min() >= 0.99 and b.max() <= 1.05 and b.dtype == np.float32
    with pytest.raises(ValueError, match="holds less than"):
        init.trunc_normal_(minicnn.zeros(3), mean=0.0, std=1.0, a=10.0, b=11.0)
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(minicnn.zeros(3), a=1.0, b=0.0)


# ---- in place, outside the graph, reproducible ------------------------------------------------
def test_in_place_on_parameter_keeps_identity_and_leaf():
    p = nn.Parameter(minicnn.zeros(4, 3))
    storage = p._data
    out = init.kaiming_uniform_(p)
    assert out is p and p._data is storage and p.is_leaf and p.requires_grad
    assert np.any(p.numpy() != 0)


def test_seeded_reproducibility_and_generator_argument():
    minicnn.manual_seed(123)
    a = init.normal_(minicnn.zeros(5)).numpy().copy()
    minicnn.manual_seed(123)
    b = init.normal_(minicnn.zeros(5)).numpy().copy()
    np.testing.assert_array_equal(a, b)
    c = init.uniform_(minicnn.zeros(5), generator=np.random.default_rng(7)).numpy()
    d = init.uniform_(minicnn.zeros(5), generator=np.random.default_rng(7)).numpy()
    np.testing.assert_array_equal(c, d)


def test_draws_are_made_in_the_tensor_dtype_and_reproducible():
    # float32 tensors are filled from float32 draws (about twice as fast for VGG's 138M weights);
    # as in torch, the values then depend on the dtype, but each dtype is reproducible under a seed.
    for dtype in (minicnn.float32, minicnn.float64):
        minicnn.manual_seed(5)
        a = init.kaiming_uniform_(minicnn.zeros(3, 4, dtype=dtype)).numpy()
        minicnn.manual_seed(5)
        b = init.kaiming_uniform_(minicnn.zeros(3, 4, dtype=dtype)).numpy()
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
        bound = np.sqrt(2.0) * np.sqrt(3.0 / 4)  # kaiming_uniform_(a=0): gain sqrt(2), fan_in 4
        assert np.abs(a).max() <= bound


def test_zero_element_tensor_is_a_no_op():
    t = minicnn.zeros(0, 3)
    assert init.kaiming_uniform_(t) is t and init.kaiming_normal_(t) is t


def test_errors():
    with pytest.raises(TypeError, match="uniform_: expected a Tensor, got ndarray"):
        init.uniform_(np.zeros(3))
    with pytest.raises(
        TypeError, match="normal_: expected a float32 or float64 tensor, got dtype int64"
    ):
        init.normal_(minicnn.tensor([1, 2]))
    with pytest.raises(ValueError, match="mode 'fan_avg' is not supported"):
        init.kaiming_uniform_(minicnn.zeros(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.kaiming_normal_(minicnn.zeros(3, 3), nonlinearity="gelu")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(minicnn.zeros(3))
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(minicnn.zeros(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="std must be non-negative"):
        init.normal_(minicnn.zeros(3), 0.0, -1.0)


# ---- the layers' default initialisation (torch's reset_parameters) -------------------------------
@pytest.mark.parametrize(
    "make,fan_in",
    [
        (lambda: nn.Conv2d(16, 32, 3), 144),
        (lambda: nn.Conv2d(16, 64, 3, groups=4), 36),  # fan_in counts in_channels / groups
        (lambda: nn.Linear(200, 100), 200),
    ],
)
def test_layer_default_init(make, fan_in):
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    _check_uniform(layer.weight, bound)
    b = layer.bias.numpy()
    assert np.abs(b).max() <= bound and b.std() > 0


def test_batchnorm_default_init():
    bn = nn.BatchNorm2d(3)
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(3))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(3))


# ---- optional: the same numbers as torch.nn.init's formulas -----------------------------------
def test_against_torch_gain_and_fans():
    torch = pytest.importorskip("torch")
    for name, param in [
        ("relu", None),
        ("tanh", None),
        ("leaky_relu", 0.3),
        ("selu", None),
        ("conv2d", None),
    ]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param)
        )
    for shape in [(5, 3), (8, 4, 3, 3), (2, 3, 4)]:
        assert init._calculate_fan_in_and_fan_out(
            minicnn.zeros(*shape)
        ) == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))
