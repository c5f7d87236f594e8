"""Fused optimizer updates: Backend.sgd_update / adam_update (one launch per group on the kernel
devices, csrc/kernels/optim.cu) against the per-parameter update minicnn/optim did before.

"cpu" must give the very bits of the per-parameter NumPy update (the same operations), the kernel
devices the same values within float rounding, over several steps, for momentum, dampening,
Nesterov, weight decay, Adam, AdamW and AMSGrad, float32 and float64, and a group of many small
tensors with one larger than a chunk."""

import math

import numpy as np
import pytest

import minicnn
from minicnn import optim
from minicnn.backends import get_backend

from kernel_devices import KERNEL_DEVICES

STEPS = 4


# ---- the oracle: the per-parameter update of minicnn/optim before the fused one ---------------
def sgd_reference(param, grad, state, g):
    lr, mu, wd = g["lr"], g["momentum"], g["weight_decay"]
    if wd != 0:
        grad = grad + wd * param
    if mu != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.copy()
        else:
            buf *= mu
            buf += (1 - g["dampening"]) * grad
        grad = grad + mu * buf if g["nesterov"] else buf
    param -= lr * grad


def adam_reference(param, grad, state, g, decoupled):
    lr, (b1, b2), eps, wd = g["lr"], g["betas"], g["eps"], g["weight_decay"]
    if wd != 0:
        if decoupled:
            param *= 1 - lr * wd
        else:
            grad = grad + wd * param
    if "step" not in state:
        state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        if g["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(param)
    state["step"] += 1
    t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    if g["amsgrad"]:
        np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        v = state["max_exp_avg_sq"]
    param -= (lr / (1 - b1**t)) * m / (np.sqrt(v) / math.sqrt(1 - b2**t) + eps)


CONFIGS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    (optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-4)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True)),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    (optim.AdamW, dict(lr=1e-2, eps=1e-6, amsgrad=True)),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, kw in CONFIGS]
SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
MANY = [(k % 7 + 1,) for k in range(150)] + [(4096 * 2 + 3,)]  # many tiny, one over 2 chunks


def _grads(shapes, dtype, step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _run(cls, kw, device, dtype, shapes, skip_first=()):
    """The parameters after STEPS steps of the fused optimizer on ``device``; the parameters
    numbered in ``skip_first`` get no gradient on the first step."""
    rng = np.random.default_rng(0)
    params = [
        minicnn.tensor(rng.standard_normal(s).astype(dtype), device=device, requires_grad=True)
        for s in shapes
    ]
    opt = cls(params, **kw)
    for step in range(STEPS):
        for i, (p, g) in enumerate(zip(params, _grads(shapes, dtype, step))):
            p.grad = None if step == 0 and i in skip_first else minicnn.tensor(g, device=device)
        opt.step()
    return [p.numpy().copy() for p in params]


def _reference(cls, kw, dtype, shapes, skip_first=()):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    g = dict(cls([minicnn.zeros(1, requires_grad=True)], **kw).param_groups[0])
    states = [{} for _ in params]
    for step in range(STEPS):
        for i, (p, grad) in enumerate(zip(params, _grads(shapes, dtype, step))):
            if step == 0 and i in skip_first:
                continue
            if cls is optim.SGD:
                sgd_reference(p, grad, states[i], g)
            else:
                adam_reference(p, grad, states[i], g, cls is optim.AdamW)
    return params


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_cpu_is_the_per_parameter_update_bit_for_bit(cls, kw, dtype):
    got = _run(cls, kw, "cpu", dtype, SHAPES, skip_first={1})
    for a, b in zip(got, _reference(cls, kw, dtype, SHAPES, skip_first={1})):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=IDS)
def test_kernel_devices_match_cpu(device, cls, kw, dtype):
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (2e-5, 1e-6)
    got = _run(cls, kw, device, dtype, SHAPES, skip_first={1})
    for a, b in zip(got, _run(cls, kw, "cpu", dtype, SHAPES, skip_first={1})):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("cls,kw", [CONFIGS[3], CONFIGS[5]], ids=[IDS[3], IDS[5]])
def test_a_group_of_many_small_tensors_and_one_large(device, cls, kw):
    got = _run(cls, kw, device, np.float32, MANY)
    for a, b in zip(got, _run(cls, kw, "cpu", np.float32, MANY)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize(
    "cls,kw,launcher", [(*CONFIGS[2], "sgd_update"), (*CONFIGS[5], "adam_update")]
)
def test_one_launch_per_group_and_step(device, cls, kw, launcher, monkeypatch):
    backend = get_backend(device)
    calls = []
    original = getattr(backend.C, launcher)

    class Counting:  # the extension module's attributes can't be patched: wrap the module
        def __getattr__(self, name):
            return getattr(original_module, name)

    original_module = backend.C
    counting = Counting()
    setattr(counting, launcher, lambda *a, **k: (calls.append(k["tensors"]), original(*a, **k))[1])
    monkeypatch.setattr(backend, "C", counting)
    groups = [
        {"params": [minicnn.randn(4, 4, device=device, requires_grad=True) for _ in range(5)]},
        {"params": [minicnn.randn(3, device=device, requires_grad=True) for _ in range(7)]},
    ]
    opt = cls(groups, **kw)
    for _ in range(2):
        for g in groups:
            for p in g["params"]:
                p.grad = minicnn.randn(*p.shape, device=device)
        opt.step()
    assert calls == [5, 7, 5, 7]


def test_state_dict_round_trip_keeps_the_buffers():
    p = minicnn.randn(3, 3, device="emu", requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = minicnn.ones(3, 3, device="emu")
    opt.step()
    saved = opt.state_dict()
    np.testing.assert_array_equal(saved["state"][0]["momentum_buffer"], np.ones((3, 3)))
    q = minicnn.tensor(p.numpy(), device="emu", requires_grad=True)
    opt2 = optim.SGD([q], lr=0.1, momentum=0.9)
    opt2.load_state_dict(saved)
    for t, o in ((p, opt), (q, opt2)):
        t.grad = minicnn.ones(3, 3, device="emu")
        o.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_a_non_contiguous_parameter_is_refused_by_name():
    backend = get_backend("emu")
    a = np.zeros((4, 4), np.float32)[:, ::2]
    with pytest.raises(
        ValueError, match="sgd_update: parameter 0 of shape \\(4, 2\\) is not contiguous"
    ):
        backend.sgd_update(
            [a],
            [np.zeros((4, 2), np.float32)],
            [None],
            lr=0.1,
            momentum=0.0,
            dampening=0.0,
            weight_decay=0.0,
            nesterov=False,
            first_step=False,
        )


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("update", ["sgd_update", "adam_update"])
def test_float16_takes_the_per_tensor_path_on_the_device(device, update):
    """float16 (the kernels take float32/float64 only): the per-tensor array code, as on cpu."""
    shapes = [(3, 2), (7,)]
    results = []
    for name in ("cpu", device):
        backend, rng = get_backend(name), np.random.default_rng(5)  # the same arrays on both
        params, grads, m, v = [
            [backend.from_numpy(rng.standard_normal(s).astype(np.float16)) for s in shapes]
            for _ in range(4)
        ]
        if update == "sgd_update":
            kw = dict(dampening=0.0, weight_decay=1e-2, nesterov=True, first_step=False)
            backend.sgd_update(params, grads, m, lr=0.1, momentum=0.9, **kw)
        else:
            kw = dict(beta1=0.9, beta2=0.99, eps=1e-3, weight_decay=0.1, decoupled=True)
            backend.adam_update(params, grads, m, [abs(a) for a in v], step=3, lr=0.01, **kw)
        results.append([backend.to_numpy(p) for p in params])
    for a, b in zip(*results):
        assert a.dtype == b.dtype == np.float16
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("update", ["sgd_update", "adam_update"])
def test_a_missing_hyperparameter_is_a_type_error_naming_the_update(update):
    """The kernel devices take the per-tensor update's signature; a missing keyword is named."""
    backend = get_backend("emu")
    a = np.zeros(3, np.float32)
    first = "lr" if update == "sgd_update" else "step"  # the first keyword of the signature
    with pytest.raises(TypeError, match=f"{update}: missing a required argument: '{first}'"):
        getattr(backend, update)([a], [a], [a], *([[a]] if update == "adam_update" else []))


def test_cpu_groups_take_the_threaded_cpp_update(monkeypatch):
    """CpuBackend's sgd_update/adam_update run _C_cpu's fused pass (csrc/cpu/optim.h) for
    float32/float64 groups (the bit-for-bit tests above then check it), NumPy's loop otherwise."""
    backend = get_backend("cpu")
    calls = []
    real = backend._native_update

    def spy(name, written, read):
        fn = real(name, written, read)
        calls.append((name, fn is not None))
        return fn

    monkeypatch.setattr(backend, "_native_update", spy)
    for dtype, fused in [(np.float32, True), (np.float64, True), (np.float16, False)]:
        p, g, b = (np.ones(5, dtype) for _ in range(3))
        backend.sgd_update([p], [g], [b], lr=0.5, momentum=0.9, dampening=0.0,
                           weight_decay=0.0, nesterov=False, first_step=True)  # fmt: skip
        assert calls[-1] == ("sgd_update", fused) and p[0] == dtype(0.5)
