"""minicnn.reference, the one oracle: every op of the library against it on every device × dtype
(forward and every gradient), and the reference's own backward against finite differences of its
forward, so the oracle itself is pinned.

The device × dtype properties are written once and injected (as Chainer's tests do): the ``device``
fixture runs each on every device of ``minicnn.backends.DEVICES`` that works here (cpu and emu
always, cuda on a GPU machine), the ``dtype`` fixture in float64 (tight) and float32 (tolerance for
float32 accumulation). Shapes are tiny: the emulator runs the CUDA kernels block by block.
"""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.backends import DEVICES, is_available
from minicnn.gradcheck import separated
from conftest import assert_close


@pytest.fixture(params=[d for d in DEVICES if is_available(d)])
def device(request):
    return request.param


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return request.param


def close(got, want, dtype):
    """float64: 1e-10; float32: 1e-4 relative to the largest value (sums of tens of products)."""
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0.0)))
    tol = dict(rtol=1e-4, atol=1e-4 * scale) if dtype == np.float32 else {}
    assert_close(got, want, dtype, **tol)


def run(fn, arrays, device, dtype, grads, seed=0):
    """fn on tensors of ``arrays`` (cast to dtype, on device); (y, dy, [grad of each array with
    grads[i]]) as NumPy, after backward of a random dy. Integer arrays (targets) keep their
    dtype."""
    tensors = [
        None
        if a is None
        else minicnn.tensor(
            a if a.dtype.kind == "i" else a.astype(dtype), device=device, requires_grad=g
        )
        for a, g in zip(arrays, grads)
    ]
    out = fn(*tensors)
    y = out[0] if isinstance(out, tuple) else out
    assert y.device == device and y.dtype == dtype
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    y.backward(minicnn.tensor(dy, device=device))
    return y.numpy(), dy, [t.grad.numpy() for t, g in zip(tensors, grads) if g]


def cast(a, dtype):
    """What the library saw: the array rounded to dtype (the reference then computes in float64)."""
    return None if a is None else a.astype(dtype)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ---- conv2d --------------------------------------------------------------------------------------
# (x shape, w shape, stride, padding, dilation, groups)
CONV_CASES = [
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 4, 7, 5), (6, 2, 3, 2), (2, 1), (1, 2), (2, 1), 2),  # odd sizes, groups, dilation
    ((1, 3, 5, 5), (3, 1, 3, 3), 2, 1, 1, 3),  # depthwise, strided
    ((2, 3, 4, 3), (5, 3, 1, 1), 1, 0, 1, 1),  # 1x1
    ((1, 1, 13, 13), (2, 1, 11, 11), 4, 2, 1, 1),  # 11x11 / 4 (AlexNet conv1)
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d(device, dtype, x_shape, w_shape, stride, padding, dilation, groups):
    x, w, b = rand(*x_shape, seed=1), rand(*w_shape, seed=2), rand(w_shape[0], seed=3)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, dy, grads = run(lambda *t: F.conv2d(*t, **kw), [x, w, b], device, dtype, [True] * 3)
    x, w, b = cast(x, dtype), cast(w, dtype), cast(b, dtype)
    close(y, ref.conv2d_forward(x, w, b, **kw), dtype)
    for got, want in zip(grads, ref.conv2d_backward(dy, x, w, **kw)):
        close(got, want, dtype)


# ---- pooling -------------------------------------------------------------------------------------
MAX_CASES = [
    ((2, 3, 7, 6), dict(kernel_size=3, stride=2)),  # overlapping
    ((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 7, 6), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    ((1, 1, 5, 5), dict(kernel_size=2, stride=3, ceil_mode=True)),  # stride > kernel
    ((1, 1, 2, 2), dict(kernel_size=2, stride=1, padding=1, dilation=3)),  # only padding
]


@pytest.mark.parametrize("shape, kw", MAX_CASES)
def test_max_pool2d(device, dtype, shape, kw):
    x = separated(shape, seed=4)  # no ties
    out = {}

    def fn(t):
        y, out["indices"] = F.max_pool2d(t, **kw, return_indices=True)
        return y

    y, dy, (dx,) = run(fn, [x], device, dtype, [True])
    y_ref, indices_ref = ref.max_pool2d_forward(cast(x, dtype), **kw)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))  # a max is exact in any dtype
    np.testing.assert_array_equal(out["indices"].numpy(), indices_ref)
    close(dx, ref.max_pool2d_backward(dy, cast(x, dtype), **kw), dtype)


AVG_CASES = [
    ((2, 3, 7, 6), dict(kernel_size=3, stride=2)),
    ((1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (
        (1, 2, 6, 7),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    ((1, 1, 5, 6), dict(kernel_size=(1, 3), stride=(4, 1), padding=(0, 1), divisor_override=5)),
]


@pytest.mark.parametrize("shape, kw", AVG_CASES)
def test_avg_pool2d(device, dtype, shape, kw):
    x = rand(*shape, seed=5)
    y, dy, (dx,) = run(lambda t: F.avg_pool2d(t, **kw), [x], device, dtype, [True])
    close(y, ref.avg_pool2d_forward(cast(x, dtype), **kw), dtype)
    close(dx, ref.avg_pool2d_backward(dy, x.shape, **kw), dtype)


@pytest.mark.parametrize(
    "shape, size", [((2, 3, 5, 7), (3, 4)), ((1, 2, 3, 3), (5, 2)), ((1, 2, 6, 5), 1)]
)
def test_adaptive_avg_pool2d(device, dtype, shape, size):
    x = rand(*shape, seed=6)
    y, dy, (dx,) = run(lambda t: F.adaptive_avg_pool2d(t, size), [x], device, dtype, [True])
    close(y, ref.adaptive_avg_pool2d_forward(cast(x, dtype), size), dtype)
    close(dx, ref.adaptive_avg_pool2d_backward(dy, x.shape), dtype)


# ---- local response norm: large alpha too (a small alpha hides a wrong window) -------------------
@pytest.mark.parametrize(
    "shape, size, alpha, beta, k",
    [
        ((2, 7, 3, 3), 5, 1e-4, 0.75, 2.0),  # AlexNet's
        ((2, 5, 2, 3), 4, 3.0, 1.5, 1.0),  # even size: asymmetric window
        ((1, 6, 3, 1), 2, 5.0, 2.0, 0.5),
        ((2, 3, 2, 2), 9, 2.0, 0.75, 1.0),  # window wider than the channels
    ],
)
def test_local_response_norm(device, dtype, shape, size, alpha, beta, k):
    x = rand(*shape, seed=7)
    args = (size, alpha, beta, k)
    y, dy, (dx,) = run(lambda t: F.local_response_norm(t, *args), [x], device, dtype, [True])
    close(y, ref.local_response_norm_forward(cast(x, dtype), *args), dtype)
    close(dx, ref.local_response_norm_backward(dy, cast(x, dtype), *args), dtype)


# ---- batch norm: training (with the running-stat update) and inference ---------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3, 2), (1, 2, 3, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(device, dtype, shape, training):
    C = shape[1]
    x, w, b = rand(*shape, seed=8) * 2 + 0.5, rand(C, seed=9), rand(C, seed=10)
    rm, rv = rand(C, seed=11) * 0.3, np.random.default_rng(12).random(C) + 0.5
    buffers = [minicnn.tensor(a.astype(dtype), device=device) for a in (rm, rv)]

    def fn(xt, wt, bt):
        return F.batch_norm(xt, *buffers, wt, bt, training=training, momentum=0.3, eps=1e-3)

    y, dy, grads = run(fn, [x, w, b], device, dtype, [True] * 3)
    x, w, b, rm, rv = (cast(a, dtype) for a in (x, w, b, rm, rv))
    y_ref, rm_ref, rv_ref = ref.batch_norm_forward(x, rm, rv, w, b, training, 0.3, 1e-3)
    close(y, y_ref, dtype)
    close(buffers[0].numpy(), rm_ref, dtype)
    close(buffers[1].numpy(), rv_ref, dtype)
    for got, want in zip(grads, ref.batch_norm_backward(dy, x, rm, rv, w, training, 1e-3)):
        close(got, want, dtype)


# ---- relu, dropout, linear -----------------------------------------------------------------------
def test_relu(device, dtype):
    x = separated((2, 3, 4, 5), seed=13)  # no exact zeros (the kink)
    y, dy, (dx,) = run(F.relu, [x], device, dtype, [True])
    close(y, ref.relu_forward(cast(x, dtype)), dtype)
    close(dx, ref.relu_backward(dy, cast(x, dtype)), dtype)


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_dropout_given_its_mask(device, dtype, p):
    x = rand(3, 4, 5, seed=14)
    minicnn.manual_seed(21)
    y, dy, (dx,) = run(lambda t: F.dropout(t, p), [x], device, dtype, [True])
    keep = minicnn.random.manual_seed(21).random(x.shape) >= p  # the same stream, by hand
    if device != "cpu":  # a Philox kernel keyed by one draw of the same generator
        minicnn.manual_seed(21)
        mask = minicnn.random.philox_dropout_mask(x.size, p, np.float64, minicnn.random.draw_seed())
        keep = mask.reshape(x.shape) != 0
    close(y, ref.dropout_forward(cast(x, dtype), keep, p), dtype)
    close(dx, ref.dropout_backward(dy, keep, p), dtype)


@pytest.mark.parametrize("x_shape, O", [((3, 4), 5), ((2, 3, 4), 3), ((1, 1), 1), ((6,), 2)])
def test_linear(device, dtype, x_shape, O):
    x, w, b = rand(*x_shape, seed=15), rand(O, x_shape[-1], seed=16), rand(O, seed=17)
    y, dy, grads = run(F.linear, [x, w, b], device, dtype, [True] * 3)
    x, w, b = cast(x, dtype), cast(w, dtype), cast(b, dtype)
    close(y, ref.linear_forward(x, w, b), dtype)
    for got, want in zip(grads, ref.linear_backward(dy, x, w)):
        close(got, want, dtype)


# ---- cross-entropy and nll_loss ------------------------------------------------------------------
def index_target(shape, seed, ignore_index):
    """Class indices for an input of ``shape``, the first one set to ignore_index."""
    C = shape[0 if len(shape) == 1 else 1]
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    t = np.random.default_rng(seed).integers(0, C, tshape).astype(np.int64)
    if t.size > 1:
        t.reshape(-1)[0] = ignore_index
    return t


LOSS_CASES = [  # (input shape, weighted, ignore_index, reduction, label_smoothing)
    ((4, 5), False, -100, "mean", 0.0),
    ((4, 5), True, 1, "mean", 0.25),
    ((3, 4, 2), True, -100, "sum", 0.1),
    ((2, 3, 2, 2), False, 0, "none", 0.3),
    ((5,), True, -100, "mean", 0.0),  # unbatched
]


@pytest.mark.parametrize("shape, weighted, ignore_index, reduction, ls", LOSS_CASES)
def test_cross_entropy_index_targets(device, dtype, shape, weighted, ignore_index, reduction, ls):
    x, t = rand(*shape, seed=18) * 2, index_target(shape, 19, ignore_index)
    w = np.random.default_rng(20).random(x.shape[0 if x.ndim == 1 else 1]) + 0.25
    w = w if weighted else None
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    y, dy, (dx,) = run(
        lambda a, b, c: F.cross_entropy(a, b, c, **kw, label_smoothing=ls),
        [x, t, w],
        device,
        dtype,
        [True, False, False],
    )
    x, w = cast(x, dtype), cast(w, dtype)
    close(y, ref.cross_entropy_forward(x, t, w, **kw, label_smoothing=ls), dtype)
    dx_ref, dt_ref = ref.cross_entropy_backward(dy, x, t, w, **kw, label_smoothing=ls)
    close(dx, dx_ref, dtype)
    assert dt_ref is None
    y, dy, (dx,) = run(
        lambda a, b, c: F.nll_loss(a, b, c, **kw), [x, t, w], device, dtype, [True, False, False]
    )
    close(y, ref.nll_loss_forward(x, t, w, **kw), dtype)
    close(dx, ref.nll_loss_backward(dy, x, t, w, **kw), dtype)


@pytest.mark.parametrize(
    "shape, weighted, reduction, ls",
    [((4, 5), False, "mean", 0.0), ((3, 4, 2), True, "none", 0.2), ((5,), True, "sum", 0.1)],
)
def test_cross_entropy_probability_targets(device, dtype, shape, weighted, reduction, ls):
    x, q = rand(*shape, seed=21), np.random.default_rng(22).random(shape)
    w = np.random.default_rng(23).random(shape[0 if len(shape) == 1 else 1]) + 0.5
    w = w if weighted else None
    kw = dict(reduction=reduction, label_smoothing=ls)
    y, dy, (dx, dq) = run(
        lambda a, b, c: F.cross_entropy(a, b, c, **kw),
        [x, q, w],
        device,
        dtype,
        [True, True, False],
    )
    x, q, w = cast(x, dtype), cast(q, dtype), cast(w, dtype)
    close(y, ref.cross_entropy_forward(x, q, w, **kw), dtype)
    for got, want in zip((dx, dq), ref.cross_entropy_backward(dy, x, q, w, **kw)):
        close(got, want, dtype)


# ---- the oracle pinned: its backward against central differences of its forward ------------------
def directional_check(forward, backward, arrays, wrt, seed=0, eps=1e-6):
    """For each input i in ``wrt``: <dy, (f(a + εv) − f(a − εv)) / 2ε> = <backward(dy)[i], v>
    along a random direction v, in float64."""
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(np.shape(forward(*arrays)))
    grads = backward(dy, *arrays)
    for i in wrt:
        v = rng.standard_normal(arrays[i].shape)
        plus, minus = list(arrays), list(arrays)
        plus[i], minus[i] = arrays[i] + eps * v, arrays[i] - eps * v
        numeric = np.sum(dy * (forward(*plus) - forward(*minus))) / (2 * eps)
        analytic = np.sum(grads[i] * v)
        assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-8), f"input {i}"


def test_reference_conv2d_backward_is_its_derivative():
    kw = dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)
    arrays = [rand(2, 4, 5, 6, seed=1), rand(4, 2, 3, 2, seed=2), rand(4, seed=3)]
    directional_check(
        lambda x, w, b: ref.conv2d_forward(x, w, b, **kw),
        lambda dy, x, w, b: ref.conv2d_backward(dy, x, w, **kw),
        arrays,
        (0, 1, 2),
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=(2, 3), stride=1, padding=1, dilation=(2, 1)),
    ],
)
def test_reference_max_pool2d_backward_is_its_derivative(kw):
    directional_check(
        lambda x: ref.max_pool2d_forward(x, **kw)[0],
        lambda dy, x: (ref.max_pool2d_backward(dy, x, **kw),),
        [separated((2, 2, 6, 5), seed=4)],
        (0,),
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=2, divisor_override=3),
    ],
)
def test_reference_avg_pools_backward_is_their_derivative(kw):
    x = rand(2, 2, 6, 5, seed=5)
    directional_check(
        lambda x: ref.avg_pool2d_forward(x, **kw),
        lambda dy, x: (ref.avg_pool2d_backward(dy, x.shape, **kw),),
        [x],
        (0,),
    )
    directional_check(
        lambda x: ref.adaptive_avg_pool2d_forward(x, (4, 3)),
        lambda dy, x: (ref.adaptive_avg_pool2d_backward(dy, x.shape),),
        [x],
        (0,),
    )


@pytest.mark.parametrize(
    "size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (4, 3.0, 1.5, 1.0), (2, 5.0, 2.0, 0.5)]
)
def test_reference_lrn_backward_is_its_derivative(size, alpha, beta, k):
    args = (size, alpha, beta, k)
    directional_check(
        lambda x: ref.local_response_norm_forward(x, *args),
        lambda dy, x: (ref.local_response_norm_backward(dy, x, *args),),
        [rand(2, 6, 2, 3, seed=6)],
        (0,),
    )


@pytest.mark.parametrize("training", [True, False])
def test_reference_batch_norm_backward_is_its_derivative(training):
    rm, rv = rand(3, seed=7), np.random.default_rng(8).random(3) + 0.5
    directional_check(
        lambda x, w, b: ref.batch_norm_forward(x, rm, rv, w, b, training, 0.1, 1e-3)[0],
        lambda dy, x, w, b: ref.batch_norm_backward(dy, x, rm, rv, w, training, 1e-3),
        [rand(3, 3, 2, 2, seed=9) * 2, rand(3, seed=10), rand(3, seed=11)],
        (0, 1, 2),
    )


def test_reference_relu_dropout_linear_backward_are_their_derivatives():
    x = separated((3, 4), seed=12)
    directional_check(ref.relu_forward, lambda dy, x: (ref.relu_backward(dy, x),), [x], (0,))
    keep = np.random.default_rng(13).random(x.shape) >= 0.4
    directional_check(
        lambda x: ref.dropout_forward(x, keep, 0.4),
        lambda dy, x: (ref.dropout_backward(dy, keep, 0.4),),
        [x],
        (0,),
    )
    directional_check(
        ref.linear_forward,
        lambda dy, x, w, b: ref.linear_backward(dy, x, w),
        [rand(2, 3, 4, seed=14), rand(5, 4, seed=15), rand(5, seed=16)],
        (0, 1, 2),
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_losses_backward_are_their_derivatives(reduction):
    x, t = rand(3, 4, 2, seed=17) * 2, index_target((3, 4, 2), 18, 1)
    w = np.random.default_rng(19).random(4) + 0.5
    kw = dict(reduction=reduction)
    directional_check(
        lambda x: ref.cross_entropy_forward(x, t, w, 1, label_smoothing=0.2, **kw),
        lambda dy, x: ref.cross_entropy_backward(dy, x, t, w, 1, label_smoothing=0.2, **kw)[:1],
        [x],
        (0,),
    )
    directional_check(
        lambda x: ref.nll_loss_forward(x, t, w, 1, **kw),
        lambda dy, x: (ref.nll_loss_backward(dy, x, t, w, 1, **kw),),
        [x],
        (0,),
    )
    q = np.random.default_rng(20).random(x.shape)
    directional_check(
        lambda x, q: ref.cross_entropy_forward(x, q, w, label_smoothing=0.3, **kw),
        lambda dy, x, q: ref.cross_entropy_backward(dy, x, q, w, label_smoothing=0.3, **kw),
        [x, q],
        (0, 1),
    )


def test_reference_pool_output_size_counts_torchs_windows():
    """AlexNet's 55 → 27 → 13 → 6 and the ceil_mode rule (a last window may not start in the
    right padding), against the closed form of minicnn's ops."""
    assert [ref.pool_output_size(n, 3, 2, 0) for n in (55, 27, 13)] == [27, 13, 6]
    assert ref.pool_output_size(5, 3, 2, 1, ceil_mode=True) == 3
    assert ref.pool_output_size(7, 2, 2, 0, ceil_mode=True) == 4
    for n, R, s, p, d, ceil in np.ndindex(9, 4, 4, 2, 3, 2):
        n, R, s, d = n + 1, R + 1, s + 1, d + 1
        if p > R // 2 or d * (R - 1) + 1 > n + 2 * p:
            continue
        span = n + 2 * p - d * (R - 1) - 1
        closed = (span + (s - 1 if ceil else 0)) // s + 1
        closed -= 1 if ceil and (closed - 1) * s >= n + p else 0
        assert ref.pool_output_size(n, R, s, p, d, bool(ceil)) == closed
