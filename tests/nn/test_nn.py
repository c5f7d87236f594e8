"""minicnn.nn: Parameter, Module registration, naming and traversal, state_dict and loading.
(Modes, dtypes, devices, hooks and repr: test_nn_modes.py; containers: test_nn_containers.py.)"""

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import nn
from conftest import assert_close
from nn_modules import Affine, Net, small_cnn


# ---- Parameter -----------------------------------------------------------------------------------
def test_parameter():
    t = minicnn.ones(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, minicnn.Tensor) and p.requires_grad and p.is_leaf
    assert p._data is t._data  # shares storage, as torch.nn.Parameter(t)
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert nn.Parameter().shape == (0,)
    assert nn.Parameter([[1.0, 2.0]]).shape == (1, 2)
    assert (
        repr(nn.Parameter(minicnn.ones(2)))
        == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    )
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(minicnn.tensor([1, 2]))


# ---- registration --------------------------------------------------------------------------------
def test_registration_and_attribute_access():
    m = Affine()
    assert list(m._parameters) == ["scale", "shift"]
    assert list(m._buffers) == ["count", "cache"]
    assert m.scale is m._parameters["scale"] and m.count is m._buffers["count"]
    assert "scale" not in m.__dict__
    m.shift = None  # a parameter slot may be emptied
    assert m.shift is None and [n for n, _ in m.named_parameters()] == ["scale"]
    m.shift = nn.Parameter(minicnn.zeros(3))
    assert [n for n, _ in m.named_parameters()] == ["scale", "shift"]
    m.plain = minicnn.zeros(2)  # a plain Tensor attribute is not registered
    assert "plain" not in m._parameters and "plain" not in m._buffers
    m.count = minicnn.ones(3)  # assigning a Tensor to a buffer name replaces it
    assert m._buffers["count"].numpy().sum() == 3
    del m.count
    assert "count" not in m._buffers and not hasattr(m, "count")
    m.sub = Affine()
    assert m._modules["sub"] is m.sub
    m.sub = nn.Parameter(minicnn.zeros(1))  # re-assigning moves it between registries
    assert "sub" not in m._modules and "sub" in m._parameters


def test_registration_errors():
    m = Affine()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'scale'"):
        m.scale = minicnn.ones(3)
    with pytest.raises(TypeError, match="cannot assign 'int' as buffer 'count'"):
        m.count = 3
    with pytest.raises(KeyError, match="empty or contain"):
        m.register_buffer("a.b", minicnn.zeros(1))
    with pytest.raises(KeyError, match="attribute 'forward' already exists"):
        m.register_parameter("forward", nn.Parameter(minicnn.zeros(1)))
    with pytest.raises(TypeError, match="cannot assign 'Tensor' object to parameter 'w'"):
        m.register_parameter("w", minicnn.zeros(1))
    with pytest.raises(TypeError, match="cannot assign 'list' object to buffer 'b'"):
        m.register_buffer("b", [1.0])
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        m.add_module("x", 3)
    with pytest.raises(AttributeError, match="'Affine' object has no attribute 'nope'"):
        m.nope
    m.child = Affine()
    with pytest.raises(TypeError, match="cannot assign 'int' as child module 'child'"):
        m.child = 1

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(minicnn.zeros(1))

    with pytest.raises(AttributeError, match=r"before Module.__init__\(\) call"):
        Early()


def test_forward_missing_and_call():
    with pytest.raises(
        NotImplementedError, match=r'Module \[Module\] is missing the required "forward"'
    ):
        nn.Module()(1)
    out = Affine()(minicnn.ones(2, 3))
    assert_close(out, np.ones((2, 3), np.float32), dtype=np.float32)


def test_non_leaf_parameter_rejected():
    m = nn.Module()
    p = nn.Parameter(minicnn.ones(2))
    p._node = object()  # pretend it came out of an op
    with pytest.raises(ValueError, match="non-leaf"):
        m.register_parameter("p", p)


# ---- naming and traversal ------------------------------------------------------------------------
def test_nested_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "features.0.scale",
        "features.0.shift",
        "features.1.scale",
        "features.1.shift",
        "head.scale",
        "head.shift",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "features.0.count",
        "features.0.cache",
        "features.1.count",
        "features.1.cache",
        "head.count",
        "head.cache",
    ]
    assert [n for n, _ in net.named_modules()] == [
        "",
        "features",
        "features.0",
        "features.1",
        "head",
    ]
    assert [n for n, _ in net.named_children()] == ["features", "head"]
    assert [n for n, _ in net.named_parameters(prefix="model")][0] == "model.features.0.scale"
    assert [n for n, _ in net.head.named_parameters(recurse=False)] == ["scale", "shift"]
    assert len(list(net.parameters())) == 6 and len(list(net.buffers())) == 6
    assert list(net.modules())[0] is net and list(net.children())[1] is net.head
    assert net.get_submodule("features.1") is net.features[1]
    with pytest.raises(AttributeError, match="no submodule `2`"):
        net.get_submodule("features.2")


def test_shared_parameters_and_modules_are_listed_once():
    shared = Affine()
    net = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in net.named_parameters()] == ["0.scale", "0.shift"]
    assert [n for n, _ in net.named_modules()] == ["", "0", "1"]
    assert len(list(net.children())) == 2
    # state_dict keeps every name (as torch), so both aliases round-trip
    assert list(net.state_dict()) == [
        "0.scale",
        "0.shift",
        "0.count",
        "2.scale",
        "2.shift",
        "2.count",
    ]
    tied = Net()
    tied.head.scale = tied.features[0].scale  # a tied weight under two names
    assert len(list(tied.parameters())) == 5
    assert len(list(tied.named_parameters(remove_duplicate=False))) == 6


# ---- state_dict ----------------------------------------------------------------------------------
def test_state_dict_order_and_types():
    sd = small_cnn().state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == [
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["conv.weight"].shape == (4, 2, 3, 3) and sd["conv.weight"].dtype == np.float32
    nbt = sd["bn.num_batches_tracked"]
    assert nbt.shape == () and nbt.dtype == np.int64 and nbt == 0
    # non-persistent buffers and empty (None) slots are left out
    assert list(Affine().state_dict()) == ["scale", "shift", "count"]
    assert list(nn.Conv2d(1, 1, 1, bias=False).state_dict()) == ["weight"]
    assert list(nn.BatchNorm2d(2, affine=False, track_running_stats=False).state_dict()) == []


def test_state_dict_is_a_copy_and_keep_vars():
    m = Affine()
    sd = m.state_dict()
    sd["scale"][...] = 7
    assert m.scale.numpy().sum() == 3
    kv = m.state_dict(keep_vars=True)
    assert kv["scale"] is m.scale
    assert list(m.state_dict(prefix="a.")) == ["a.scale", "a.shift", "a.count"]


def test_load_state_dict_round_trip_in_place():
    minicnn.manual_seed(1)
    src = small_cnn()
    src.bn.running_mean = minicnn.randn(4)  # replace a buffer so it differs from the default
    src.bn.num_batches_tracked._data[...] = 5
    minicnn.manual_seed(2)
    dst = small_cnn()
    weight_before = dst.conv.weight
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert dst.conv.weight is weight_before  # loaded in place (optimizers keep their refs)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k], v)
    assert dst.bn.num_batches_tracked.item() == 5 and dst.bn.num_batches_tracked.dtype == np.int64


def test_load_state_dict_without_num_batches_tracked():
    """Old torchvision checkpoints lack it; torch loads them (the counter keeps its value)."""
    src, dst = small_cnn(), small_cnn()
    dst.bn.num_batches_tracked._data[...] = 3
    sd = src.state_dict()
    del sd["bn.num_batches_tracked"]
    assert dst.load_state_dict(sd) == ([], [])
    assert dst.bn.num_batches_tracked.item() == 3
    np.testing.assert_array_equal(dst.conv.weight.numpy(), sd["conv.weight"])
    del sd["bn.running_mean"]
    with pytest.raises(RuntimeError, match='Missing key.*: "bn.running_mean". '):
        dst.load_state_dict(sd)


def test_load_state_dict_accepts_tensors_and_casts():
    m = Affine()
    m.load_state_dict(
        {
            "scale": minicnn.tensor([1.0, 2.0, 3.0], dtype=minicnn.float64),
            "shift": np.array([4, 5, 6]),
            "count": np.zeros(3),
        }
    )
    assert m.scale.dtype == np.float32 and m.shift.dtype == np.float32
    np.testing.assert_array_equal(m.scale.numpy(), [1, 2, 3])
    np.testing.assert_array_equal(m.shift.numpy(), [4, 5, 6])


def test_load_state_dict_strict_lists_every_problem_and_loads_nothing():
    m = Net()
    before = m.state_dict()
    bad = m.state_dict()
    del bad["features.0.scale"], bad["head.count"]
    bad["extra.weight"] = np.zeros(1)
    bad["other"] = np.zeros(1)
    bad["features.1.shift"] = np.zeros(4)
    bad["head.scale"] = np.zeros((3, 1))
    bad["features.1.scale"] = np.full(3, 9.0)  # a good entry: must not be loaded either
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(bad)
    msg = str(e.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "features.0.scale", "head.count".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight", "other".' in msg
    assert (
        "size mismatch for features.1.shift: copying a param with shape (4,) from checkpoint, "
        "the shape in current model is (3,)." in msg
    )
    assert "size mismatch for head.scale: copying a param with shape (3, 1)" in msg
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict():
    m = Net()
    sd = m.state_dict()
    del sd["head.shift"]
    sd["junk"] = np.ones(2)
    sd["head.scale"] = np.full(3, 2.0)
    result = m.load_state_dict(sd, strict=False)
    assert result == (["head.shift"], ["junk"])
    assert result.missing_keys == ["head.shift"] and result.unexpected_keys == ["junk"]
    assert "missing_keys=['head.shift']" in repr(result)
    np.testing.assert_array_equal(m.head.scale.numpy(), [2, 2, 2])
    # shape mismatches are errors even when not strict, and nothing is loaded then
    sd["head.scale"] = np.full(3, 5.0)
    sd["head.count"] = np.zeros(2)
    with pytest.raises(RuntimeError, match="size mismatch for head.count") as e:
        m.load_state_dict(sd, strict=False)
    assert "Missing key" not in str(e.value)
    np.testing.assert_array_equal(m.head.scale.numpy(), [2, 2, 2])


def test_load_state_dict_bad_values():
    m = Affine()
    with pytest.raises(TypeError, match="expected state_dict to be dict-like, got list"):
        m.load_state_dict([1, 2])
    sd = m.state_dict()
    sd["scale"] = [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError, match='parameter named "scale".*received list'):
        m.load_state_dict(sd)


@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), st.booleans())
def test_state_dict_round_trip_property(widths, bias):
    def mlp():
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b, bias=bias), nn.ReLU()]
        return nn.Sequential(*layers)

    src, dst = mlp(), mlp()
    dst.load_state_dict(src.state_dict())
    assert list(dst.state_dict()) == list(src.state_dict())
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        np.testing.assert_array_equal(a, b)
    n_params = sum(a * b + (b if bias else 0) for a, b in zip(widths, widths[1:]))
    assert sum(p.numel() for p in dst.parameters()) == n_params


def test_deepcopy_and_pickle():
    net = small_cnn()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert isinstance(clone.conv.weight, nn.Parameter)
        assert clone.conv.weight is not net.conv.weight
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(clone.state_dict()[k], v)
