"""Tensor cores (nvcuda::wmma): the emulator's wmma against a plain matrix product, and conv2d
version 4 (csrc/kernels/conv2d_wmma.cu) in float16, bfloat16 and TF32 against float32 references
computed from the same rounded inputs.

Tolerances. The products are exact in float32 (16-bit and tf32 inputs have at most 11 significant
bits) and the sums are float32 in some order, so a float32 result is within ~k·2^-24·Σ|a·b| of the
exact sum of the rounded inputs (k terms). A 16-bit output is then rounded once: one ulp relative
(2^-10 float16, 2^-7 bfloat16) covers a rounding that the float32 sum-order difference flips, plus
an absolute ulp of the largest output for values that cancel to near zero.
"""

import ml_dtypes
import numpy as np
import pytest

import minicnn.backends
from minicnn.backends import get_backend
from minicnn.ops.geometry import Conv2dGeometry

from kernel_devices import KERNEL_DEVICES, host, on

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [pytest.param(F16, id="float16"), pytest.param(BF16, id="bfloat16")]
ULP = {F16: 2.0**-10, BF16: 2.0**-7}
cpu = get_backend("cpu")


def tf32(a):
    """float32 rounded to tf32 (10 fraction bits), to nearest, ties away (cvt.rna.tf32.f32)."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32)
    finite = (bits & 0x7F800000) != 0x7F800000
    rounded = np.where(finite, (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000), bits)
    return rounded.astype(np.uint32).view(np.float32)


def rounded(shape, dtype, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    return tf32(x) if dtype == "tf32" else x.astype(dtype)


# ---- the emulator's wmma: D = A·B + C -----------------------------------------------------------
def aligned(device, a):
    """``a`` on ``device`` at a 32-byte aligned address, as load/store_matrix_sync need (CuPy's
    allocations are; NumPy's are only 16-byte aligned)."""
    if device != "emu":
        return on(device, a)
    a = np.ascontiguousarray(a)
    raw = np.empty(a.nbytes + 32, np.uint8)
    start = -raw.ctypes.data % 32
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def wmma_gemm(device, kind, a, b, c, a_row, b_row):
    backend = get_backend(device)
    M, K = a.shape
    N = b.shape[1]
    dtype = "float32" if kind == "tf32" else np.dtype(kind).name
    a_mem = a if a_row else np.ascontiguousarray(a.T)  # column-major: the transpose's rows
    b_mem = b if b_row else np.ascontiguousarray(b.T)
    da, db = aligned(device, a_mem), aligned(device, b_mem)
    dc = None if c is None else aligned(device, c)
    d = aligned(device, np.empty((M, N), np.float32))
    backend.C.wmma_gemm(
        dtype, backend._ptr(d), backend._ptr(da), backend._ptr(db), backend._ptr(dc),
        M, N, K, a_row, b_row, backend._stream(),
    )  # fmt: skip
    return host(device, d)


@devices
@pytest.mark.parametrize("kind", [F16, BF16, "tf32"], ids=["float16", "bfloat16", "tf32"])
@pytest.mark.parametrize(
    "a_row,b_row", [(True, True), (True, False), (False, True), (False, False)]
)
@pytest.mark.parametrize("with_c", [True, False])
def test_wmma_gemm_is_a_matrix_product(device, kind, a_row, b_row, with_c):
    M, N, K = 32, 48, 64
    a, b = rounded((M, K), kind, 1), rounded((K, N), kind, 2)
    c = rounded((M, N), np.float32, 3) if with_c else None
    got = wmma_gemm(device, kind, a, b, c, a_row, b_row)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = a64 @ b64 + (0.0 if c is None else c)
    bound = (K + 1) * 2.0**-24 * (np.abs(a64) @ np.abs(b64) + (0.0 if c is None else np.abs(c)))
    assert np.all(np.abs(got - want) <= bound)


@devices
def test_wmma_gemm_unrounded_tf32_inputs_are_rounded(device):
    """tf32 reads 10 fraction bits: full float32 inputs give the product of their tf32 values."""
    a, b = rounded((16, 8), np.float32, 4), rounded((8, 16), np.float32, 5)
    got = wmma_gemm(device, "tf32", a, b, None, True, True)
    want = tf32(a).astype(np.float64) @ tf32(b).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_wmma_rejects_misaligned_memory():
    a = np.zeros(16 * 16 + 1, F16)[1:].reshape(16, 16)  # 2 bytes past an aligned address
    b = aligned("emu", np.zeros((16, 16), F16))
    with pytest.raises(RuntimeError, match="load_matrix_sync: the pointer must be 32-byte"):
        wmma_gemm_raw("emu", a, b)


def wmma_gemm_raw(device, a, b):
    backend = get_backend(device)
    d = aligned(device, np.empty((16, 16), np.float32))
    backend.C.wmma_gemm("float16", d.ctypes.data, a.ctypes.data, b.ctypes.data, 0, 16, 16, 16,
                        True, True)  # fmt: skip


def test_wmma_gemm_rejects_bad_sizes():
    with pytest.raises(ValueError, match="wmma_gemm: M, N must be multiples of 16"):
        wmma_gemm("emu", F16, np.zeros((16, 8), F16), np.zeros((8, 16), F16), None, True, True)


# ---- conv2d version 4 ----------------------------------------------------------------------------
CONVS = [  # (x shape, K, (R, S), stride, padding, dilation, groups)
    ((2, 5, 9, 7), 6, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 8, 8), 20, (1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((2, 6, 7, 9), 4, (3, 2), (2, 1), (1, 0), (2, 1), 2),
    ((3, 3, 11, 11), 70, (5, 5), (3, 3), (2, 2), (1, 1), 1),
]


def geometry(case):
    x_shape, K, kernel, stride, padding, dilation, groups = case
    return Conv2dGeometry.of(x_shape, (K, x_shape[1] // groups, *kernel), stride, padding,
                             dilation, groups)  # fmt: skip


def close(got, want, dtype):
    want = np.asarray(want, np.float32)
    assert got.dtype == dtype
    atol = ULP[dtype] * max(float(np.abs(want).max(initial=0.0)), 1e-3)
    np.testing.assert_allclose(
        got.astype(np.float32), want.astype(dtype).astype(np.float32), rtol=ULP[dtype], atol=atol
    )


def launches(device):
    return get_backend(device).C._conv2d_wmma_launches()


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", CONVS)
def test_conv2d_half_on_tensor_cores(device, dtype, case):
    b = get_backend(device)
    g = geometry(case)
    x, w = rounded(g.x_shape, dtype, 6), rounded(g.w_shape, dtype, 7)
    bias, dy = rounded((g.K,), dtype, 8), rounded(g.y_shape, dtype, 9)
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    before = launches(device)
    y = host(device, b.conv2d_forward(*on(device, x, w, bias), g))
    assert launches(device) == before + 1  # the tensor-core kernel ran, not version 3
    close(y, cpu.conv2d_forward(x32, w32, bias.astype(np.float32), g), dtype)
    dx = host(device, b.conv2d_backward_data(*on(device, dy, w), g))
    close(dx, cpu.conv2d_backward_data(dy32, w32, g), dtype)
    dw = host(device, b.conv2d_backward_weight(*on(device, dy, x), g))
    close(dw, cpu.conv2d_backward_weight(dy32, x32, g), dtype)
    assert launches(device) == before + 3
    db = host(device, b.conv2d_backward_bias(on(device, dy)))
    close(db, cpu.conv2d_backward_bias(dy32), dtype)


@devices
@pytest.mark.parametrize("splits", [1, 3])
def test_conv2d_half_backward_weight_splits(device, splits):
    b = get_backend(device)
    g = geometry(CONVS[0])
    x, dy = rounded(g.x_shape, F16, 10), rounded(g.y_shape, F16, 11)
    dw = host(device, b.conv2d_backward_weight(*on(device, dy, x), g, splits=splits))
    close(dw, cpu.conv2d_backward_weight(dy.astype(np.float32), x.astype(np.float32), g), F16)


@devices
def test_conv2d_tf32_is_opt_in(device, monkeypatch):
    b = get_backend(device)
    g = geometry(CONVS[2])
    x, w = rounded(g.x_shape, np.float32, 12), rounded(g.w_shape, np.float32, 13)
    before = launches(device)
    exact = host(device, b.conv2d_forward(*on(device, x, w), None, g))
    assert launches(device) == before  # off by default: version 3, full float32
    monkeypatch.setattr(minicnn.backends, "allow_tf32", True)
    y = host(device, b.conv2d_forward(*on(device, x, w), None, g))
    assert launches(device) == before + 1
    want = cpu.conv2d_forward(tf32(x).astype(np.float64), tf32(w).astype(np.float64), None, g)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, exact, rtol=1e-6, atol=0)  # TF32 did round the inputs


@devices
def test_conv2d_version_errors(device):
    b = get_backend(device)
    g = geometry(CONVS[0])
    x, w = rounded(g.x_shape, F16, 14), rounded(g.w_shape, F16, 15)
    with pytest.raises(
        ValueError, match=r"conv2d_forward: float16 / bfloat16 .* only \(version 4\)"
    ):
        b.conv2d_forward(*on(device, x, w), None, g, version=3)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    with pytest.raises(ValueError, match="version 4 .* not float64"):
        b.conv2d_forward(*on(device, x64, w64), None, g, version=4)


# Several 128 x 128 block tiles with partial edge tiles in every pass (rows, columns and the
# reduction's last slice), and both backward-data variants (unit stride; stride with dilation and
# groups), small enough for the emulator.
TILED = [  # (x shape, K, (R, S), stride, padding, dilation, groups)
    ((2, 16, 10, 10), 136, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 18, 17, 15), 10, (3, 3), (2, 2), (1, 2), (2, 1), 2),
]


def all_passes(device, g, x, w, dy):
    b = get_backend(device)
    y = host(device, b.conv2d_forward(*on(device, x, w), None, g))
    dx = host(device, b.conv2d_backward_data(*on(device, dy, w), g))
    dw = host(device, b.conv2d_backward_weight(*on(device, dy, x), g))
    return y, dx, dw


def references(g, x, w, dy):
    x, w, dy = (a.astype(np.float64) for a in (x, w, dy))
    return (
        cpu.conv2d_forward(x, w, None, g),
        cpu.conv2d_backward_data(dy, w, g),
        cpu.conv2d_backward_weight(dy, x, g),
    )


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", TILED)
def test_conv2d_half_tiled(device, dtype, case):
    g = geometry(case)
    x, w, dy = (
        rounded(g.x_shape, dtype, 16),
        rounded(g.w_shape, dtype, 17),
        rounded(g.y_shape, dtype, 18),
    )
    before = launches(device)
    got = all_passes(device, g, x, w, dy)
    assert launches(device) == before + 3
    for have, want in zip(got, references(g, x, w, dy)):
        close(have, want, dtype)


@devices
@pytest.mark.parametrize("case", TILED)
def test_conv2d_tf32_tiled(device, case, monkeypatch):
    monkeypatch.setattr(minicnn.backends, "allow_tf32", True)
    g = geometry(case)
    x, w, dy = (rounded(s, "tf32", 19 + i) for i, s in enumerate((g.x_shape, g.w_shape, g.y_shape)))
    before = launches(device)
    got = all_passes(device, g, x, w, dy)
    assert launches(device) == before + 3
    for have, want in zip(got, references(g, x, w, dy)):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ---- the NHWC path (conv2d_wmma_nhwc.cuh) -------------------------------------------------------
# Taken when the reduction's channels per group (forward: C/G, backward data: K/G) are a multiple
# of 8 (16-byte vectors of a 16-bit dtype); the NCHW gather otherwise. Channel counts of 8, 16, 24
# and 40 (several vectors a slice, a slice across (r, s), a partial last slice), stride, padding,
# dilation, groups, and a tile with partial edge tiles in rows and columns.
NHWC = [  # (x shape, K, (R, S), stride, padding, dilation, groups)
    ((2, 8, 9, 7), 16, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 16, 8, 8), 8, (1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((2, 16, 7, 9), 16, (3, 2), (2, 1), (1, 0), (2, 1), 2),
    ((1, 24, 11, 11), 40, (5, 5), (3, 3), (2, 2), (1, 2), 1),
    ((2, 40, 10, 10), 136, (3, 3), (1, 1), (1, 1), (1, 1), 1),
]


def nhwc_launches(device):
    return get_backend(device).C._conv2d_wmma_nhwc_launches()


def checked_passes(device, g, dtype, seed, splits=None):
    """The three passes of ``g`` in ``dtype`` against float64 references from the same rounded
    inputs; how many of them ran on the NHWC path."""
    b = get_backend(device)
    x, w, dy = (
        rounded(s, dtype, seed + i) for i, s in enumerate((g.x_shape, g.w_shape, g.y_shape))
    )
    before = nhwc_launches(device)
    y = host(device, b.conv2d_forward(*on(device, x, w), None, g))
    dx = host(device, b.conv2d_backward_data(*on(device, dy, w), g))
    dw = host(device, b.conv2d_backward_weight(*on(device, dy, x), g, splits=splits))
    ran = nhwc_launches(device) - before
    for have, want in zip((y, dx, dw), references(g, x, w, dy)):
        close(have, want, dtype)
    return ran


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", NHWC)
def test_conv2d_half_nhwc_path(device, dtype, case):
    assert checked_passes(device, geometry(case), dtype, 30) == 3


@devices
@pytest.mark.parametrize("splits", [2, 5])
def test_conv2d_half_nhwc_backward_weight_splits(device, splits):
    # 5 splits of N·P·Q = 126: slices of 32, the last split empty
    assert checked_passes(device, geometry(NHWC[0]), F16, 35, splits=splits) == 3


@devices
@pytest.mark.parametrize("dtype", HALF)
def test_conv2d_half_nchw_fallback(device, dtype):
    # forward: C/G = 3 (the RGB stem); backward data: K/G = 12; neither a multiple of 8, and
    # backward weight needs both
    g = geometry(((2, 3, 9, 9), 12, (3, 3), (2, 2), (1, 1), (1, 1), 1))
    assert checked_passes(device, g, dtype, 40) == 0
    # forward on NHWC (C/G = 8), backward data and weight gather (K/G = 4); and forward and
    # backward weight gather (C/G = 3) while backward data is on NHWC (K/G = 8)
    assert checked_passes(device, geometry(((1, 16, 6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 2)),
                          dtype, 50) == 1  # fmt: skip
    assert checked_passes(device, geometry(((1, 6, 6, 6), 16, (3, 3), (1, 1), (1, 1), (1, 1), 2)),
                          dtype, 60) == 1  # fmt: skip


@devices
@pytest.mark.parametrize("case", NHWC[::2])
def test_conv2d_tf32_nhwc(device, case, monkeypatch):
    # C/G and K/G multiples of 4: 16-byte vectors of float, so all three passes take the NHWC path
    # (conv2d.cu hands each its workspace).
    monkeypatch.setattr(minicnn.backends, "allow_tf32", True)
    check_tf32_nhwc(device, geometry(case), 70)


def check_tf32_nhwc(device, g, seed):
    """All three passes in TF32 on the NHWC kernels, against float32 of the same rounded inputs."""
    x, w, dy = (
        rounded(s, "tf32", seed + i) for i, s in enumerate((g.x_shape, g.w_shape, g.y_shape))
    )
    before = nhwc_launches(device)
    got = all_passes(device, g, x, w, dy)
    assert nhwc_launches(device) - before == 3
    for have, want in zip(got, references(g, x, w, dy)):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# Channel counts that take the NHWC kernels' deep slices: the reduction's channels per group a
# multiple of 128 bytes (64 halves, 32 floats: 128-byte slices, each one (r, s) tap; 4 vectors a
# thread share one spatial check), and backward weight with K/G and C/G multiples of 2 vectors
# (32-byte copies). Backward data K/G = 64 unit-stride and strided with groups, forward C/G = 128
# (2 slices a tap in float16, 4 in TF32) and C/G = 32 (TF32 deep, float16 not), next to the other
# mapping in the other passes; partial edge tiles in rows and columns.
TAP = [  # (x shape, K, (R, S), stride, padding, dilation, groups)
    ((1, 32, 6, 6), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 32, 7, 7), 128, (3, 3), (2, 2), (1, 1), (1, 1), 2),
    ((1, 128, 4, 4), 24, (3, 3), (1, 1), (1, 1), (1, 2), 1),
]


@devices
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", TAP)
def test_conv2d_half_nhwc_whole_tap_slices(device, dtype, case):
    assert checked_passes(device, geometry(case), dtype, 80) == 3


@devices
@pytest.mark.parametrize("case", TAP)
def test_conv2d_tf32_nhwc_whole_tap_slices(device, case, monkeypatch):
    monkeypatch.setattr(minicnn.backends, "allow_tf32", True)
    check_tf32_nhwc(device, geometry(case), 90)


@devices
@pytest.mark.parametrize("splits", [2, 5])
def test_conv2d_half_nhwc_backward_weight_deep_copies_splits(device, splits):
    # K/G = 64, C/G = 32: 64-byte copies a thread; N·P·Q = 36 in chunks of one 32-row slice: a
    # partial split, and with 5 splits three empty ones
    assert checked_passes(device, geometry(TAP[0]), F16, 95, splits=splits) == 3
