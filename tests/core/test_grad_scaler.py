"""minicnn.amp.GradScaler: its own properties, and torch.amp.GradScaler's numbers over a scripted
sequence of finite and overflowing steps (when torch is installed)."""

import numpy as np
import pytest

import minicnn
from minicnn import optim
from minicnn.amp import GradScaler

# The script: per step, what the gradients hold ("ok": finite, "inf", "nan").
SCRIPT = ["ok", "ok", "inf", "ok", "ok", "ok", "nan", "ok", "ok", "ok", "ok", "inf", "inf", "ok"]


def _params():
    rng = np.random.default_rng(0)
    return [
        minicnn.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True),
        minicnn.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True),
    ]


def _grads(step, kind, scale):
    rng = np.random.default_rng(100 + step)
    g = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    g = [a * np.float32(scale) for a in g]  # what backward of a scaled loss produces
    if kind != "ok":
        g[step % 2].flat[1] = np.inf if kind == "inf" else np.nan
    return g


def _run_minicnn(script, **kw):
    params = _params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    scaler = GradScaler("cpu", **kw)
    trace = []
    for i, kind in enumerate(script):
        for p, g in zip(params, _grads(i, kind, scaler.get_scale())):
            p.grad = minicnn.tensor(g)
        scaler.step(opt)
        scaler.update()
        trace.append((scaler.get_scale(), [p.numpy().copy() for p in params]))
    return scaler, trace


def test_matches_torch_over_a_scripted_sequence():
    torch = pytest.importorskip("torch")
    kw = dict(init_scale=2.0**10, growth_interval=3)
    scaler, ours = _run_minicnn(SCRIPT, **kw)
    params = [torch.tensor(p.numpy(), requires_grad=True) for p in _params()]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    ref = torch.amp.GradScaler("cpu", **kw)
    for i, kind in enumerate(SCRIPT):
        ref.scale(torch.ones(()))  # torch creates its scale tensor lazily, here
        for p, g in zip(params, _grads(i, kind, ref.get_scale())):
            p.grad = torch.from_numpy(g)
        ref.step(opt)
        ref.update()
        scale, values = ours[i]
        assert scale == ref.get_scale(), f"step {i} ({kind})"
        for v, p in zip(values, params):
            np.testing.assert_allclose(v, p.detach().numpy(), rtol=1e-6, err_msg=f"step {i}")
    assert scaler.state_dict() == ref.state_dict()


def test_skips_backs_off_and_grows():
    scaler, trace = _run_minicnn(["ok", "inf", "ok", "ok", "ok"], init_scale=8.0, growth_interval=3)
    scales = [s for s, _ in trace]
    assert scales == [8.0, 4.0, 4.0, 4.0, 8.0]  # backoff x0.5, growth x2 after 3 finite steps
    np.testing.assert_array_equal(trace[1][1][0], trace[0][1][0])  # the inf step changed nothing
    assert scaler.steps_skipped == 1
    assert not np.array_equal(trace[2][1][0], trace[1][1][0])


def test_one_device_to_host_read_per_step(monkeypatch):
    from minicnn.amp import grad_scaler

    reads = []
    original = grad_scaler._to_host
    monkeypatch.setattr(grad_scaler, "_to_host", lambda f: reads.append(1) or original(f))
    _run_minicnn(SCRIPT[:4])
    assert len(reads) == 4


def test_defaults_are_torchs():
    s = GradScaler("cpu")
    assert s.get_scale() == 2.0**16 and s.get_growth_factor() == 2.0
    assert s.get_backoff_factor() == 0.5 and s.get_growth_interval() == 2000
    assert s.state_dict() == {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }


def test_unscale_for_clipping_then_step_does_not_unscale_twice():
    p = minicnn.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    scaler = GradScaler("cpu", init_scale=4.0)
    loss = (p * p).sum()
    assert scaler.scale(loss).item() == 4.0 * 5.0
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    np.testing.assert_array_equal(p.grad.numpy(), [2.0, 4.0])  # the true gradient: clip here
    with pytest.raises(RuntimeError, match="already been called on this optimizer"):
        scaler.unscale_(opt)
    scaler.step(opt)
    np.testing.assert_array_equal(p.numpy(), [-1.0, -2.0])
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    scaler.update()
    scaler.unscale_(opt)  # ready again after update()


def test_update_without_an_inf_check_and_bad_arguments():
    with pytest.raises(AssertionError, match="No inf checks"):
        GradScaler("cpu").update()
    with pytest.raises(ValueError, match="growth_factor must be > 1, got 0.5"):
        GradScaler("cpu", growth_factor=0.5)
    with pytest.raises(ValueError, match="growth_interval must be a positive integer, got 0"):
        GradScaler("cpu", growth_interval=0)
    with pytest.raises(ValueError, match="init_scale must be a positive number, got -1"):
        GradScaler("cpu", init_scale=-1)


def test_float16_gradients_are_refused():
    p = minicnn.tensor([1.0], dtype=minicnn.float16, requires_grad=True)
    p.grad = minicnn.tensor([1.0], dtype=minicnn.float16)
    with pytest.raises(ValueError, match="unscale FP16 gradients"):
        GradScaler("cpu").unscale_(optim.SGD([p], lr=0.1))


def test_state_dict_round_trip_and_new_scale():
    a, _ = _run_minicnn(SCRIPT[:5], init_scale=64.0, growth_interval=3)
    b = GradScaler("cpu")
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    b.update(new_scale=3.0)
    assert b.get_scale() == 3.0
    with pytest.raises(RuntimeError, match="empty"):
        b.load_state_dict({})


def test_disabled_is_a_pass_through():
    p = minicnn.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    s = GradScaler("cpu", enabled=False)
    loss = (p * 3.0).sum()
    assert s.scale(loss) is loss and s.get_scale() == 1.0 and s.state_dict() == {}
    loss.backward()
    s.step(opt)
    s.update()
    np.testing.assert_array_equal(p.numpy(), [-2.0])
    with pytest.raises(RuntimeError, match="disabled instance"):
        s.load_state_dict({"scale": 1.0})


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # inf - inf in log_softmax
def test_overflowing_float16_forward_makes_the_loss_inf_and_the_step_skipped():
    """Under autocast a float16 linear whose outputs exceed 65504 gives inf logits and an inf
    loss: the scaler sees non-finite gradients, skips the step and backs off."""
    w = minicnn.tensor(np.full((3, 4), 300.0, np.float32), requires_grad=True)
    x = minicnn.tensor(np.full((2, 4), 100.0, np.float32))
    opt = optim.SGD([w], lr=0.1)
    scaler = GradScaler("cpu")
    with minicnn.autocast("cpu", dtype=minicnn.float16):
        loss = minicnn.functional.cross_entropy(
            minicnn.functional.linear(x, w), minicnn.tensor([0, 1])
        )
    assert not np.isfinite(loss.item())
    scaler.scale(loss).backward()
    assert scaler.step(opt) is None and scaler.steps_skipped == 1
    scaler.update()
    assert scaler.get_scale() == 2.0**15
    np.testing.assert_array_equal(w.numpy(), 300.0)
