"""bench_models.py --profile's OpProfile: it times every Function (static- and classmethod
forward/backward alike) under its family, leaves the results alone, and restores the classes."""

import os
import sys

import numpy as np

import minicnn
from minicnn import functional as F
from minicnn.ops.activation import ReLU
from minicnn.ops.shape import Invertible, Reshape

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from _profile import OTHER, OpProfile  # noqa: E402


def _step(x):
    def step():
        x.grad = None
        y = F.relu(x.reshape(2, 6)).sum()
        y.backward()

    return step


def test_profile_times_each_family_and_restores_the_classes():
    x = minicnn.tensor(np.linspace(-1, 1, 12).reshape(3, 4), requires_grad=True)
    _step(x)()
    want = x.grad.numpy().copy()
    saved = [(c, dict(c.__dict__)) for c in (ReLU, Reshape, Invertible)]
    profile = OpProfile()
    with profile.active():
        profile.run_step(_step(x))
    np.testing.assert_array_equal(x.grad.numpy(), want)
    families = {name for name, _, _ in profile.rows()}
    assert {"relu", "reshape", OTHER} <= families
    for cls, before in saved:  # the very same descriptors are back
        assert {k: cls.__dict__.get(k) for k in ("forward", "backward")} == {
            k: before.get(k) for k in ("forward", "backward")
        }
