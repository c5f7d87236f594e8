"""minicnn.nn: Module registration, naming, state_dict, modes, dtypes and containers."""

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import nn
from minicnn.backends import is_available
from conftest import assert_close


# ---- arithmetic-only modules (no layer ops needed) ----------------------------------------------
class Affine(nn.Module):
    """y = x * scale + shift, with a persistent and a non-persistent buffer."""

    def __init__(self, n=3):
        super().__init__()
        self.scale = nn.Parameter(minicnn.ones(n))
        self.shift = nn.Parameter(minicnn.zeros(n))
        self.register_buffer("count", minicnn.zeros(n))
        self.register_buffer("cache", minicnn.zeros(n), persistent=False)

    def forward(self, x):
        return x * self.scale + self.shift


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Affine(), Affine())
        self.head = Affine()

    def forward(self, x):
        return self.head(self.features(x))


# ---- Parameter
# ------------------------------------------------------------------------------------
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


# ---- registration
# ---------------------------------------------------------------------------------
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


# ---- naming and traversal
# --------------------------------------------------------------------------
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


# ---- state_dict
# -------------------------------------------------------------------------------------
def small_cnn():
    return nn.Sequential(
        OrderedDict(
            [
                ("conv", nn.Conv2d(2, 4, 3, padding=1)),
                ("bn", nn.BatchNorm2d(4)),
                ("relu", nn.ReLU()),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flat", nn.Flatten()),
                ("fc", nn.Linear(4, 3)),
            ]
        )
    )


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


# ---- modes, grads, dtypes, devices --------------------------------------------------------------
def test_train_eval_flags():
    net = small_cnn()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.bn.training
    with pytest.raises(ValueError, match="expected to be a bool"):
        net.train("yes")


def test_zero_grad_and_requires_grad():
    m = Affine()
    (m(minicnn.ones(2, 3)).sum()).backward()
    assert m.scale.grad is not None
    m.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(m.scale.grad.numpy(), np.zeros(3))
    m.zero_grad()
    assert m.scale.grad is None
    assert m.requires_grad_(False) is m and not any(p.requires_grad for p in m.parameters())
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


def test_apply_order():
    seen = []
    net = Net()
    assert net.apply(lambda mod: seen.append(type(mod).__name__)) is net
    assert seen == ["Affine", "Affine", "Sequential", "Affine", "Net"]  # children first


def test_to_float64_in_place():
    net = small_cnn()
    w = net.conv.weight
    net(minicnn.randn(2, 2, 3, 3)).sum().backward()
    assert net.to(minicnn.float64) is net
    assert net.conv.weight is w
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.conv.weight.grad.dtype == np.float64
    assert net.bn.running_mean.dtype == np.float64 and net.bn.running_var.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64  # integer buffers are not cast
    out = net(minicnn.randn(2, 2, 3, 3, dtype=minicnn.float64))
    assert out.dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    net.double()
    assert net.fc.bias.dtype == np.float64
    net.to("float32")
    assert net.fc.bias.dtype == np.float32
    net.to(minicnn.zeros(1, dtype=minicnn.float64))  # like a tensor: its device and dtype
    assert net.fc.bias.dtype == np.float64
    net.to("cpu", dtype="float32")
    assert net.fc.bias.dtype == np.float32 and net.fc.bias.device == "cpu"


def test_to_device_errors_leave_the_module_unchanged():
    net = small_cnn()
    assert net.to("cpu") is net and net.cpu() is net
    for device in [d for d in ("cuda", "emu") if not is_available(d)]:
        with pytest.raises(RuntimeError, match="not available"):
            net.to(device, minicnn.float64)
    assert net.conv.weight.device == "cpu" and net.conv.weight.dtype == np.float32
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        net.to("tpu")
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        net.to(minicnn.int64)


def test_forward_hooks():
    m = Affine()
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    out = m(minicnn.ones(1, 3))
    assert calls == [(1, 3)] and out.numpy().sum() == 6
    h1.remove()
    h2.remove()
    assert m(minicnn.ones(1, 3)).numpy().sum() == 3 and len(calls) == 1


# ---- repr
# -----------------------------------------------------------------------------------------
def test_repr_nested():
    net = nn.Sequential(
        OrderedDict(
            [
                (
                    "features",
                    nn.Sequential(
                        nn.Conv2d(3, 8, 3, padding=1, bias=False),
                        nn.BatchNorm2d(8),
                        nn.ReLU(inplace=True),
                        nn.MaxPool2d(3, 2),
                    ),
                ),
                ("classifier", nn.ModuleList([nn.Dropout(), nn.Dropout(), nn.Linear(8, 4)])),
            ]
        )
    )
    assert (
        repr(net)
        == """Sequential(
  (features): Sequential(
    (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    (2): ReLU(inplace=True)
    (3): MaxPool2d(kernel_size=3, stride=2, padding=0, dilation=1, ceil_mode=False)
  )
  (classifier): ModuleList(
    (0-1): 2 x Dropout(p=0.5, inplace=False)
    (2): Linear(in_features=8, out_features=4, bias=True)
  )
)"""
    )
    assert repr(nn.Identity()) == "Identity()" and repr(nn.ModuleList()) == "ModuleList()"


def all_layers_torch_style(nn_mod):
    """The same layer list built with minicnn.nn or torch.nn (identical constructor calls)."""
    return [
        nn_mod.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2),
        nn_mod.Conv2d(3, 3, 3, padding="same"),
        nn_mod.Conv2d(3, 3, 1, padding="valid"),
        nn_mod.BatchNorm2d(8, momentum=None, affine=False),
        nn_mod.BatchNorm1d(3, bias=False),
        nn_mod.AvgPool2d(3, 1, 1, ceil_mode=True),
        nn_mod.AdaptiveAvgPool2d((2, None)),
        nn_mod.AdaptiveAvgPool2d(6),
        nn_mod.LocalResponseNorm(5, alpha=1e-3, beta=0.5, k=2.0),
        nn_mod.Dropout(0.25),
        nn_mod.Flatten(0, 2),
        nn_mod.Linear(3, 2, bias=False),
        nn_mod.CrossEntropyLoss(label_smoothing=0.1),
        nn_mod.Softmax(dim=-1),
        nn_mod.LogSoftmax(1),
        nn_mod.ReLU(),
        nn_mod.MaxPool2d((2, 3), (1, 2), (1, 1), ceil_mode=True),
        nn_mod.ModuleDict({"a": nn_mod.ReLU(), "b": nn_mod.Identity()}),
    ]


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = all_layers_torch_style(nn), all_layers_torch_style(torch.nn)
    for a, b in zip(ours, theirs):
        assert repr(a) == repr(b)
    assert repr(nn.Sequential(*ours)) == repr(torch.nn.Sequential(*theirs))


# ---- containers
# -------------------------------------------------------------------------------------
def test_sequential_indexing():
    a, b, c = Affine(), nn.ReLU(), Affine()
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and list(s) == [a, b, c]
    assert s[0] is a and s[-1] is c and s[-3] is a
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    assert list(sub._modules) == ["1", "2"]  # a slice keeps the names (as torch)
    assert list(s[::-1]) == [c, b, a]
    with pytest.raises(IndexError, match="index 3 is out of range"):
        s[3]
    with pytest.raises(IndexError, match="index -4 is out of range"):
        s[-4]
    d = nn.Identity()
    s[1] = d
    assert s[1] is d
    s.append(nn.ReLU())
    assert list(s._modules) == ["0", "1", "2", "3"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and s[1] is c  # renumbered after a deletion
    s.insert(0, b)
    assert s[0] is b and s[1] is a and len(s) == 4
    assert len(s + nn.Sequential(nn.ReLU())) == 5


def test_sequential_forward_and_ordered_dict():
    s = nn.Sequential(OrderedDict([("first", Affine()), ("second", Affine())]))
    s.first.scale.data = minicnn.tensor([2.0, 2.0, 2.0])
    s.second.shift.data = minicnn.tensor([1.0, 1.0, 1.0])
    out = s(minicnn.ones(1, 3))
    np.testing.assert_array_equal(out.numpy(), [[3, 3, 3]])
    assert [n for n, _ in s.named_parameters()][0] == "first.scale"
    assert s[1] is s.second
    assert nn.Sequential()(5) == 5  # empty: identity


def test_module_list():
    layers = nn.ModuleList([Affine() for _ in range(3)])
    assert len(layers) == 3 and [n for n, _ in layers.named_children()] == ["0", "1", "2"]
    assert layers[-1] is layers[2] and isinstance(layers[:2], nn.ModuleList)
    layers.append(nn.ReLU())
    layers.extend([nn.Identity()])
    layers += [nn.ReLU()]
    assert len(layers) == 6
    layers.insert(1, nn.Identity())
    assert isinstance(layers[1], nn.Identity) and len(layers) == 7
    del layers[0]
    assert list(layers._modules) == [str(i) for i in range(6)]
    layers[0] = nn.ReLU()
    assert isinstance(layers[0], nn.ReLU)
    assert len(list(layers.parameters())) == 4
    with pytest.raises(IndexError):
        layers[10]
    with pytest.raises(TypeError, match="iterable"):
        layers.extend(3)
    with pytest.raises(NotImplementedError):
        layers(1)


def test_module_dict():
    d = nn.ModuleDict({"a": Affine(), "b": nn.ReLU()})
    assert list(d) == ["a", "b"] and "a" in d and len(d) == 2
    d["c"] = Affine()
    assert list(d.keys()) == ["a", "b", "c"]
    assert [n for n, _ in d.named_parameters()] == ["a.scale", "a.shift", "c.scale", "c.shift"]
    assert isinstance(d.pop("b"), nn.ReLU) and "b" not in d
    d.update([("e", nn.Identity())])
    assert list(d.values())[-1] is d["e"]
    with pytest.raises(ValueError, match="element #0 should be a"):
        d.update([1])
    with pytest.raises(KeyError, match="attribute 'training' already exists"):
        d["training"] = nn.ReLU()
    d.clear()
    assert len(d) == 0
