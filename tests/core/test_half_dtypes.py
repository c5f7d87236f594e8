"""float16 and bfloat16 tensors: names, creation, casts, torch's promotion, autograd through casts,
state_dict round trips through minicnn's .npz format."""

import ml_dtypes
import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import nn
from minicnn.dtypes import as_dtype, result_type

f16, bf16, f32, f64 = minicnn.float16, minicnn.bfloat16, minicnn.float32, minicnn.float64


def test_the_dtypes_and_their_names():
    assert f16 == np.dtype(np.float16) and bf16 == np.dtype(ml_dtypes.bfloat16)
    assert as_dtype("half") == as_dtype("float16") == f16
    assert as_dtype("bfloat16") == bf16
    with pytest.raises(TypeError, match="float8"):
        as_dtype("float8")


def test_creation_and_casts_keep_the_dtype():
    assert minicnn.tensor([1.5, 2.0], dtype=bf16).dtype == bf16
    assert minicnn.tensor(np.ones(3, np.float16)).dtype == f16  # as torch.from_numpy
    assert minicnn.tensor(np.ones(3, ml_dtypes.bfloat16)).dtype == bf16
    assert minicnn.zeros(2, 3, dtype="half").dtype == f16
    assert minicnn.randn(4, dtype=bf16).dtype == bf16
    t = minicnn.tensor([1.0, 1.0 + 2.0**-9, 70000.0])
    assert t.half().dtype == f16 and t.bfloat16().dtype == bf16
    assert t.half().float().dtype == f32 and t.bfloat16().double().dtype == f64
    # round to nearest even: 1 + 2^-9 is below bf16's half-ulp (2^-8); 70000 overflows float16
    np.testing.assert_array_equal(t.bfloat16().float().numpy()[:2], [1.0, 1.0])
    with np.errstate(over="ignore"):  # NumPy warns of the overflow; torch does not
        assert np.isinf(t.half().numpy()[2])
    assert "dtype=bfloat16" in repr(t.bfloat16())


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (f16, bf16, f32),  # neither holds the other: torch gives float32
        (f16, f32, f32),
        (bf16, f32, f32),
        (bf16, f64, f64),
        (f16, f16, f16),
        (minicnn.int64, f16, f16),  # a float beats an integer whatever its width
        (minicnn.bool_, bf16, bf16),
    ],
)
def test_promotion_of_two_tensors(a, b, expected):
    x, y = minicnn.ones(2, dtype=a), minicnn.ones(2, dtype=b)
    assert result_type(x, y) == expected
    if a != minicnn.bool_:
        assert (x + y).dtype == expected and (y * x).dtype == expected


def test_promotion_agrees_with_torch():
    torch = pytest.importorskip("torch")
    names = ["float16", "bfloat16", "float32", "float64", "int64", "int32", "bool"]
    for a in names:
        for b in names:
            for shape_b in ((2,), ()):
                x = minicnn.ones(2, dtype=minicnn.dtypes.as_dtype(a))
                y = minicnn.ones(*shape_b, dtype=minicnn.dtypes.as_dtype(b))
                tx = torch.ones(2, dtype=getattr(torch, a))
                ty = torch.ones(shape_b, dtype=getattr(torch, b))
                want = str(torch.result_type(tx, ty)).removeprefix("torch.")
                assert str(result_type(x, y)) == want, (a, b, shape_b)


def test_promotion_with_scalars_and_0d_tensors():
    h = minicnn.ones(3, dtype=f16)
    assert (h * 2.5).dtype == f16  # a Python float does not widen a float tensor
    assert (h + minicnn.tensor(1.0)).dtype == f16  # nor does a 0-d float32 tensor
    assert (minicnn.ones(3, dtype=minicnn.int64) + minicnn.tensor(1.0, dtype=bf16)).dtype == bf16
    assert minicnn.cat([h, minicnn.ones(2, dtype=bf16)]).dtype == f32


def test_gradients_are_cast_back_to_each_inputs_dtype():
    a = minicnn.tensor([1.0, 2.0, 3.0], requires_grad=True)  # float32
    b = minicnn.tensor([0.5, 0.25, 2.0], dtype=bf16, requires_grad=True)
    y = (a.half() * b).sum()  # float16 * bfloat16 -> float32
    assert y.dtype == f32
    y.backward()
    assert a.grad.dtype == f32 and b.grad.dtype == bf16
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.25, 2.0])
    np.testing.assert_array_equal(b.grad.numpy().astype(np.float32), [1.0, 2.0, 3.0])


def test_mixing_dtypes_in_a_layer_names_both():
    x = minicnn.randn(2, 3, dtype=f16)
    w = minicnn.randn(4, 3)
    with pytest.raises(TypeError, match="input float16, weight float32"):
        F.linear(x, w)
    with pytest.raises(TypeError, match="input bfloat16, weight float32"):
        F.conv2d(minicnn.randn(1, 3, 4, 4, dtype=bf16), minicnn.randn(2, 3, 3, 3))
    bn_w = minicnn.ones(3, dtype=bf16)
    with pytest.raises(TypeError, match="float16 input takes float32 .* weight bfloat16"):
        F.batch_norm(minicnn.randn(2, 3, dtype=f16), None, None, bn_w, training=True)


def test_matmul_promotes_like_torch():
    a, b = minicnn.randn(2, 3, dtype=f16), minicnn.randn(3, 2)
    assert (a @ b).dtype == f32


@pytest.mark.parametrize("dtype", [f16, bf16])
def test_state_dict_round_trip_keeps_the_dtype(tmp_path, dtype):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    model.to(dtype)
    state = model.state_dict()
    assert state["0.weight"].dtype == dtype
    minicnn.io.save_npz(tmp_path / "m.npz", state)
    loaded = minicnn.io.load_npz(tmp_path / "m.npz")
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        assert loaded[key].tobytes() == np.asarray(value).tobytes(), key
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).to(dtype)
    fresh.load_state_dict(loaded)
    assert fresh[0].weight.dtype == dtype


def test_bfloat16_files_read_elsewhere_as_their_bits(tmp_path):
    """numpy.load without minicnn sees the uint16 bits (no .npy type code exists for bfloat16)."""
    a = np.array([1.0, -2.5, 3.0e38], dtype=ml_dtypes.bfloat16)
    minicnn.io.save_npz(tmp_path / "b.npz", {"a": a})
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        bits = f["a"]
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(bits.view(ml_dtypes.bfloat16), a)
