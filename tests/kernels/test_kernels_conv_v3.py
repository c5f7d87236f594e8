"""conv2d version 3 (csrc/kernels/conv2d_v3.cuh) and the naive version-1 backward kernels, against
the cpu conv on "emu" (and "cuda").

Every pass of version 3 with every tile (32, 64, 128) and split-K forced (1 and 3 slices, and the
choice by shape), in float64 (tight) and float32; shapes that take each load path: channels a
multiple of the per-thread load count or not (the RGB stem), 1x1 kernels (vector weight loads),
P·Q a multiple of 4 or not (vector dout loads in backward weight), stride > 1 (backward data by
output phase, including phases no tap reaches), padding, dilation, groups, batch 1, 1x1 and 11x11
kernels. Offset views (pointers off 16-byte alignment) check the vector loads' scalar fallback.
Split results are deterministic. Shapes stay small: the emulator runs 256 fibers a block.
"""

import numpy as np
import pytest

from minicnn.backends import get_backend
from minicnn.ops.geometry import Conv2dGeometry

from kernel_devices import DTYPES, KERNEL_DEVICES, host, on

cpu = get_backend("cpu")

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)

# (N, C, H, W, K, G, R, S, stride, padding, dilation)
CASES = {
    "3x3 pad 1, channels a multiple of 4": (2, 8, 7, 9, 12, 1, 3, 3, (1, 1), (1, 1), (1, 1)),
    "1x1, P*Q a multiple of 4": (2, 16, 4, 6, 8, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "3x3 stride 2 (4 phases)": (2, 4, 9, 8, 8, 1, 3, 3, (2, 2), (1, 1), (1, 1)),
    "groups 2, stride (2, 3), dilation (2, 1)": (1, 6, 11, 10, 4, 2, 3, 2, (2, 3), (2, 0), (2, 1)),
    "11x11 stride 4, RGB": (1, 3, 27, 27, 8, 1, 11, 11, (4, 4), (2, 2), (1, 1)),
    "7x7 stride 2, RGB, batch 2": (2, 3, 15, 15, 8, 1, 7, 7, (2, 2), (3, 3), (1, 1)),
    "batch 1, 1x1 stride 2": (1, 12, 7, 7, 20, 1, 1, 1, (2, 2), (0, 0), (1, 1)),
    "groups 3, odd sizes": (3, 9, 5, 7, 6, 3, 2, 3, (1, 2), (1, 1), (1, 2)),
    "one pixel": (3, 20, 1, 1, 36, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "stride 3 > kernel 1x1: phases without taps": (2, 4, 9, 9, 8, 1, 1, 1, (3, 3), (0, 0), (1, 1)),
    "stride 3, dilation 2": (1, 4, 8, 8, 4, 1, 3, 3, (3, 3), (1, 1), (2, 2)),
}


def close(actual, expected, dtype, depth):
    """float64: 1e-10; float32: relative 1e-4 with an absolute floor growing like sqrt(depth)."""
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * np.sqrt(depth))
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * np.sqrt(depth))


def inputs(case, dtype, seed=0, bias=True):
    N, C, H, W, K, G, R, S, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // G, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    g = Conv2dGeometry.of(x.shape, w.shape, stride, padding, dilation, G)
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return x, w, b, dy, g


def check_passes(device, case, dtype, **kernel_args):
    """Forward, backward data and backward weight of ``device`` (with kernel_args) vs the cpu."""
    x, w, b, dy, g = inputs(case, dtype)
    backend = get_backend(device)
    N, C, H, W, K, G, R, S = case[:8]
    P, Q = dy.shape[2:]
    y = host(device, backend.conv2d_forward(*on(device, x, w, b), g, **kernel_args))
    close(y, cpu.conv2d_forward(x, w, b, g), dtype, C // G * R * S)
    dx0, dw0, _ = cpu.conv2d_backward(dy, x, w, g)
    d_dev, x_dev, w_dev = on(device, dy, x, w)
    dx = host(device, backend.conv2d_backward_data(d_dev, w_dev, g, **kernel_args))
    close(dx, dx0, dtype, K // G * R * S)
    dw = host(device, backend.conv2d_backward_weight(d_dev, x_dev, g, **kernel_args))
    close(dw, dw0, dtype, N * P * Q)


@devices
@dtypes
@pytest.mark.parametrize("splits", [1, 3, None], ids=lambda s: f"splits={s}")
@pytest.mark.parametrize("tile", [32, 64, 128, 0], ids=lambda t: f"tile={t}")
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_v3_every_pass_tile_and_split(device, dtype, splits, tile, case):
    check_passes(device, CASES[case], dtype, version=3, tile=tile, splits=splits)


@devices
@dtypes
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_naive_kernels_every_pass(device, dtype, case):
    check_passes(device, CASES[case], dtype, version=1)


def offset_on(device, a):
    """A contiguous copy of ``a`` on ``device`` that starts one element past an aligned address."""
    on_device = on(device, a)
    xp = np if isinstance(on_device, np.ndarray) else __import__("cupy")
    view = xp.empty(a.size + 1, a.dtype)[1:].reshape(a.shape)
    view[...] = on_device
    return view


@devices
@dtypes
@pytest.mark.parametrize("tile", [64, 128], ids=lambda t: f"tile={t}")
@pytest.mark.parametrize(
    "case", ["1x1, P*Q a multiple of 4", "3x3 pad 1, channels a multiple of 4"]
)
def test_v3_offset_views_take_the_scalar_loads(device, dtype, tile, case):
    """Misaligned x, w and dout: the 128-bit loads must fall back, not fault or misread."""
    x, w, b, dy, g = inputs(CASES[case], dtype, seed=4)
    backend = get_backend(device)
    xs, ws, ds = (offset_on(device, a) for a in (x, w, dy))
    assert all(
        a.data.ptr % 16 if hasattr(a.data, "ptr") else a.ctypes.data % 16 for a in (xs, ws, ds)
    )
    depth = x.shape[1] * w.shape[2] * w.shape[3]
    y = host(device, backend.conv2d_forward(xs, ws, None, g, version=3, tile=tile))
    close(y, cpu.conv2d_forward(x, w, None, g), dtype, depth)
    dx0, dw0, _ = cpu.conv2d_backward(dy, x, w, g)
    close(
        host(device, backend.conv2d_backward_data(ds, ws, g, version=3, tile=tile)),
        dx0,
        dtype,
        depth,
    )
    dw = host(device, backend.conv2d_backward_weight(ds, xs, g, version=3, tile=tile))
    close(dw, dw0, dtype, dy.size)


@devices
def test_v3_splits_are_deterministic(device):
    x, w, b, dy, g = inputs(CASES["3x3 pad 1, channels a multiple of 4"], np.float32, seed=2)
    backend = get_backend(device)
    xd, wd, bd, dd = on(device, x, w, b, dy)
    for splits in [
        2,
        5,
        40,
    ]:  # 40 slices of 8 > the 72- and 108-step reductions: empty slices add 0
        runs = [
            (
                host(device, backend.conv2d_forward(xd, wd, bd, g, version=3, splits=splits)),
                host(device, backend.conv2d_backward_data(dd, wd, g, version=3, splits=splits)),
            )
            for _ in range(2)
        ]
        for first, again in zip(*runs):
            np.testing.assert_array_equal(first, again)
        close(runs[0][0], cpu.conv2d_forward(x, w, b, g), np.float32, 72)


@devices
def test_bad_version_and_splits_raise(device):
    backend = get_backend(device)
    x, w = on(device, np.ones((1, 4, 5, 5)), np.ones((6, 4, 3, 3)))
    g = Conv2dGeometry.of((1, 4, 5, 5), (6, 4, 3, 3))
    with pytest.raises(ValueError, match="version must be 1, 2, 3 or 4"):
        backend.conv2d_forward(x, w, None, g, version=5)
    with pytest.raises(ValueError, match="version 1 does not split"):
        backend.conv2d_backward_data(on(device, np.ones((1, 6, 3, 3))), w, g, version=1, splits=2)
    with pytest.raises(ValueError, match="splits must be >= 1"):
        backend.conv2d_forward(x, w, None, g, splits=0)


# ---- the choice of tile and split-K by shape (no launch) -----------------------------------------
def geometry(C_module, N, C, H, K, R, stride, pad):
    """The kernels' checked Conv2dArgs of a square convolution."""
    return C_module.conv2d_check(
        Conv2dGeometry.of((N, C, H, H), (K, C, R, R), (stride,) * 2, (pad,) * 2)
    )


@pytest.mark.parametrize("device", ["emu"])
def test_split_k_fills_small_grids_only(device):
    C = get_backend(device).C
    late = geometry(
        C, 32, 2048, 7, 512, 1, 1, 0
    )  # ResNet-50 layer4 1x1: 1568 x 512 outputs, depth 2048
    early = geometry(
        C, 32, 64, 56, 64, 3, 1, 1
    )  # layer1 3x3: 100352 x 64 outputs: many blocks already
    assert C.conv2d_splits(late, 0, 3, 0) > 1 and C.conv2d_splits(late, 1, 3, 0) > 1
    assert C.conv2d_splits(early, 0, 3, 0) == 1 and C.conv2d_splits(early, 1, 3, 0) == 1
    assert (
        C.conv2d_splits(early, 2, 3, 0) > 1
    )  # backward weight: 64 x 576 outputs over 100352 steps
    assert C.conv2d_splits(late, 0, 2, 0) == 1  # version 2 splits backward weight only
