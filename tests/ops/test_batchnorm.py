"""batch_norm: minicnn.reference's loops (forward and backward), running-stat updates (unbiased
variance), gradcheck in both modes, 2-D to 5-D inputs, float32, errors, optional torch (incl.
running stats after 3 steps)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck, separated

from conftest import assert_close
from kernel_devices import ALL_DEVICES


def _make(shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 0.5
    return [
        v.astype(dtype)
        for v in (
            x,
            rng.standard_normal(C) * 0.3,
            rng.random(C) + 0.5,
            rng.standard_normal(C),
            rng.standard_normal(C),
        )
    ]


def _t(a, grad=False, device="cpu"):
    return None if a is None else minicnn.tensor(a, device=device, requires_grad=grad)


# ---- forward and running statistics -------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 2, 3), (2, 2, 2, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_forward_and_running_stats_match_naive_loops(shape, training, affine):
    x, rm, rv, w, b = _make(shape, seed=len(shape))
    if not affine:
        w = b = None
    RM, RV, X, W, B = _t(rm), _t(rv), _t(x, True), _t(w, affine), _t(b, affine)
    y = F.batch_norm(X, RM, RV, W, B, training=training, momentum=0.3, eps=1e-3)
    y_ref, rm_ref, rv_ref = ref.batch_norm_forward(x, rm, rv, w, b, training, 0.3, 1e-3)
    assert_close(y, y_ref)
    assert_close(RM, rm_ref if training else rm)
    assert_close(RV, rv_ref if training else rv)
    dy = np.random.default_rng(1).standard_normal(shape)
    y.backward(dy)
    dx, dw, db = ref.batch_norm_backward(dy, x, rm, rv, w, training, 1e-3)
    assert_close(X.grad, dx)
    if affine:
        assert_close(W.grad, dw)
        assert_close(B.grad, db)


def test_running_stats_are_updated_in_place_with_unbiased_variance():
    x = np.array([[1.0, 10.0], [3.0, 20.0], [8.0, 60.0]])  # (N=3, C=2)
    RM, RV = (
        minicnn.tensor([0.0, 1.0], dtype="float64"),
        minicnn.tensor([1.0, 2.0], dtype="float64"),
    )
    storage_mean, storage_var = RM._data, RV._data
    with minicnn.no_grad():  # the update happens under no_grad too (it is not part of the graph)
        F.batch_norm(minicnn.tensor(x), RM, RV, training=True, momentum=0.25)
    assert RM._data is storage_mean and RV._data is storage_var
    mean = x.mean(0)
    unbiased = x.var(0, ddof=1)
    np.testing.assert_allclose(RM.numpy(), 0.75 * np.array([0.0, 1.0]) + 0.25 * mean, rtol=1e-14)
    np.testing.assert_allclose(
        RV.numpy(), 0.75 * np.array([1.0, 2.0]) + 0.25 * unbiased, rtol=1e-14
    )
    np.testing.assert_allclose(unbiased, [13.0, 700.0])  # the biased ones would be 26/3, 1400/3


def test_momentum_zero_and_one():
    x, rm, rv, _, _ = _make((5, 2, 3), seed=5)
    RM, RV = _t(rm), _t(rv)
    F.batch_norm(_t(x), RM, RV, training=True, momentum=0.0)
    assert_close(RM, rm)
    assert_close(RV, rv)
    F.batch_norm(_t(x), RM, RV, training=True, momentum=1.0)
    assert_close(RM, x.mean(axis=(0, 2)))
    assert_close(RV, x.transpose(1, 0, 2).reshape(2, -1).var(axis=1, ddof=1))


def test_training_without_running_stats_uses_batch_stats_and_updates_nothing():
    x, _, _, w, b = _make((4, 3, 2), seed=6)
    y = F.batch_norm(_t(x), None, None, _t(w), _t(b), training=True)
    assert_close(y, ref.batch_norm_forward(x, None, None, w, b, True, 0.1, 1e-5)[0])


def test_eval_is_not_training_and_leaves_buffers_alone():
    x, rm, rv, w, b = _make((4, 3), seed=7)
    RM, RV = _t(rm), _t(rv)
    y = F.batch_norm(_t(x), RM, RV, _t(w), _t(b))  # training=False is the default
    assert_close(y, w * (x - rm) / np.sqrt(rv + 1e-5) + b)
    assert_close(RM, rm)
    assert_close(RV, rv)


@given(
    N=st.integers(1, 3),
    C=st.integers(1, 3),
    L=st.integers(1, 3),
    training=st.booleans(),
    momentum=st.floats(0.0, 1.0),
    eps=st.floats(1e-5, 1e-1),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_against_reference(N, C, L, training, momentum, eps, seed):
    if training and N * L == 1:
        N = 2
    x, rm, rv, w, b = _make((N, C, L), seed)
    RM, RV = _t(rm), _t(rv)
    y = F.batch_norm(_t(x), RM, RV, _t(w), _t(b), training=training, momentum=momentum, eps=eps)
    y_ref, rm_ref, rv_ref = ref.batch_norm_forward(x, rm, rv, w, b, training, momentum, eps)
    assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    if training:
        assert_close(RM, rm_ref)
        assert_close(RV, rv_ref)


# ---- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2), (3, 2, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(shape, training):
    C = shape[1]
    inputs = (
        minicnn.tensor(separated(shape, seed=1, scale=2.0), requires_grad=True),
        minicnn.tensor(separated((C,), seed=2) + 1.0, requires_grad=True),
        minicnn.tensor(separated((C,), seed=3), requires_grad=True),
    )
    rm, rv = np.linspace(-0.5, 0.5, C), np.linspace(0.5, 2.0, C)

    def fn(x, w, b):  # fresh buffers each call: finite differences must not see updated stats
        return F.batch_norm(x, _t(rm), _t(rv), w, b, training=training, momentum=0.1, eps=1e-3)

    result = gradcheck(fn, inputs, tol=1e-6)
    assert result, str(result)


def test_gradcheck_without_affine_and_without_running_stats():
    x = minicnn.tensor(separated((3, 2, 3), seed=4), requires_grad=True)
    result = gradcheck(lambda t: F.batch_norm(t, None, None, training=True), (x,), tol=1e-6)
    assert result, str(result)


def test_eval_backward_is_the_affine_map():
    x, rm, rv, w, b = _make((3, 2, 2), seed=8)
    X, W, B = _t(x, True), _t(w, True), _t(b, True)
    dy = np.random.default_rng(0).standard_normal(x.shape)
    F.batch_norm(X, _t(rm), _t(rv), W, B, eps=1e-4).backward(dy)
    invstd = 1 / np.sqrt(rv + 1e-4)
    assert_close(X.grad, dy * (w * invstd)[None, :, None])
    assert_close(W.grad, (dy * (x - rm[None, :, None]) * invstd[None, :, None]).sum(axis=(0, 2)))
    assert_close(B.grad, dy.sum(axis=(0, 2)))


def test_training_gradients_sum_to_zero_per_channel():
    """Batch statistics make y invariant to a per-channel shift of x: Σ dx over (N, L) is 0."""
    x, rm, rv, w, b = _make((4, 3, 5), seed=9)
    X = _t(x, True)
    F.batch_norm(X, _t(rm), _t(rv), _t(w), _t(b), training=True).backward(
        np.random.default_rng(1).standard_normal(x.shape)
    )
    np.testing.assert_allclose(X.grad.numpy().sum(axis=(0, 2)), 0, atol=1e-12)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_float32_agrees_with_float64_and_keeps_dtype(device):
    for training in (True, False):
        out = {}
        for dtype in (np.float64, np.float32):
            x, rm, rv, w, b = _make((4, 3, 3, 3), seed=10, dtype=dtype)
            X, W, B = (_t(a, True, device) for a in (x, w, b))
            RM, RV = _t(rm, device=device), _t(rv, device=device)
            y = F.batch_norm(X, RM, RV, W, B, training=training)
            dy = np.linspace(-1, 1, y.numel()).reshape(y.shape).astype(dtype)
            y.backward(minicnn.tensor(dy, device=device))
            out[dtype] = (y, X.grad, W.grad, B.grad, RM, RV)
        for a32, a64 in zip(out[np.float32], out[np.float64]):
            assert a32.dtype == np.float32
            assert_close(a32, a64, dtype=np.float32, rtol=1e-4, atol=1e-4)


def test_empty_batch_is_returned_and_leaves_running_stats():
    RM, RV = minicnn.zeros(3), minicnn.ones(3)
    y = F.batch_norm(minicnn.zeros(0, 3, 2), RM, RV, training=True)
    assert y.shape == (0, 3, 2)
    assert_close(RM, np.zeros(3))
    assert_close(RV, np.ones(3))


# ---- errors -------------------------------------------------------------------------------------
def test_one_value_per_channel_in_training():
    for shape in [(1, 3), (1, 3, 1), (1, 3, 1, 1)]:
        with pytest.raises(
            ValueError,
            match=r"batch_norm: expected more than 1 value per channel "
            r"when training, got input size \(1, 3",
        ):
            F.batch_norm(minicnn.randn(*shape), minicnn.zeros(3), minicnn.ones(3), training=True)
    # fine in evaluation mode (running statistics are used)
    F.batch_norm(minicnn.randn(1, 3), minicnn.zeros(3), minicnn.ones(3), training=False)


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        (
            dict(running_mean=minicnn.zeros(4)),
            ValueError,
            r"running_mean must have shape \(3,\).*got shape \(4,\)",
        ),
        (dict(running_var=minicnn.ones(3, 1)), ValueError, r"running_var must have shape \(3,\)"),
        (dict(weight=minicnn.ones(2)), ValueError, r"weight must have shape \(3,\)"),
        (dict(bias=minicnn.ones(6)), ValueError, r"bias must have shape \(3,\)"),
        (
            dict(weight=minicnn.ones(3, dtype="float64")),
            TypeError,
            "expected one dtype.*weight float64",
        ),
        (dict(running_mean=minicnn.zeros(3, dtype="float64")), TypeError, "expected one dtype"),
        (
            dict(running_var=None),
            ValueError,
            "running_mean and running_var must either both be None",
        ),
        (
            dict(running_mean=None, running_var=None),
            ValueError,
            "running_mean and running_var must be given in evaluation mode",
        ),
        (dict(weight=np.ones(3, np.float32)), TypeError, "weight must be a Tensor or None"),
        (dict(eps=-1e-3), ValueError, "eps must be non-negative, got -0.001"),
        (dict(eps=0.0, training=True), ValueError, "eps must be positive, got 0.0"),
        (dict(momentum="0.1"), TypeError, "momentum must be a real number"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    args = dict(running_mean=minicnn.zeros(3), running_var=minicnn.ones(3))
    args.update(kwargs)
    with pytest.raises(err, match="batch_norm: " + match):
        F.batch_norm(minicnn.randn(4, 3, 2), **args)


def test_bad_input():
    with pytest.raises(ValueError, match=r"batch_norm: input must be 2-D or more.*\(3,\)"):
        F.batch_norm(minicnn.randn(3), minicnn.zeros(3), minicnn.ones(3))
    with pytest.raises(TypeError, match="batch_norm: input must be float32 or float64"):
        F.batch_norm(minicnn.tensor([[1, 2], [3, 4]]), minicnn.zeros(2), minicnn.ones(2))
    with pytest.raises(TypeError, match="batch_norm: input must be a Tensor"):
        F.batch_norm(np.ones((2, 2)), minicnn.zeros(2), minicnn.ones(2))


# ---- optional: torch ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5), (2, 3, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_matches_torch_over_three_steps(shape, training):
    """Three forward/backward steps on one set of buffers: outputs, all gradients, running stats."""
    torch = pytest.importorskip("torch")
    _, rm, rv, w, b = _make(shape, seed=11)
    RM, RV, W, B = _t(rm), _t(rv), _t(w, True), _t(b, True)
    TRM, TRV = torch.tensor(rm), torch.tensor(rv)
    TW, TB = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    rng = np.random.default_rng(12)
    for step in range(3):
        x, dy = rng.standard_normal(shape) * (step + 1), rng.standard_normal(shape)
        X, TX = _t(x, True), torch.tensor(x, requires_grad=True)
        y = F.batch_norm(X, RM, RV, W, B, training=training, momentum=0.2, eps=1e-4)
        yt = torch.nn.functional.batch_norm(
            TX, TRM, TRV, TW, TB, training=training, momentum=0.2, eps=1e-4
        )
        y.backward(dy)
        yt.backward(torch.tensor(dy))
        assert_close(y, yt.detach().numpy())
        assert_close(X.grad, TX.grad.numpy())
    assert_close(W.grad, TW.grad.numpy())
    assert_close(B.grad, TB.grad.numpy())
    assert_close(RM, TRM.numpy())
    assert_close(RV, TRV.numpy())


# ---- the C++ kernels (csrc/cpu/batchnorm.h) against the NumPy versions of the backend ------------
from minicnn.backends import _np_norm  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (2, 1, 1, 1), (1, 5, 3, 1)])
def test_cpp_kernels_match_numpy_reference(shape, affine, dtype):
    if _np_norm._C is None:
        pytest.skip("minicnn._C_cpu is not built")
    x, rm, rv, w, b = _make(shape, 11, dtype)
    w, b = (w, b) if affine else (None, None)
    dout = np.random.default_rng(12).standard_normal(shape).astype(dtype)
    rm2, rv2, rm3, rv3 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    got = _np_norm.batch_norm_forward_training(x, w, b, rm2, rv2, 0.3, 1e-3)
    ref = _np_norm.batch_norm_forward_training_reference(x, w, b, rm3, rv3, 0.3, 1e-3)
    for a, e in zip(got + (rm2, rv2), ref + (rm3, rv3)):
        assert_close(a, e, dtype)
    for kernel in ("batch_norm_backward_training", "batch_norm_backward_inference"):
        got_b = getattr(_np_norm, kernel)(dout, x, w, got[1], got[2])
        ref_b = getattr(_np_norm, kernel + "_reference")(dout, x, w, ref[1], ref[2])
        for a, e in zip(got_b, ref_b):
            assert_close(
                a,
                e,
                dtype,
                rtol=1e-4 if dtype == np.float32 else None,
                atol=1e-4 if dtype == np.float32 else None,
            )
    got_i = _np_norm.batch_norm_forward_inference(x, w, b, rm, rv, 1e-3)
    ref_i = _np_norm.batch_norm_forward_inference_reference(x, w, b, rm, rv, 1e-3)
    for a, e in zip(got_i, ref_i):
        assert_close(a, e, dtype)
