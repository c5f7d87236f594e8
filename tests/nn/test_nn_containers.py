"""minicnn.nn containers: Sequential, ModuleList, ModuleDict."""

from collections import OrderedDict

import numpy as np
import pytest

import minicnn
from minicnn import nn
from nn_modules import Affine


# ---- containers ----------------------------------------------------------------------------------
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
