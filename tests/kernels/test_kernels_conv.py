"""The conv2d CUDA kernels (csrc/kernels/conv2d.cu) against the cpu conv, on "emu" (and "cuda").

Forward, backward data, backward weight and bias of the device backend are called directly, as
minicnn/ops/conv.py calls them, on the same inputs as the cpu backend's: float64 must agree to
~1e-10, float32 to a tolerance scaled by the reduction length. Covered: every layer shape family of
AlexNet (11x11/4, grouped 5x5), VGG (3x3), GoogLeNet (1x1, 5x5, 7x7/2), ResNet-50 (7x7/2, 1x1 stride
2, 3x3 stride 2) and DenseNet-121 (bottleneck 1x1, growth 3x3, transition 1x1) at reduced size and
channels; hypothesis over N, C, H, W, K, R, S, stride, padding, dilation, groups and the GEMM tile;
the naive kernel (version 1) against the tiled one (version 2) for every tile; PyTorch's conv2d and
its gradients (when PyTorch is installed) as an independent reference; the split reduction
of backward weight (deterministic, any split count); (float64 gradchecks through F.conv2d:
test_kernels_ops.py); bad input rejected before anything is allocated or launched, including shapes
too large for the kernels' indices (huge logical sizes over broadcast views: no memory behind them).

The emulator runs blocks one after another, so the shapes here stay small.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minicnn
from minicnn.backends import get_backend
from minicnn.ops.geometry import Conv2dGeometry

from kernel_devices import DTYPES, KERNEL_DEVICES, host, on

cpu = get_backend("cpu")

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
emu_only = pytest.mark.parametrize("device", [p for p in KERNEL_DEVICES if p.values[0] == "emu"])


def close(actual, expected, dtype, depth):
    """float64: 1e-10; float32: relative 1e-4 with an absolute floor growing like sqrt(depth)."""
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * np.sqrt(depth))
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * np.sqrt(depth))


def conv_inputs(rng, N, C, H, W, K, G, R, S, dtype, bias=True):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C // G, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    return x, w, b


def check_against_cpu(
    device, dtype, N, C, H, W, K, G, R, S, stride, padding, dilation, bias=True, seed=0, tile=0
):
    """Forward and all three gradients of ``device`` vs the cpu conv."""
    rng = np.random.default_rng(seed)
    x, w, b = conv_inputs(rng, N, C, H, W, K, G, R, S, dtype, bias)
    g = Conv2dGeometry.of(x.shape, w.shape, stride, padding, dilation, G)
    backend = get_backend(device)
    y0 = cpu.conv2d_forward(x, w, b, g)
    y = host(device, backend.conv2d_forward(*on(device, x, w, b), g, tile=tile))
    close(y, y0, dtype, C // G * R * S)
    dy = rng.standard_normal(y0.shape).astype(dtype)
    dx0, dw0, db0 = cpu.conv2d_backward(dy, x, w, g)
    d_dev, x_dev, w_dev = on(device, dy, x, w)
    dx = host(device, backend.conv2d_backward_data(d_dev, w_dev, g, tile=tile))
    dw = host(device, backend.conv2d_backward_weight(d_dev, x_dev, g, tile=tile))
    db = host(device, backend.conv2d_backward_bias(d_dev))
    close(dx, dx0, dtype, K // G * R * S)
    close(dw, dw0, dtype, N * y0.shape[2] * y0.shape[3])
    close(db, db0, dtype, N * y0.shape[2] * y0.shape[3])


# ---- the layer shapes of the model zoo, reduced --------------------------------------------------
# (N, C, H, W, K, G, R, S, stride, padding, dilation): channels and maps shrunk, geometry kept.
LAYERS = {
    "alexnet conv1 11x11/4": (2, 3, 39, 39, 16, 1, 11, 11, (4, 4), (2, 2), (1, 1)),
    "alexnet conv2 5x5 groups 2": (2, 16, 9, 9, 24, 2, 5, 5, (1, 1), (2, 2), (1, 1)),
    "alexnet conv4 3x3 groups 2": (1, 24, 5, 5, 20, 2, 3, 3, (1, 1), (1, 1), (1, 1)),
    "vgg 3x3": (2, 64, 14, 14, 64, 1, 3, 3, (1, 1), (1, 1), (1, 1)),
    "googlenet 1x1": (2, 24, 7, 7, 40, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "googlenet 5x5": (2, 8, 7, 7, 12, 1, 5, 5, (1, 1), (2, 2), (1, 1)),
    "googlenet stem 7x7/2": (1, 3, 21, 21, 16, 1, 7, 7, (2, 2), (3, 3), (1, 1)),
    "resnet50 stem 7x7/2": (2, 3, 23, 23, 8, 1, 7, 7, (2, 2), (3, 3), (1, 1)),
    "resnet50 1x1 stride 2 downsample": (2, 32, 9, 9, 48, 1, 1, 1, (2, 2), (0, 0), (1, 1)),
    "resnet50 3x3 stride 2": (2, 16, 9, 9, 16, 1, 3, 3, (2, 2), (1, 1), (1, 1)),
    "resnet50 1x1 expand": (1, 64, 7, 7, 256, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "densenet121 bottleneck 1x1": (2, 160, 6, 6, 128, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "densenet121 growth 3x3": (2, 32, 6, 6, 8, 1, 3, 3, (1, 1), (1, 1), (1, 1)),
    "densenet121 transition 1x1": (1, 48, 6, 6, 24, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
    "resnet 1x1 at 1x1 pixels": (3, 20, 1, 1, 36, 1, 1, 1, (1, 1), (0, 0), (1, 1)),
}


@devices
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layer", list(LAYERS), ids=str)
def test_model_layer_shapes(device, dtype, layer):
    check_against_cpu(device, dtype, *LAYERS[layer])


@devices
@pytest.mark.parametrize("tile", [32, 64, 128])
def test_a_gemm_larger_than_one_tile_of_every_size(device, tile):
    # rows 2*13*13 = 338 and 130 channels: several tiles each way, none full at the edges
    check_against_cpu(
        device, np.float64, 2, 7, 13, 13, 130, 1, 3, 3, (1, 1), (1, 1), (1, 1), tile=tile
    )


# ---- hypothesis ----------------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    G = draw(st.sampled_from([1, 1, 2, 3]))
    Cg, Kg = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H, W = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    assume(
        H + 2 * padding[0] >= dilation[0] * (R - 1) + 1
        and W + 2 * padding[1] >= dilation[1] * (S - 1) + 1
    )
    N = draw(st.integers(1, 3))
    return dict(
        N=N,
        C=Cg * G,
        H=H,
        W=W,
        K=Kg * G,
        G=G,
        R=R,
        S=S,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
        tile=draw(st.sampled_from([0, 32, 64, 128])),
    )


@devices
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@given(case=conv_cases())
def test_conv_matches_cpu(device, dtype, case):
    check_against_cpu(device, dtype, **case)


# ---- version 1 (naive) against version 2 (implicit GEMM) -----------------------------------------
@devices
@pytest.mark.parametrize("tile", [0, 32, 64, 128])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_naive_and_tiled_forward_agree(device, tile, dtype):
    rng = np.random.default_rng(3)
    backend = get_backend(device)
    for N, C, H, W, K, G, R, S, stride, padding, dilation in [
        (2, 6, 9, 8, 70, 2, 3, 2, (2, 1), (1, 0), (1, 2)),
        (1, 3, 17, 15, 5, 1, 5, 5, (1, 2), (2, 2), (2, 1)),
    ]:
        x, w, b = on(device, *conv_inputs(rng, N, C, H, W, K, G, R, S, dtype))
        g = Conv2dGeometry.of(x.shape, w.shape, stride, padding, dilation, G)
        naive = host(device, backend.conv2d_forward(x, w, b, g, version=1))
        tiled = host(device, backend.conv2d_forward(x, w, b, g, version=2, tile=tile))
        close(tiled, naive, dtype, C // G * R * S)


# ---- against PyTorch (an independent reference) --------------------------------------------------
@devices
@pytest.mark.parametrize(
    "hyper",
    [
        ((1, 1), (1, 1), (1, 1), 1),
        ((2, 3), (2, 0), (1, 2), 2),
        ((4, 4), (2, 2), (1, 1), 1),
        ((1, 2), (0, 1), (3, 1), 3),
    ],
    ids=str,
)
def test_conv_matches_torch(device, hyper):
    torch = pytest.importorskip("torch")
    stride, padding, dilation, G = hyper
    rng = np.random.default_rng(9)
    x, w, b = conv_inputs(rng, 2, 3 * G, 13, 12, 2 * G, G, 3, 4, np.float64)
    backend = get_backend(device)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, G)
    dy = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dy))
    g = Conv2dGeometry.of(x.shape, w.shape, *hyper)
    y = host(device, backend.conv2d_forward(*on(device, x, w, b), g))
    dx, dw, db = host(device, backend.conv2d_backward(*on(device, dy, x, w), g))
    for ours, theirs in [(y, ty), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


# ---- backward weight: the split reduction --------------------------------------------------------
@devices
def test_backward_weight_splits_are_deterministic(device):
    rng = np.random.default_rng(5)
    backend = get_backend(device)
    x, w, _ = conv_inputs(rng, 4, 6, 10, 10, 8, 2, 3, 3, np.float32, bias=False)
    g = Conv2dGeometry.of(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 2)
    dy = rng.standard_normal(g.y_shape).astype(np.float32)
    d_dev, x_dev = on(device, dy, x)
    expected = cpu.conv2d_backward_weight(dy.astype(np.float64), x.astype(np.float64), g)
    for splits in [1, 2, 3, 7, 50]:  # 50 slices of 8 > the 400-step reduction: empty slices add 0
        first = host(device, backend.conv2d_backward_weight(d_dev, x_dev, g, splits=splits))
        again = host(device, backend.conv2d_backward_weight(d_dev, x_dev, g, splits=splits))
        np.testing.assert_array_equal(first, again)
        close(first, expected.astype(np.float32), np.float32, 400)


# ---- through the ops: F.conv2d / nn.Conv2d on the device -----------------------------------------
@devices
def test_nn_conv2d_runs_our_kernel(device, monkeypatch):
    backend = get_backend(device)
    calls = []
    kernel = backend.conv2d_forward
    monkeypatch.setattr(
        backend, "conv2d_forward", lambda *a, **k: calls.append(1) or kernel(*a, **k)
    )
    layer = minicnn.nn.Conv2d(3, 4, 3, padding=1, groups=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    expected = layer(minicnn.tensor(x)).numpy()
    layer.to(device)
    y = layer(minicnn.tensor(x, device=device))
    assert calls, "conv2d did not go through the device backend's conv2d_forward"
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-5)


# ---- bad input: raised before any allocation or launch -------------------------------------------
@devices
def test_bad_input_raises(device):
    """The op checks the geometry (tests/core/test_geometry.py); the backend checks the arrays
    against it."""
    backend = get_backend(device)
    x, w = on(device, np.ones((1, 4, 5, 5)), np.ones((6, 2, 3, 3)))
    g = Conv2dGeometry.of(x.shape, w.shape, groups=2)
    with pytest.raises(ValueError, match=r"weight must have shape \(6, 2, 3, 3\)"):
        backend.conv2d_forward(x, on(device, np.ones((6, 2, 3, 2))), None, g)
    with pytest.raises(ValueError, match=r"x must have shape \(1, 4, 5, 5\)"):
        backend.conv2d_forward(on(device, np.ones((1, 4, 5, 6))), w, None, g)
    with pytest.raises(ValueError, match="dout must have shape"):
        backend.conv2d_backward_data(on(device, np.ones((1, 6, 2, 2))), w, g)
    with pytest.raises(TypeError, match="float32 or float64"):
        backend.conv2d_forward(on(device, np.ones((1, 4, 5, 5), np.int32)), w, None, g)
    with pytest.raises(ValueError, match="tile"):
        backend.conv2d_forward(x, w, None, g, tile=48)
    with pytest.raises(ValueError, match="symmetric padding"):
        backend.conv2d_forward(
            x, w, None, Conv2dGeometry.of(x.shape, w.shape, extra=(1, 0), groups=2)
        )


def huge(shape, dtype=np.float32):
    """A read-only view of the given logical shape over one element: no memory behind it."""
    return np.broadcast_to(np.zeros(1, dtype), shape)


@emu_only
def test_too_large_for_the_kernels_grid_is_rejected_without_allocating(device):
    # 65536 groups fit the indices (the geometry accepts them) but exceed the grid's z extent
    g = Conv2dGeometry.of((1, 2**16, 1, 1), (2**16, 1, 1, 1), groups=2**16)
    with pytest.raises(ValueError, match="groups"):
        get_backend(device).conv2d_forward(huge(g.x_shape), huge(g.w_shape), None, g)


@emu_only
def test_huge_logical_sizes_pass_the_check_with_64_bit_indices(device):
    C = get_backend(device).C
    # N*C*H*W = 2^40 elements and N*P*Q = 2^30 GEMM rows: fine with int64 flat indices
    args = C.conv2d_check(Conv2dGeometry.of((2**10, 2**10, 2**10, 2**10), (64, 2**10, 1, 1)))
    assert (args.N, args.C, args.H, args.K, args.P, args.G) == (2**10, 2**10, 2**10, 64, 2**10, 1)
    # N*P*Q / 32 > 2^31 - 1 blocks: fits the indices (the geometry accepts it), not the grid's x
    # extent
    with pytest.raises(ValueError, match="grid"):
        C.conv2d_check(Conv2dGeometry.of((2**30, 1, 2**8, 2**8), (1, 1, 1, 1)))


@emu_only
def test_the_bindings_take_the_geometry_by_field_name(device):
    C = get_backend(device).C
    g = Conv2dGeometry.of((2, 6, 9, 8), (4, 3, 3, 2), (2, 1), (1, 0), (1, 2), 2)
    fields = {f: getattr(g, f) for f in "N C H W K R S P Q sh sw ph pw dh dw G".split()}
    ours = C.Conv2dGeometry(**fields)
    assert repr(ours) == repr(C.Conv2dGeometry.from_python(g)) and ours.P == g.P and ours.G == 2
    args = C.conv2d_check(ours)
    assert all(getattr(args, f) == v for f, v in fields.items())
    with pytest.raises(ValueError, match="Conv2dGeometry: missing field G"):
        C.conv2d_check({f: v for f, v in fields.items() if f != "G"})
    with pytest.raises(
        ValueError, match="Conv2dGeometry: field sh = 36893488147419103232 does not fit"
    ):
        C.conv2d_check({**fields, "sh": 2**65})
    with pytest.raises(ValueError, match="extra padding"):
        C.conv2d_check(Conv2dGeometry.of((1, 1, 4, 4), (1, 1, 2, 2), extra=(1, 1)))
