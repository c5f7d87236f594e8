"""Conv2dGeometry / Pool2dGeometry (minicnn/ops/geometry.py): computed and checked once by the op,
before anything is allocated, on every device.

Huge logical shapes come from broadcast views of one element: no memory behind them, so a check
that came after an allocation would show up as a MemoryError or an 8 GiB process, not as the
ValueError these tests expect.
"""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn.ops.geometry import Conv2dGeometry, Pool2dGeometry

from kernel_devices import KERNEL_DEVICES

DEVICES = ["cpu"] + [p.values[0] for p in KERNEL_DEVICES if not p.marks]


def huge_tensor(shape, device="cpu"):
    """A float32 Tensor of the given logical shape over a single element."""
    return minicnn.Tensor(np.broadcast_to(np.zeros(1, np.float32), shape), device)


def test_conv_sizes():
    g = Conv2dGeometry.of((2, 6, 9, 8), (4, 3, 3, 2), (2, 1), (1, 0), (1, 2), 2)
    assert (g.P, g.Q) == ((9 + 2 - 2 - 1) // 2 + 1, (8 - 2 - 1) // 1 + 1)
    assert g.y_shape == (2, 4, g.P, g.Q) and g.w_shape == (4, 3, 3, 2) and (g.Cg, g.Kg) == (3, 2)
    assert g.kernel_geometry is g


def test_extra_padding_is_folded_into_the_kernel_geometry():
    g = Conv2dGeometry.of((1, 2, 5, 6), (3, 2, 2, 3), extra=(1, 0))
    k = g.kernel_geometry
    assert (k.H, k.W, k.eh, k.ew) == (6, 6, 0, 0) and (k.P, k.Q) == (g.P, g.Q) == (5, 4)


def test_unbatched_shape_is_one_image():
    assert Conv2dGeometry.of((3, 5, 5), (2, 3, 3, 3)).x_shape == (1, 3, 5, 5)


def test_geometry_is_immutable():
    g = Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (2, 2))
    with pytest.raises(AttributeError):
        g.P = 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x_shape=(1, 4, 5, 5), w_shape=(6, 2, 3, 3)), r"has 4 channels but weight"),
        (dict(x_shape=(1, 4, 5, 5), w_shape=(5, 1, 3, 3), groups=4), r"out_channels 5 .* groups=4"),
        (dict(x_shape=(1, 4, 5, 5), w_shape=(6, 4, 7, 7)), r"kernel larger than the padded input"),
        (dict(x_shape=(1, 4, 5, 5), w_shape=(6, 4, 3, 3), stride=(0, 1)), r"stride .* >= 1"),
        (
            dict(x_shape=(1, 4, 5, 5), w_shape=(6, 4, 3, 3), padding=(-1, 0)),
            r"padding must be >= 0",
        ),
        (dict(x_shape=(4, 5), w_shape=(6, 4, 3, 3)), r"3-D or 4-D"),
        (dict(x_shape=(1, 4, 5, 5), w_shape=(6, 4, 3, 3), groups=1.5), r"must be an int"),
    ],
)
def test_conv_geometry_errors_name_the_op(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        Conv2dGeometry.of(**kwargs)
    assert str(info.value).startswith("conv2d: ")


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        (
            (1, 1, 1, 2**31 + 7),
            (1, 1, 1, 1),
            {},
            r"input of shape \(1, 1, 1, 2147483655\) .* 32-bit",
        ),
        # an output plane of 2^31 pixels (issue 17: cpu allocated 8 GiB before refusing this)
        (
            (1, 1, 2**16, 2**15),
            (1, 1, 1, 1),
            {},
            r"input of shape \(1, 1, 65536, 32768\) has planes",
        ),
        (
            (1, 1, 2**16 - 2, 2**15),
            (1, 1, 1, 1),
            dict(padding=(1, 1)),
            r"output of shape \(1, 1, 65536, 32770\) has planes of 65536 x 32770",
        ),
        ((1, 2**16, 1, 1), (1, 2**16, 2**8, 2**8), dict(padding=(2**7, 2**7)), r"reduction index"),
        ((2**40, 2**12, 2**8, 2**8), (1, 2**12, 1, 1), {}, r"2\^63 elements or more"),
    ],
)
def test_too_large_for_the_index_types(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2dGeometry.of(x_shape, w_shape, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_huge_conv_is_refused_before_allocating(device):
    w = minicnn.zeros(1, 1, 1, 1, device=device)
    with pytest.raises(ValueError, match=r"conv2d: output of shape \(2, 1, 65536, 32770\)"):
        F.conv2d(huge_tensor((2, 1, 2**16 - 2, 2**15), device), w, padding=1)


@pytest.mark.parametrize("device", DEVICES)
def test_huge_pooling_is_refused_before_allocating(device):
    x = huge_tensor((1, 1, 2**16, 2**15 + 2), device)
    with pytest.raises(ValueError, match=r"max_pool2d: input of shape .* has planes"):
        F.max_pool2d(x, 3, 1)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output of shape .* has planes"):
        F.adaptive_avg_pool2d(huge_tensor((1, 1, 4, 4), device), (2**16, 2**15))


def test_pool_sizes_and_errors():
    g = Pool2dGeometry.of((1, 2, 7, 6), (3, 2), (2, 2), (1, 1), (1, 1), ceil_mode=True)
    assert g.out_size == (4, 4) and g.y_shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="max_pool2d: padding should be at most half"):
        Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (1, 1), (2, 0), op="max_pool2d")
    with pytest.raises(ValueError, match=r"avg_pool2d: .* gives output size \(0, 0\)"):
        Pool2dGeometry.of((1, 1, 4, 4), (5, 5), (1, 1), op="avg_pool2d")


def test_average_pooling_options_travel_in_the_geometry():
    g = Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (2, 2), divisor_override=np.int64(3))
    assert (g.count_include_pad, g.divisor_override) == (True, 3)
    assert type(g.divisor_override) is int  # a NumPy integer made a Python int, as the sizes
    assert g != Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (2, 2), count_include_pad=False)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override must not be zero"):
        Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (2, 2), op="avg_pool2d", divisor_override=0)
    with pytest.raises(TypeError, match=r"pool2d: divisor_override must be an int or None"):
        Pool2dGeometry.of((1, 1, 4, 4), (2, 2), (2, 2), divisor_override=True)


def test_a_geometry_built_directly_names_its_op_and_checks_every_field():
    with pytest.raises(ValueError, match=r"^conv2d: kernel larger than the padded input"):
        Conv2dGeometry(1, 1, 3, 3, 1, 5, 5)
    with pytest.raises(TypeError, match=r"^conv2d: geometry field extra must be an int"):
        Conv2dGeometry(1, 1, 3, 3, 1, 1, 1, extra=(0, 0.5))
    with pytest.raises(ValueError, match=r"^pool2d: sizes must be >= 0"):
        Pool2dGeometry(1, -1, 3, 3)
    g = Conv2dGeometry(1, 1, 3, 3, 1, 2, 2, extra=[np.int64(1), 0])
    assert g.extra == (1, 0) and (g.eh, g.ew) == (1, 0) and (g.P, g.Q) == (3, 2)
