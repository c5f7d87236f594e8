"""cross_entropy and nll_loss: minicnn.reference's loops over weight × ignore_index ×
label_smoothing × reduction (forward and backward), class-index and class-probability targets,
(C,), (N, C) and (N, C, d1, ...) inputs, gradcheck (input and probability target), stability,
float32, errors, optional torch grid."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minicnn
import minicnn.functional as F
import minicnn.reference as ref
from minicnn.gradcheck import gradcheck

from conftest import assert_close
from kernel_devices import ALL_DEVICES


# ---- the oracle: minicnn.reference ---------------------------------------------------------------
def backward_matches_reference(out, X, Q, x, target, **kw):
    """Backward of a random cotangent: dx (and dtarget when Q requires grad) against the loops of
    minicnn.reference (cross_entropy, or nll_loss when kw has no label_smoothing)."""
    dloss = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(dloss)
    if "label_smoothing" in kw:
        dx, dq = ref.cross_entropy_backward(dloss, x, target, **kw)
    else:
        dx, dq = ref.nll_loss_backward(dloss, x, target, **kw), None
    assert_close(X.grad, dx)
    if Q is not None:
        assert_close(Q.grad, dq)


def make_case(shape, seed, ignore_some=True, ignore_index=-100):
    rng = np.random.default_rng(seed)
    class_dim = 0 if len(shape) == 1 else 1
    C = shape[class_dim]
    x = rng.standard_normal(shape) * 2
    tshape = shape[:class_dim] + shape[class_dim + 1 :]
    target = rng.integers(0, C, tshape).astype(np.int64)
    if ignore_some and target.size > 1:
        target.reshape(-1)[0] = ignore_index
    return x, target, rng.random(C) + 0.25


SHAPES = [(4, 5), (5,), (3, 4, 2), (2, 3, 2, 2)]
OPTIONS = list(itertools.product([False, True], [-100, 1], ["mean", "sum", "none"]))


def _mc(a, grad=False, device="cpu"):
    return None if a is None else minicnn.tensor(a, device=device, requires_grad=grad)


# ---- forward vs references ----------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_weight,ignore_index,reduction", OPTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.25, 1.0])
def test_cross_entropy_index_targets_match_reference(
    shape, use_weight, ignore_index, reduction, ls
):
    x, target, w = make_case(shape, seed=len(shape), ignore_index=ignore_index)
    w = w if use_weight else None
    X = _mc(x, grad=True)
    out = F.cross_entropy(
        X, _mc(target), _mc(w), ignore_index=ignore_index, reduction=reduction, label_smoothing=ls
    )
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=ls)
    assert_close(out, ref.cross_entropy_forward(x, target, **kw))
    backward_matches_reference(out, X, None, x, target, **kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_weight,ignore_index,reduction", OPTIONS)
def test_nll_loss_matches_reference(shape, use_weight, ignore_index, reduction):
    x, target, w = make_case(shape, seed=7, ignore_index=ignore_index)
    w = w if use_weight else None
    X = _mc(x, grad=True)
    out = F.nll_loss(X, _mc(target), _mc(w), ignore_index=ignore_index, reduction=reduction)
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction)
    assert_close(out, ref.nll_loss_forward(x, target, **kw))
    backward_matches_reference(out, X, None, x, target, **kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.3])
def test_cross_entropy_probability_targets_match_reference(shape, use_weight, reduction, ls):
    rng = np.random.default_rng(3)
    x, _, w = make_case(shape, seed=3)
    class_dim = 0 if len(shape) == 1 else 1
    q = rng.random(shape)
    q /= q.sum(axis=class_dim, keepdims=True)
    w = w if use_weight else None
    X, Q = _mc(x, grad=True), _mc(q, grad=True)
    out = F.cross_entropy(X, Q, _mc(w), reduction=reduction, label_smoothing=ls)
    kw = dict(weight=w, reduction=reduction, label_smoothing=ls)
    assert_close(out, ref.cross_entropy_forward(x, q, **kw))
    backward_matches_reference(out, X, Q, x, q, **kw)


def test_one_hot_probabilities_equal_index_targets_without_weights():
    x, target, _ = make_case((6, 4), seed=4, ignore_some=False)
    onehot = np.eye(4)[target]
    for ls in (0.0, 0.2):
        a = F.cross_entropy(_mc(x), _mc(target), label_smoothing=ls)
        b = F.cross_entropy(_mc(x), _mc(onehot), label_smoothing=ls)
        assert_close(a, b)


def test_all_ignored_mean_is_nan_with_zero_gradient_and_sum_is_zero():
    x = _mc(np.random.default_rng(5).standard_normal((3, 4)), grad=True)
    target = _mc(np.full(3, -100, np.int64))
    loss = F.cross_entropy(x, target, label_smoothing=0.2)
    assert np.isnan(loss.item())
    loss.backward()
    assert_close(x.grad, np.zeros((3, 4)))
    assert F.cross_entropy(x, target, reduction="sum").item() == 0.0
    assert_close(F.nll_loss(x, target, reduction="none"), np.zeros(3))


def test_numerically_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [3000.0, 3001.0, 2999.0]])
    t = np.array([1, 2])
    X = _mc(x, grad=True)
    loss = F.cross_entropy(X, _mc(t), reduction="none")
    assert np.all(np.isfinite(loss.numpy()))
    assert_close(loss, [2e4, 2 + math.log(1 + math.exp(-1) + math.exp(-2))], rtol=1e-12)
    loss.sum().backward()
    assert np.all(np.isfinite(X.grad.numpy()))


@given(
    N=st.integers(1, 4),
    C=st.integers(1, 5),
    use_weight=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    ls=st.floats(0.0, 1.0),
    ignore_index=st.sampled_from([-100, 0, 2]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_against_reference(N, C, use_weight, reduction, ls, ignore_index, seed):
    rng = np.random.default_rng(seed)
    x, target, w = rng.standard_normal((N, C)) * 3, rng.integers(0, C, N), rng.random(C) + 0.1
    w = w if use_weight else None
    X = _mc(x, grad=True)
    out = F.cross_entropy(
        X, _mc(target), _mc(w), ignore_index=ignore_index, reduction=reduction, label_smoothing=ls
    )
    kw = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=ls)
    assert_close(out, ref.cross_entropy_forward(x, target, **kw), rtol=1e-9, atol=1e-9)


# ---- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 5), (5,), (2, 3, 2, 2)])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(reduction="sum", label_smoothing=0.1),
        dict(weight=True, ignore_index=1, label_smoothing=0.3),
        dict(weight=True, reduction="none"),
    ],
)
def test_gradcheck_index_targets(shape, kwargs):
    x, target, w = make_case(shape, seed=8, ignore_index=kwargs.get("ignore_index", -100))
    kw = dict(kwargs, weight=_mc(w) if kwargs.get("weight") else None)
    X = _mc(x, grad=True)
    for fn in (F.cross_entropy, F.nll_loss):
        if fn is F.nll_loss:
            kw.pop("label_smoothing", None)
        result = gradcheck(lambda t: fn(t, _mc(target), **kw), (X,), tol=1e-6)
        assert result, f"{fn.__name__}: {result}"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(weight=True, label_smoothing=0.2),
        dict(reduction="none"),
        dict(reduction="sum", weight=True),
    ],
)
def test_gradcheck_probability_targets_for_input_and_target(kwargs):
    rng = np.random.default_rng(9)
    X, Q = _mc(rng.standard_normal((3, 4, 2)), True), _mc(rng.random((3, 4, 2)), True)
    w = _mc(rng.random(4) + 0.5) if kwargs.get("weight") else None
    kw = dict(kwargs, weight=w)
    result = gradcheck(lambda a, b: F.cross_entropy(a, b, **kw), (X, Q), tol=1e-6)
    assert result, str(result)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_float32_agrees_with_float64_and_keeps_dtype(device):
    x, target, w = make_case((5, 4, 3), seed=10)
    out = {}
    for dtype in (np.float64, np.float32):
        X, W = _mc(x.astype(dtype), True, device), _mc(w.astype(dtype), device=device)
        loss = F.cross_entropy(X, _mc(target, device=device), W, label_smoothing=0.1)
        loss.backward()
        out[dtype] = loss, X.grad
    for a32, a64 in zip(out[np.float32], out[np.float64]):
        assert a32.dtype == np.float32
        assert_close(a32, a64, dtype=np.float32)


def test_legacy_size_average_and_reduce():
    x, target, _ = make_case((4, 3), seed=11)
    for size_average, reduce, reduction in [
        (False, None, "sum"),
        (None, False, "none"),
        (True, True, "mean"),
    ]:
        with pytest.warns(UserWarning, match="size_average and reduce are deprecated"):
            a = F.cross_entropy(_mc(x), _mc(target), size_average=size_average, reduce=reduce)
        assert_close(a, F.cross_entropy(_mc(x), _mc(target), reduction=reduction))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.nll_loss(_mc(x), _mc(target), reduction="sum")  # no warning without the legacy args


# ---- errors -------------------------------------------------------------------------------------
X43 = np.zeros((4, 3))


@pytest.mark.parametrize(
    "target,kwargs,err,match",
    [
        (np.array([0, 1, 3, 0]), {}, ValueError, r"target value 3 is out of range for 3 classes"),
        (np.array([0, -1, 2, 0]), {}, ValueError, r"target value -1 is out of range"),
        (np.array([0, -1, 2, 0]), dict(ignore_index=-1), None, None),
        (
            np.array([0.0, 1.0, 2.0, 0.0]),
            {},
            TypeError,
            r"holds class indices and must be int64, got dtype float64",
        ),
        (
            np.array([0, 1, 2], np.int64),
            {},
            ValueError,
            r"target must have shape \(4,\) .* got \(3,\)",
        ),
        (np.array([[0], [1], [2], [0]]), {}, ValueError, r"target must have shape \(4,\)"),
        (
            np.array([0, 1, 2, 0]),
            dict(label_smoothing=1.5),
            ValueError,
            r"label_smoothing must be in \[0, 1\], got 1.5",
        ),
        (
            np.array([0, 1, 2, 0]),
            dict(label_smoothing=-0.1),
            ValueError,
            "label_smoothing must be in",
        ),
        (
            np.array([0, 1, 2, 0]),
            dict(reduction="avg"),
            ValueError,
            "reduction must be 'none', 'mean' or 'sum', got 'avg'",
        ),
        (
            np.array([0, 1, 2, 0]),
            dict(weight=np.ones(4, np.float32)),
            ValueError,
            r"weight must have shape \(3,\)",
        ),
        (
            np.array([0, 1, 2, 0]),
            dict(weight=np.ones(3)),
            TypeError,
            "expected one dtype.*weight float64",
        ),
        (
            np.array([0, 1, 2, 0]),
            dict(ignore_index=1.0),
            TypeError,
            "ignore_index must be an integer",
        ),
        (
            np.ones((4, 3), np.int64),
            {},
            TypeError,
            r"holds class probabilities and must be floating point",
        ),
        (
            np.ones((4, 3), np.float32) / 3,
            dict(ignore_index=0),
            ValueError,
            "not supported for class-probability",
        ),
        (np.ones((4, 3)), {}, TypeError, "expected one dtype"),
    ],
)
def test_cross_entropy_bad_arguments(target, kwargs, err, match):
    kwargs = {k: (_mc(v) if k == "weight" else v) for k, v in kwargs.items()}
    x = minicnn.tensor(X43.astype(np.float32))
    if err is None:
        F.cross_entropy(x, minicnn.tensor(target), **kwargs)
        return
    with pytest.raises(err, match="cross_entropy: .*" + match):
        F.cross_entropy(x, minicnn.tensor(target), **kwargs)


def test_nll_loss_bad_arguments():
    x = minicnn.zeros(4, 3)
    with pytest.raises(ValueError, match="nll_loss: target value 5 is out of range for 3 classes"):
        F.nll_loss(x, minicnn.tensor([0, 5, 1, 1]))
    with pytest.raises(
        TypeError, match="nll_loss: target must hold int64 class indices, got dtype int32"
    ):
        F.nll_loss(x, minicnn.tensor([0, 1, 1, 1], dtype="int32"))
    with pytest.raises(ValueError, match=r"nll_loss: target must have shape \(\)"):
        F.nll_loss(minicnn.zeros(3), minicnn.tensor([1]))
    with pytest.raises(ValueError, match="nll_loss: input must be .* got a 0-D tensor"):
        F.nll_loss(minicnn.zeros(()), minicnn.tensor(0))
    with pytest.raises(ValueError, match="nll_loss: not differentiable with respect to weight"):
        F.nll_loss(x, minicnn.tensor([0, 1, 1, 1]), weight=minicnn.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match="nll_loss: target must be a Tensor"):
        F.nll_loss(x, [0, 1, 1, 1])
    with pytest.raises(TypeError, match="nll_loss: input must be float32 or float64"):
        F.nll_loss(minicnn.tensor([[1, 2]]), minicnn.tensor([0]))


# ---- optional: torch over a grid of options -----------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 5), (5,), (3, 4, 2)])
@pytest.mark.parametrize("use_weight,ignore_index,reduction", OPTIONS)
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_matches_torch(shape, use_weight, ignore_index, reduction, ls):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, target, w = make_case(shape, seed=12, ignore_index=ignore_index)
    class_dim = 0 if len(shape) == 1 else 1
    q = np.random.default_rng(13).random(shape)
    q /= q.sum(axis=class_dim, keepdims=True)
    dy = np.random.default_rng(14).standard_normal(target.shape if reduction == "none" else ())
    tw = torch.tensor(w) if use_weight else None
    mw = _mc(w) if use_weight else None
    cases = [  # (minicnn fn, torch fn, target, extra kwargs)
        (
            F.cross_entropy,
            tf.cross_entropy,
            target,
            dict(ignore_index=ignore_index, label_smoothing=ls),
        ),
        (F.nll_loss, tf.nll_loss, target, dict(ignore_index=ignore_index)),
        (F.cross_entropy, tf.cross_entropy, q, dict(label_smoothing=ls)),
    ]
    for fn, tfn, tgt, kw in cases:
        X, Xt = _mc(x, True), torch.tensor(x, requires_grad=True)
        out = fn(X, _mc(tgt), mw, reduction=reduction, **kw)
        ref = tfn(Xt, torch.tensor(tgt), tw, reduction=reduction, **kw)
        out.backward(dy)
        ref.backward(torch.tensor(dy))
        assert_close(out, ref.detach().numpy())
        assert_close(X.grad, Xt.grad.numpy())
