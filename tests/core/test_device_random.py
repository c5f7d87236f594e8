"""Philox4x32-10 (csrc/kernels/random.cu) and the dropout mask drawn on the device.

The NumPy reference (minicnn.random.philox4x32) against Random123's known-answer vectors; the
kernel against it bit for bit; dropout on the kernel devices: the mask is the reference's for
the drawn key, reproducible with manual_seed and the saved RNG state, and its statistics hold."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import random as R
from minicnn.backends import get_backend

from kernel_devices import DTYPES, KERNEL_DEVICES, host

# Random123's kat_vectors for philox4x32 with 10 rounds: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_numpy_philox_matches_random123(counter, key, expected):
    out = R.philox4x32(np.array([counter], np.uint32), key[0] | (key[1] << 32))
    assert tuple(int(v) for v in out[0]) == expected


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("offset", [0, 2**32 - 3])  # the counter's high word is used
def test_kernel_philox_matches_numpy(device, offset):
    backend = get_backend(device)
    lanes, seed = 37, 0x0123456789ABCDEF
    out = backend.xp.zeros((lanes, 4), np.uint32)
    backend.C.philox4x32(backend._pointer(out), lanes, seed, offset, backend._stream())
    index = np.arange(offset, offset + lanes, dtype=np.uint64)
    counters = np.zeros((lanes, 4), np.uint32)
    counters[:, 0], counters[:, 1] = index & np.uint64(0xFFFFFFFF), index >> np.uint64(32)
    np.testing.assert_array_equal(host(device, out), R.philox4x32(counters, seed))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1027])  # whole and partial lanes
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_kernel_is_the_reference_bit_for_bit(device, dtype, n, p):
    minicnn.manual_seed(n)
    mask = get_backend(device).dropout_mask((n,), p, dtype)
    minicnn.manual_seed(n)
    expected = R.philox_dropout_mask(n, p, dtype, R.draw_seed())  # the key the backend drew
    got = host(device, mask)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


def test_threshold_is_exact():
    assert R.dropout_threshold(0.5) == 2**31 and R.dropout_threshold(0.0) == 0
    p = 0.3
    t = R.dropout_threshold(p)
    assert (t - 1) / 2**32 < p <= t / 2**32


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("p", [0.2, 0.7])
def test_dropout_on_device_statistics_and_backward(device, p):
    x = minicnn.ones(100, 300, dtype="float64", device=device, requires_grad=True)
    y = F.dropout(x, p)
    out = y.numpy()
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 6 * np.sqrt(p * (1 - p) / out.size)
    np.testing.assert_array_equal(out[kept], 1 / (1 - p))
    y.backward(np.full(y.shape, 2.0))
    np.testing.assert_array_equal(x.grad.numpy(), 2.0 * out)  # dx = dy · mask


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_dropout_on_device_reproducible_and_resumable(device):
    x = minicnn.randn(16, 32, device=device)
    minicnn.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    state = minicnn.get_rng_state()
    b = F.dropout(x, 0.5).numpy()
    minicnn.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    minicnn.set_rng_state(state)  # as a resumed run does
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), b)
    assert not np.array_equal(a != 0, b != 0)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_dropout_float32_and_float64_keep_the_same_elements(device):
    x = minicnn.randn(7, 9, dtype="float64", device=device)
    minicnn.manual_seed(11)
    y64 = F.dropout(x, 0.4).numpy()
    minicnn.manual_seed(11)
    y32 = F.dropout(x.float(), 0.4).numpy()
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y64 != 0, y32 != 0)


def test_dropout_mask_rejects_an_integer_dtype():
    backend = get_backend("emu")
    with pytest.raises(TypeError, match="dropout_mask: dtype must be floating point, got int64"):
        backend.dropout_mask((3,), 0.5, np.int64)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_float16_mask_keeps_the_float32_masks_elements(device):
    backend = get_backend(device)
    minicnn.manual_seed(4)
    m16 = host(device, backend.dropout_mask((9, 11), 0.3, np.float16))
    minicnn.manual_seed(4)
    m32 = host(device, backend.dropout_mask((9, 11), 0.3, np.float32))
    assert m16.dtype == np.float16
    np.testing.assert_array_equal(m16 != 0, m32 != 0)
    np.testing.assert_array_equal(np.unique(m16), [0, np.float16(1) / np.float16(0.7)])
