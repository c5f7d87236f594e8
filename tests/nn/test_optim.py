"""Optimizers and lr schedules: hand-computed updates, torch where installed, state dicts."""

import json
import math

import numpy as np
import pytest

import minicnn
from minicnn import nn, optim
from minicnn.optim import lr_scheduler

try:
    import torch
except ImportError:  # the torch comparisons are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")

GRADS = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([-0.4, 0.0, 1.0])]
P0 = np.array([1.0, -2.0, 0.5])


def run(make_opt, grads=GRADS, p0=P0):
    """Parameter values after each step with the given gradients (float64)."""
    p = nn.Parameter(minicnn.tensor(p0.copy()))
    opt = make_opt([p])
    out = []
    for g in grads:
        p.grad = minicnn.tensor(g.copy())
        opt.step()
        out.append(p.numpy().copy())
    return out


# ---- SGD -----------------------------------------------------------------------------------------
def test_sgd_plain_step():
    (p1, *_) = run(lambda ps: optim.SGD(ps, lr=0.1))
    np.testing.assert_allclose(p1, P0 - 0.1 * GRADS[0])


def test_sgd_momentum_by_hand():
    lr, mu = 0.1, 0.9
    got = run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu))
    p, buf = P0.copy(), None
    for g, actual in zip(GRADS, got):
        buf = g.copy() if buf is None else mu * buf + g
        p = p - lr * buf
        np.testing.assert_allclose(actual, p, rtol=1e-12)


def test_sgd_nesterov_weight_decay_dampening_by_hand():
    lr, mu, wd = 0.05, 0.8, 0.01
    got = run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, weight_decay=wd, nesterov=True))
    p, buf = P0.copy(), None
    for g, actual in zip(GRADS, got):
        d = g + wd * p
        buf = d.copy() if buf is None else mu * buf + d
        p = p - lr * (d + mu * buf)
        np.testing.assert_allclose(actual, p, rtol=1e-12)
    got = run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, dampening=0.5))
    p, buf = P0.copy(), None
    for g, actual in zip(GRADS, got):
        buf = g.copy() if buf is None else mu * buf + 0.5 * g
        p = p - lr * buf
        np.testing.assert_allclose(actual, p, rtol=1e-12)


def test_sgd_rejects_bad_settings():
    p = nn.Parameter(minicnn.zeros(2))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


# ---- Adam / AdamW --------------------------------------------------------------------------------
def adam_by_hand(lr, b1, b2, eps, wd, decoupled, amsgrad=False):
    p, m, v, vmax, out = P0.copy(), 0.0, 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        vv = vmax if amsgrad else v
        p = p - lr / (1 - b1**t) * m / (np.sqrt(vv) / math.sqrt(1 - b2**t) + eps)
        out.append(p)
    return out


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_by_hand(amsgrad):
    got = run(
        lambda ps: optim.Adam(
            ps, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1, amsgrad=amsgrad
        )
    )
    for a, b in zip(got, adam_by_hand(0.01, 0.8, 0.9, 1e-6, 0.1, False, amsgrad)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adamw_decays_the_weights_directly():
    got = run(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.5))
    for a, b in zip(got, adam_by_hand(0.01, 0.9, 0.999, 1e-8, 0.5, True)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert optim.AdamW([nn.Parameter(minicnn.zeros(1))]).defaults["weight_decay"] == 1e-2


TORCH_CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.1), lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd-momentum-wd": (
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    ),
    "sgd-nesterov": (
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    ),
    "adam": (
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
        lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    ),
    "adam-amsgrad": (
        lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
        lambda ps: torch.optim.Adam(ps, lr=0.01, amsgrad=True),
    ),
    "adamw": (
        lambda ps: optim.AdamW(ps, lr=0.01, betas=(0.85, 0.99)),
        lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.85, 0.99)),
    ),
}


@needs_torch
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_updates_match_torch(case):
    ours, theirs = TORCH_CASES[case]
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(4, 3)) for _ in range(5)]
    p0 = rng.normal(size=(4, 3))
    got = run(ours, grads, p0)
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = theirs([tp])
    for g, actual in zip(grads, got):
        tp.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(actual, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_float32_parameters_stay_float32():
    p = nn.Parameter(minicnn.tensor(np.ones(3, np.float32)))
    opt = optim.Adam([p], lr=0.1)
    p.grad = minicnn.tensor(np.ones(3, np.float32))
    opt.step()
    assert p.dtype == np.float32 and opt.state[id(p)]["exp_avg"].dtype == np.float32


def test_step_skips_parameters_without_grad_and_zero_grad():
    a, b = nn.Parameter(minicnn.ones(2)), nn.Parameter(minicnn.ones(2))
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = minicnn.ones(2)
    opt.step()
    np.testing.assert_array_equal(a.numpy(), 0)
    np.testing.assert_array_equal(b.numpy(), 1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.numpy(), 0)
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_exempt_bn_and_bias_from_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = optim.param_groups(model, 5e-4)
    assert [len(g["params"]) for g in groups] == [
        2,
        4,
    ]  # conv & fc weights; conv bias, BN w/b, fc bias
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert len(optim.param_groups(model, 5e-4, no_decay_bn_bias=False)) == 1
    opt = optim.SGD(groups, lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["weight_decay"] == 0.0 and opt.param_groups[1]["momentum"] == 0.9


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: optim.AdamW(ps, lr=0.01, amsgrad=True),
    ],
    ids=["sgd", "adamw"],
)
def test_state_dict_round_trip_continues_identically(make):
    def fresh():
        p = nn.Parameter(minicnn.tensor(P0.copy()))
        return p, make([p])

    p, opt = fresh()
    for g in GRADS[:2]:
        p.grad = minicnn.tensor(g)
        opt.step()
    state = opt.state_dict()
    # plain values and NumPy arrays only: through JSON (with the arrays set aside) and back
    meta = json.loads(
        json.dumps(
            {
                "groups": state["param_groups"],
                "state": {
                    k: {n: v for n, v in s.items() if not isinstance(v, np.ndarray)}
                    for k, s in state["state"].items()
                },
            }
        )
    )
    arrays = {
        k: {n: v for n, v in s.items() if isinstance(v, np.ndarray)}
        for k, s in state["state"].items()
    }
    restored = {
        "param_groups": meta["groups"],
        "state": {k: {**meta["state"][str(k)], **arrays[k]} for k in arrays},
    }
    q, opt2 = fresh()
    q._data[...] = p.numpy()
    opt2.load_state_dict(restored)
    for x, o in ((p, opt), (q, opt2)):
        x.grad = minicnn.tensor(GRADS[2])
        o.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_load_state_dict_rejects_a_different_layout():
    a, b = nn.Parameter(minicnn.ones(2)), nn.Parameter(minicnn.ones(3))
    state = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="size"):
        optim.SGD([a], lr=0.1).load_state_dict(state)


# ---- schedules -----------------------------------------------------------------------------------
def lrs(make_sched, steps, lr=1.0):
    p = nn.Parameter(minicnn.zeros(1))
    opt = optim.SGD([p], lr=lr)
    sched = make_sched(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_step_and_multistep_values():
    np.testing.assert_allclose(
        lrs(lambda o: lr_scheduler.StepLR(o, 2, gamma=0.5), 5), [1, 1, 0.5, 0.5, 0.25, 0.25]
    )
    np.testing.assert_allclose(
        lrs(lambda o: lr_scheduler.MultiStepLR(o, [1, 4], gamma=0.1), 5),
        [1, 0.1, 0.1, 0.1, 0.01, 0.01],
    )


def test_cosine_values():
    got = lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.1), 4)
    want = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(got, want)
    assert got[-1] == pytest.approx(0.1)


def test_linear_warmup_then_cosine():
    def make(o):
        warm = lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=3)
        cos = lr_scheduler.CosineAnnealingLR(o, T_max=4)
        return lr_scheduler.SequentialLR(o, [warm, cos], milestones=[3])

    got = lrs(make, 7, lr=0.4)
    want = [0.4 * (0.25 + 0.75 * t / 3) for t in range(3)] + [
        0.4 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)
    ]
    np.testing.assert_allclose(got, want, atol=1e-15)


@needs_torch
def test_schedules_match_torch():
    def ours_and_theirs(make):
        p = nn.Parameter(minicnn.zeros(1))
        tp = torch.nn.Parameter(torch.zeros(1))
        a, b = optim.SGD([p], lr=0.3), torch.optim.SGD([tp], lr=0.3)
        sa, sb = make(lr_scheduler, a), make(torch.optim.lr_scheduler, b)
        got, want = [], []
        for _ in range(12):
            got.append(a.param_groups[0]["lr"])
            want.append(b.param_groups[0]["lr"])
            a.step()
            b.step()
            sa.step()
            sb.step()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)

    ours_and_theirs(lambda m, o: m.StepLR(o, 3, gamma=0.3))
    ours_and_theirs(lambda m, o: m.MultiStepLR(o, [2, 5, 9], gamma=0.5))
    ours_and_theirs(lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.01))
    ours_and_theirs(lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=4))
    ours_and_theirs(
        lambda m, o: m.SequentialLR(
            o,
            [m.LinearLR(o, start_factor=0.2, total_iters=3), m.CosineAnnealingLR(o, T_max=8)],
            milestones=[3],
        )
    )


def test_scheduler_state_dict_resumes_the_schedule():
    def make(o):
        return lr_scheduler.SequentialLR(
            o,
            [
                lr_scheduler.LinearLR(o, 0.1, total_iters=2),
                lr_scheduler.CosineAnnealingLR(o, T_max=6),
            ],
            milestones=[2],
        )

    full = lrs(make, 8)
    p = nn.Parameter(minicnn.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = make(opt)
    for _ in range(3):
        sched.step()
    saved = json.loads(json.dumps(sched.state_dict()))  # plain values only
    opt2 = optim.SGD([nn.Parameter(minicnn.zeros(1))], lr=1.0)
    sched2 = make(opt2)
    sched2.load_state_dict(saved)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    rest = []
    for _ in range(5):
        sched2.step()
        rest.append(opt2.param_groups[0]["lr"])
    np.testing.assert_allclose(rest, full[4:])
