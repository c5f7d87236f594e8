"""The fused batch norm + ReLU (issue 16): the same numbers, running statistics and gradients as
``relu(batch_norm(x))``, bit for bit on cpu at any thread count; the nn layers take it exactly
where it is the two modules' calls."""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import nn
from minicnn.backends import _np_norm
from minicnn.backends._np_norm import batch_norm_forward_training_reference
from tests.kernel_devices import KERNEL_DEVICES, cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")


# small maps (2x2, 1x1), odd sizes, and shapes big enough for several tasks per pass
SHAPES = [(3, 5, 4, 3), (8, 256, 2, 2), (4, 16, 16, 16), (5, 3, 1, 1), (2, 4, 7)]


def _leaves(shape, dtype, seed, device="cpu", affine=True):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = rng.standard_normal(shape).astype(dtype) + 0.3

    def t(a, grad=True):
        return minicnn.tensor(a, device=device, requires_grad=grad)

    w = t(rng.uniform(-1.5, 1.5, C).astype(dtype)) if affine else None
    b = t(rng.standard_normal(C).astype(dtype)) if affine else None
    stats = (
        t(rng.standard_normal(C).astype(dtype), False),
        t(rng.uniform(0.5, 2, C).astype(dtype), False),
    )
    return t(x), w, b, stats, rng.standard_normal(shape).astype(dtype)


def _run(fused, shape, dtype, training, device="cpu", affine=True, seed=0):
    x, w, b, (rm, rv), dy = _leaves(shape, dtype, seed, device, affine)
    args = (rm, rv, w, b, training, 0.1, 1e-5)
    y = F.batch_norm_relu(x, *args) if fused else F.relu(F.batch_norm(x, *args))
    y.backward(minicnn.tensor(dy, device=device))
    leaves = [x] + ([w, b] if affine else [])
    return [a.numpy() for a in [y, rm, rv] + [t.grad for t in leaves]]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_fused_equals_batch_norm_then_relu_bit_for_bit(shape, dtype, training, n_threads):
    with threads(n_threads):
        fused = _run(True, shape, dtype, training)
        unfused = _run(False, shape, dtype, training)
    for a, b in zip(fused, unfused):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert (fused[0] == 0).any() and (fused[0] > 0).any()  # the mask is exercised both ways


def test_the_cpu_path_is_the_one_pass_cpp_kernel():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    y, _, _ = _np_norm.batch_norm_relu_forward(x, None, None, None, None, True, 0.1, 1e-5)
    dx, _, _ = _np_norm.batch_norm_relu_backward(
        x, y, x, None, np.zeros(3, np.float32), np.ones(3, np.float32), True
    )
    assert y.shape == dx.shape == x.shape  # not None: no composition on cpu


@pytest.mark.parametrize("training", [True, False])
def test_fused_without_affine_parameters(training):
    for a, b in zip(
        _run(True, (4, 6, 3, 3), np.float64, training, affine=False),
        _run(False, (4, 6, 3, 3), np.float64, training, affine=False),
    ):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(8, 256, 2, 2), (4, 16, 16, 16)])
def test_fused_results_do_not_depend_on_the_thread_count(shape):
    runs = []
    for n in (1, 2, 3):
        with threads(n):
            runs.append(_run(True, shape, np.float32, True))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_fused_forward_matches_the_numpy_definition():
    x, w, b, (rm, rv), _ = _leaves((3, 4, 5, 5), np.float64, 3)
    rm0, rv0 = rm.numpy().copy(), rv.numpy().copy()
    y = F.batch_norm_relu(x, rm, rv, w, b, True, 0.1, 1e-5)
    z, _, _ = batch_norm_forward_training_reference(
        x.numpy(), w.numpy(), b.numpy(), rm0, rv0, 0.1, 1e-5
    )
    np.testing.assert_allclose(y.numpy(), np.maximum(z, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm.numpy(), rm0, rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), rv0, rtol=1e-12)


def test_fused_gradcheck_float64():
    from minicnn.gradcheck import gradcheck

    x, w, b, (rm, rv), _ = _leaves((3, 2, 3, 3), np.float64, 5)
    assert gradcheck(lambda x, w, b: F.batch_norm_relu(x, None, None, w, b, True), (x, w, b))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernel_devices_compose_the_two_ops(device):
    for training in (True, False):
        fused = _run(True, (3, 5, 4, 3), np.float64, training, device=device)
        unfused = _run(False, (3, 5, 4, 3), np.float64, training, device=device)
        for a, b in zip(fused, unfused):
            assert np.array_equal(a, b)
        on_cpu = _run(True, (3, 5, 4, 3), np.float64, training)
        for a, b in zip(fused, on_cpu):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_fused_checks_arguments_as_batch_norm():
    x = minicnn.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\)"):
        F.batch_norm_relu(x, None, None, minicnn.ones(4), None, True)
    with pytest.raises(ValueError, match="batch_norm: running_mean and running_var"):
        F.batch_norm_relu(x, None, None, None, None, False)


def _block(seed):
    minicnn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True))


@pytest.mark.parametrize("train", [True, False])
def test_sequential_fuses_bn_relu_pairs_exactly(train, monkeypatch):
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    outs = []
    for fuse in (True, False):
        if not fuse:  # the unfused path: what a hook on the ReLU forces
            monkeypatch.setattr(nn.normalization, "fusable_bn_relu", lambda bn, relu: False)
        model = _block(0).train(train)
        y = model(minicnn.tensor(x, requires_grad=True))
        y.sum().backward()
        grads = [p.grad.numpy() for p in model.parameters()]
        outs.append((y.numpy(), model.state_dict(), grads))
    (y1, s1, g1), (y2, s2, g2) = outs
    assert np.array_equal(y1, y2) and list(s1) == list(s2)
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))


def test_hooks_and_subclasses_keep_the_two_calls():
    calls = []
    model = _block(0)
    model[2].register_forward_hook(lambda m, args, out: calls.append(out))
    y = model(minicnn.randn(2, 3, 4, 4))
    assert len(calls) == 1 and calls[0] is y  # the ReLU module ran
    assert type(y._node.ctx).__name__ == "Context" and y._node.fn.__name__ == "ReLU"

    class MyBN(nn.BatchNorm2d):
        pass

    assert not nn.normalization.fusable_bn_relu(MyBN(4), nn.ReLU())
    assert nn.normalization.fusable_bn_relu(nn.BatchNorm2d(4), nn.ReLU(inplace=True))
    fused = _block(0)(minicnn.randn(2, 3, 4, 4, requires_grad=True))
    assert fused._node.fn.__name__ == "BatchNormReLU"


def _small_models():
    from minicnn.models import get_model
    from minicnn.models.densenet import DenseNet

    yield "resnet20", get_model("resnet20", num_classes=3), (2, 3, 12, 12)
    dense = DenseNet(4, (2, 2), 8, 2, num_classes=3, small_inputs=True)
    yield "densenet", dense, (2, 3, 8, 8)


@pytest.mark.parametrize("index", [0, 1])
def test_models_train_the_same_with_the_fused_pairs(index, monkeypatch):
    """A training step of resnet20 and a small DenseNet: the fused model's output, gradients and
    running statistics equal the unfused model's bit for bit; the state_dict keys are the same."""
    runs = []
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setattr(nn.normalization, "fusable_bn_relu", lambda bn, relu: False)
        minicnn.manual_seed(0)
        name, model, shape = list(_small_models())[index]
        x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
        y = model.train()(minicnn.tensor(x))
        (y * y).sum().backward()
        grads = [p.grad.numpy() for p in model.parameters()]
        runs.append((y.numpy(), grads, model.state_dict()))
    (y1, g1, s1), (y2, g2, s2) = runs
    assert np.array_equal(y1, y2) and list(s1) == list(s2)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)


@pytest.mark.parametrize("training", [True, False])
def test_fused_matches_torch(training):
    torch = pytest.importorskip("torch")
    x, w, b, (rm, rv), dy = _leaves((4, 5, 3, 3), np.float64, 7)
    tt = [torch.tensor(a.numpy(), requires_grad=a.requires_grad) for a in (x, w, b, rm, rv)]
    y = F.batch_norm_relu(x, rm, rv, w, b, training, 0.1, 1e-5)
    y.backward(minicnn.tensor(dy))
    ty = torch.relu(torch.nn.functional.batch_norm(tt[0], tt[3], tt[4], tt[1], tt[2], training))
    ty.backward(torch.tensor(dy))
    pairs = [(y, ty), (rm, tt[3]), (rv, tt[4]), (x.grad, tt[0].grad), (w.grad, tt[1].grad)]
    for ours, theirs in pairs + [(b.grad, tt[2].grad)]:
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
