"""cross_entropy / nll_loss on a kernel device check their targets on the device: no host copy
and no sync per call. An out-of-range target makes its loss NaN and raises ValueError (naming
the op, the value and its index) at the next read of a device value."""

import math

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn.backends import _transfers

from kernel_devices import KERNEL_DEVICES


@pytest.fixture(autouse=True)
def _no_leftover_checks():
    yield
    _transfers._pending.clear()  # a failing test must not leave its check to the next one


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize(
    "op,target,value,index",
    [
        ("cross_entropy", [0, 1, 3, 0, 7], 3, 2),
        ("cross_entropy", [0, -1, 2, 0, 1], -1, 1),
        ("nll_loss", [0, 1, 2, 2, 5], 5, 4),
    ],
)
def test_raised_at_the_next_read_with_op_value_and_index(device, op, target, value, index):
    x = minicnn.zeros(5, 3, device=device)
    with _transfers.count_transfers() as c:
        loss = getattr(F, op)(x, minicnn.tensor(target, device=device))
    assert c.reads == 0  # nothing read in the call
    with pytest.raises(
        ValueError,
        match=rf"{op}: target value {value} is out of range for 3 classes "
        rf"\(valid: 0..2, or ignore_index=-100\), at index {index}",
    ):
        loss.item()
    assert math.isnan(loss.item())  # raised once; the loss itself is NaN


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_ignored_and_valid_targets_pass_and_match_cpu(device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4, 2)).astype(np.float32)
    t = np.array([[0, 3], [-100, 1], [2, 2], [1, -100], [3, 0], [0, 0]])
    got = F.cross_entropy(minicnn.tensor(x, device=device), minicnn.tensor(t, device=device))
    want = F.cross_entropy(minicnn.tensor(x), minicnn.tensor(t))
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_index_of_a_spatial_target_is_a_tuple(device):
    x = minicnn.zeros(2, 3, 2, 2, device=device)
    t = np.zeros((2, 2, 2), np.int64)
    t[1, 0, 1] = 9
    loss = F.cross_entropy(x, minicnn.tensor(t, device=device), reduction="none")
    with pytest.raises(ValueError, match=r"target value 9 .* at index \(1, 0, 1\)"):
        loss.numpy()
    out = loss.numpy()
    assert np.isnan(out[1, 0, 1]) and np.isfinite(np.delete(out.ravel(), 5)).all()


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_many_calls_are_read_in_one_copy(device):
    x = minicnn.zeros(2, 3, device=device)
    for _ in range(10):
        F.cross_entropy(x, minicnn.tensor([0, 2], device=device))
    with _transfers.count_transfers() as c:
        minicnn.tensor([1.0], device=device).item()
    assert c.reads_of("deferred checks") == 1 and c.reads_of("array") == 1


def test_cpu_still_raises_in_the_call():
    with pytest.raises(ValueError, match=r"cross_entropy: target value 4 .* at index 1"):
        F.cross_entropy(minicnn.zeros(2, 3), minicnn.tensor([0, 4]))
