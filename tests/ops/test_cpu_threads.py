"""The cpu device's threaded C++ passes (issue 16): each against a NumPy formula, and the same
result bit for bit at any thread count (the README's promise)."""

import numpy as np
import pytest

from minicnn.backends import _np_blas, _np_conv
from minicnn.ops.geometry import Conv2dGeometry
from tests.kernel_devices import cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")
needs_blas = pytest.mark.skipif(_np_blas._BLAS_MODE is None, reason="NumPy's BLAS was not found")


# (x shape, w shape, stride, padding, dilation, groups): odd maps, panels spanning images (2x2
# maps), 1x1 (the columns are x), strided 1x1, grouped, dilated, a layer wider than one panel.
CONV_CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((5, 8, 2, 2), (6, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((3, 6, 5, 5), (10, 6, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((3, 6, 6, 5), (4, 6, 1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((2, 4, 9, 8), (6, 2, 5, 5), (2, 1), (2, 3), (1, 1), 2),
    ((2, 3, 11, 10), (5, 3, 3, 2), (1, 2), (2, 0), (2, 3), 1),
    ((4, 16, 24, 24), (8, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),
]


def _conv_args(case, dtype, bias=True, seed=0):
    xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    g = Conv2dGeometry.of(xs, ws, stride, padding, dilation, groups)
    return x, w, b, g


def _reference(x, w, b, g):
    """y[n, k] = Σ w[k] · windows of x, from the NumPy im2col (per-image layout)."""
    cols = _np_conv.im2col_reference(x, g.R, g.S, g.stride, g.padding, g.dilation)
    cols = cols.reshape(g.N, g.G, -1, g.P * g.Q).astype(np.float64)  # (N, G, Cg R S, PQ)
    wg = w.reshape(g.G, g.K // g.G, -1).astype(np.float64)  # (G, Kg, Cg R S)
    y = np.einsum("gkr,ngrp->ngkp", wg, cols).reshape(g.N, g.K, g.P, g.Q)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


@needs_blas
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_forward_panels_match_numpy(case, dtype):
    x, w, b, g = _conv_args(case, dtype)
    fn = getattr(_C, "conv2d_forward_f32" if dtype == np.float32 else "conv2d_forward_f64")
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    with threads(2):
        y = fn(x, w, b, g)
        np.testing.assert_allclose(y, _reference(x, w, b, g), **tol)
        np.testing.assert_allclose(fn(x, w, None, g), _reference(x, w, None, g), **tol)
        chunks = _np_conv.conv2d_forward_chunks(x, w, b, g)
    np.testing.assert_allclose(y, chunks, **tol)


@needs_blas
@pytest.mark.parametrize("case", CONV_CASES[1::2])
def test_conv_forward_panels_do_not_depend_on_the_thread_count(case):
    x, w, b, g = _conv_args(case, np.float32)
    results = []
    for n in (1, 2, 3):
        with threads(n):
            results.append(_np_conv.conv2d_forward(x, w, b, g))
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


@needs_blas
def test_conv_forward_panels_refuse_wrong_shapes():
    x, w, b, g = _conv_args(CONV_CASES[0], np.float32)
    with pytest.raises(ValueError, match=r"conv2d_forward: w must have shape \(4, 3, 3, 3\)"):
        _C.conv2d_forward_f32(x, w[:, :2], b, g)
    with pytest.raises(ValueError, match=r"conv2d_forward: x must have shape"):
        _C.conv2d_forward_f32(x[:1], w, b, g)
    with pytest.raises(ValueError, match=r"conv2d_forward: bias must have shape \(4\)"):
        _C.conv2d_forward_f32(x, w, b[:3], g)


# ---- fused optimizer updates (csrc/cpu/optim.h) against minicnn.optim's NumPy updates ----------
def _group(dtype, sizes=((3, 4), (70000,), (1,)), seed=2):
    """Parameters (one spans several slices of the pool), with a gradient each."""
    import minicnn

    rng = np.random.default_rng(seed)
    params = [
        minicnn.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in sizes
    ]
    return params, rng


def _set_grads(params, rng):
    for p in params:
        p.grad = type(p)(rng.standard_normal(p.shape).astype(p.dtype))


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-4),
]


@pytest.mark.parametrize("hyper", SGD_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_update_matches_torch_optim_sgd_bit_for_bit(hyper, dtype):
    from minicnn.optim import SGD

    params, rng = _group(dtype)
    ours = [p.numpy().copy() for p in params]
    start = ours[1].copy()
    bufs = [np.zeros_like(a) for a in ours]
    fn = getattr(_C, "sgd_update_f32" if dtype == np.float32 else "sgd_update_f64")
    opt = SGD(params, **hyper)
    h = dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False) | hyper
    for step in range(3):
        _set_grads(params, rng)
        grads = [p.grad.numpy() for p in params]
        with threads(1 + step % 2):
            fn(ours, grads, bufs, first=step == 0, **h)
        opt.step()
        for a, p in zip(ours, params):
            np.testing.assert_array_equal(a, p.numpy())
    assert (ours[1] != start).mean() > 0.99  # the update did move the parameters


ADAM_CASES = [
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=3e-3, eps=1e-6, amsgrad=True)),
]


@pytest.mark.parametrize("name,hyper", ADAM_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_update_matches_torch_optim_adam_bit_for_bit(name, hyper, dtype):
    import minicnn.optim as optim

    params, rng = _group(dtype)
    ours = [p.numpy().copy() for p in params]
    start = ours[1].copy()
    m, v = [np.zeros_like(a) for a in ours], [np.zeros_like(a) for a in ours]
    vmax = [np.zeros_like(a) for a in ours] if hyper.get("amsgrad") else None
    fn = getattr(_C, "adam_update_f32" if dtype == np.float32 else "adam_update_f64")
    opt = getattr(optim, name)(params, **hyper)
    group = opt.param_groups[0]
    (b1, b2), decoupled = group["betas"], name == "AdamW"
    for step in range(1, 4):
        _set_grads(params, rng)
        grads = [p.grad.numpy() for p in params]
        with threads(1 + step % 2):
            fn(
                ours,
                grads,
                m,
                v,
                vmax,
                step,
                group["lr"],
                b1,
                b2,
                group["eps"],
                group["weight_decay"],
                decoupled,
            )
        opt.step()
        for a, p in zip(ours, params):
            np.testing.assert_array_equal(a, p.numpy())
    assert (ours[1] != start).mean() > 0.99  # the update did move the parameters


def test_fused_updates_take_read_only_gradients():
    p, g = np.ones(4, np.float32), np.full(4, 2.0, np.float32)
    g.flags.writeable = False
    _C.sgd_update_f32([p], [g], [], 0.5, 0.0, 0.0, 0.0, False, False)
    np.testing.assert_array_equal(p, np.zeros(4, np.float32))
    p.flags.writeable = False
    with pytest.raises(ValueError, match=r"sgd_update: params\[0\] must be .*writeable"):
        _C.sgd_update_f32([p], [g], [], 0.5, 0.0, 0.0, 0.0, False, False)


def test_fused_updates_refuse_mismatched_lists():
    p = [np.zeros(5, np.float32), np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match=r"sgd_update: grads must have one array per parameter"):
        _C.sgd_update_f32(p, p[:1], p, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"sgd_update: bufs\[1\] must be .* with 3 elements"):
        _C.sgd_update_f32(p, p, [p[0], np.zeros(4, np.float32)], 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match=r"adam_update: exp_avgs\[0\] must be .*dtype"):
        _C.adam_update_f32(p, p, [np.zeros(5), p[1]], p, None, 1, 0.1, 0.9, 0.99, 1e-8, 0, False)
    with pytest.raises(ValueError, match=r"adam_update: step must be >= 1, got 0"):
        _C.adam_update_f32(p, p, p, p, None, 0, 0.1, 0.9, 0.99, 1e-8, 0, False)


def _training_step_grads(n_threads):
    import minicnn
    import minicnn.functional as F
    from minicnn import models

    rng = np.random.default_rng(5)
    minicnn.manual_seed(0)
    model = models.resnet20(num_classes=10)
    model.train()
    x = minicnn.tensor(rng.standard_normal((6, 3, 16, 16)).astype(np.float32))
    y = minicnn.tensor(rng.integers(0, 10, 6))
    with threads(n_threads):
        F.cross_entropy(model(x), y).backward()
    return [p.grad.numpy() for p in model.parameters()]


def test_a_training_step_does_not_depend_on_the_thread_count_when_deterministic():
    """The README's promise: in deterministic mode the same numbers at any thread count."""
    before = _C.get_deterministic()
    _C.set_deterministic(True)
    try:
        one = _training_step_grads(1)
        for n in (2, 3):
            for a, b in zip(one, _training_step_grads(n)):
                np.testing.assert_array_equal(a, b)
    finally:
        _C.set_deterministic(before)


# ---- residual adds and channel concatenation (csrc/cpu/arrays.h) --------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_add_and_concat_are_numpys(dtype):
    from minicnn.backends import get_backend

    cpu = get_backend("cpu")
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((4, 33, 17, 19)).astype(dtype) for _ in range(2))
    parts = [rng.standard_normal((4, c, 17, 19)).astype(dtype) for c in (5, 1, 40)]
    for n in (1, 2, 3):
        with threads(n):
            np.testing.assert_array_equal(
                _C.add_f32(a, b) if dtype == np.float32 else _C.add_f64(a, b), a + b
            )
            np.testing.assert_array_equal(cpu.add(a, b), a + b)
            cat = cpu.concatenate(parts, 1)
            np.testing.assert_array_equal(cat, np.concatenate(parts, axis=1))
            np.testing.assert_array_equal(cpu.concatenate(parts, -3), cat)
    # what the threaded paths do not take goes to NumPy, with NumPy's result and errors
    np.testing.assert_array_equal(cpu.add(a, b[:, :1]), a + b[:, :1])
    np.testing.assert_array_equal(cpu.add(a, 2.0), a + 2.0)
    with pytest.raises(ValueError):
        cpu.concatenate([parts[0], parts[1][:2]], 1)


def test_threaded_concat_and_add_refuse_mismatched_shapes():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"concat_channels: parts\[1\] must match parts\[0\]"):
        _C.concat_channels_f32([x, np.zeros((2, 3, 5), np.float32)])
    with pytest.raises(ValueError, match=r"add: a and b must have the same shape"):
        _C.add_f32(x, x[:1])


def test_residual_add_and_cat_gradients_through_the_threaded_paths():
    import minicnn

    rng = np.random.default_rng(4)
    x = minicnn.tensor(rng.standard_normal((2, 64, 16, 16)).astype(np.float32), requires_grad=True)
    y = minicnn.tensor(rng.standard_normal((2, 64, 16, 16)).astype(np.float32), requires_grad=True)
    out = minicnn.cat([x + y, x], 1)
    np.testing.assert_array_equal(
        out.numpy(), np.concatenate([x.numpy() + y.numpy(), x.numpy()], 1)
    )
    (out * out).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * out.numpy()[:, :64] + 2 * x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), 2 * out.numpy()[:, :64], rtol=1e-6)
