"""Every op in float16 and bfloat16 against float32 computed from the same rounded inputs.

Tolerances. The inputs (and the upstream gradient) are drawn in float32 and rounded to the half
dtype once; the reference runs the op in float32 on exactly those values. A kernel that keeps the
contract (float32 arithmetic, one rounding of each output) then differs from the reference by
the rounding alone: |half - ref| <= u |ref| with the unit roundoff u = 2^-11 (float16's 10-bit
mantissa) or 2^-8 (bfloat16's 7-bit one), plus float16's subnormal spacing 2^-24 near zero. On
"emu"/"cuda" the float32 sums run in another order, off by a few float32 ulps of the sum of the
magnitudes: ``ATOL_SUM`` of the largest |ref| covers that. Ops that are a chain of elementwise
NumPy steps in the half dtype (softmax, log_softmax, cross entropy: subtract, exp, sum, divide)
round at every step, so they get ``steps`` times u (and their own float32 under autocast).
"""

import zlib

import numpy as np
import pytest

import minicnn
from minicnn import functional as F

U = {minicnn.float16: 2.0**-11, minicnn.bfloat16: 2.0**-8}
TINY = {minicnn.float16: 2.0**-24, minicnn.bfloat16: 0.0}
ATOL_SUM = 1e-5


def _rounded(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def _run(fn, arrays, dtype, device, params):
    """fn's output and the gradients of its array inputs (as float32), inputs cast to ``dtype``."""
    leaves = [
        minicnn.tensor(a.astype(np.float32), device=device, requires_grad=True) for a in arrays
    ]
    xs = [t.to(dtype) for t in leaves]
    out = fn(*xs, **{k: minicnn.tensor(v, device=device) for k, v in params.items()})
    return out, leaves


def _close(got, ref, dtype, steps, what):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    top = max(np.abs(ref).max(), 1)
    bound = steps * (U[dtype] * np.abs(ref) + TINY[dtype]) + ATOL_SUM * top
    if steps > 1:  # a chain of half steps: errors of the size of the largest terms may cancel
        bound += steps * U[dtype] * top
    bad = np.abs(got - ref) > bound
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} off, worst {np.abs(got - ref).max()}"


def _conv(x, w, b):
    return F.conv2d(x, w, b, stride=2, padding=1)


def _conv_groups(x, w):
    return F.conv2d(x, w, groups=2, dilation=2)


def _lrn(x):
    return F.local_response_norm(x, 5, alpha=1.0, beta=0.75, k=2.0)  # a large alpha, on purpose


def _bn(x, w, b, rm, rv):
    """The mixed-precision contract: half x, float32 weight, bias and running statistics."""
    return F.batch_norm(x, rm, rv, w.float(), b.float(), training=True)


def _bn_half(x, w, b):
    """All half (a model made half with model.to(float16)), batch statistics only."""
    return F.batch_norm(x, None, None, w, b, training=True)


def _bn_eval(x, w, b, rm, rv):
    return F.batch_norm(x, rm, rv, w.float(), b.float(), training=False)


_STATS = {"rm": np.full(3, 0.5, np.float32), "rv": np.full(3, 2.0, np.float32)}
# name -> (fn, input shapes, float32 parameters (not cast, not differentiated), steps)
OPS = {
    "conv2d": (_conv, [(2, 3, 7, 7), (4, 3, 3, 3), (4,)], {}, 1),
    "conv2d_groups": (_conv_groups, [(1, 4, 9, 8), (6, 2, 3, 3)], {}, 1),
    "linear": (F.linear, [(5, 6), (3, 6), (3,)], {}, 1),
    "matmul": (lambda a, b: a @ b, [(2, 4, 5), (5, 3)], {}, 1),
    "relu": (F.relu, [(3, 17)], {}, 1),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, padding=1), [(2, 3, 8, 7)], {}, 1),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, padding=1), [(2, 3, 8, 7)], {}, 1),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), [(2, 3, 7, 5)], {}, 1),
    "local_response_norm": (_lrn, [(2, 7, 4, 3)], {}, 1),
    "batch_norm": (_bn, [(4, 3, 5, 5), (3,), (3,)], _STATS, 1),
    "batch_norm_all_half": (_bn_half, [(4, 3, 5, 5), (3,), (3,)], {}, 1),
    "batch_norm_eval": (_bn_eval, [(4, 3, 5, 5), (3,), (3,)], _STATS, 1),
    "sum": (lambda x: x.sum(dim=1), [(4, 33)], {}, 1),
    "mean": (lambda x: x.mean(), [(4, 33)], {}, 1),
    "add": (lambda a, b: a + b, [(3, 4), (4,)], {}, 1),
    "mul": (lambda a, b: a * b, [(3, 4), (3, 1)], {}, 1),
    "cat": (lambda a, b: minicnn.cat([a, b], dim=1), [(2, 3), (2, 2)], {}, 1),
    "softmax": (lambda x: F.softmax(x, dim=1), [(4, 10)], {}, 16),
    "log_softmax": (lambda x: F.log_softmax(x, dim=1), [(4, 10)], {}, 16),
}


def _devices():
    return ["cpu", "emu"] + (["cuda"] if minicnn.backends.is_available("cuda") else [])


def _need_half(device, dtype):
    """Skip (with the reason) where the device's kernels do not take ``dtype`` yet: the emu/cuda
    half kernels come with issue 13's kernel half; the check runs a tiny half ReLU."""
    if device == "cpu":
        return
    backend = minicnn.backends.get_backend(device)
    try:
        backend.relu_forward(backend.from_numpy(np.zeros(4, dtype)))
    except TypeError as e:
        pytest.skip(f"{device} kernels do not take {dtype} yet: {e}")


@pytest.mark.parametrize("dtype", [minicnn.float16, minicnn.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("device", _devices())
def test_op_in_half_matches_float32_on_the_rounded_inputs(name, dtype, device):
    _need_half(device, dtype)
    fn, shapes, params, steps = OPS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrays = [_rounded(rng, s, dtype) for s in shapes]
    out, leaves = _run(fn, arrays, dtype, device, params)
    ref, ref_leaves = _run(fn, arrays, minicnn.float32, "cpu", params)
    assert out.dtype == dtype, f"{name} on {device}: output {out.dtype}"
    _close(out.float().numpy(), ref.numpy(), dtype, steps, f"{name} forward on {device}")
    dout = _rounded(rng, ref.shape, dtype)
    out.backward(minicnn.tensor(dout, device=device))
    ref.backward(minicnn.tensor(dout.astype(np.float32)))
    for i, (leaf, ref_leaf) in enumerate(zip(leaves, ref_leaves)):
        assert leaf.grad.dtype == minicnn.float32  # cast back to the float32 leaf
        _close(leaf.grad.numpy(), ref_leaf.grad.numpy(), dtype, 2 * steps, f"{name} d{i}")


def test_cross_entropy_on_half_logits():
    rng = np.random.default_rng(0)
    for dtype in (minicnn.float16, minicnn.bfloat16):
        logits = _rounded(rng, (6, 10), dtype, scale=3.0)
        target = minicnn.tensor(rng.integers(0, 10, 6))
        x = minicnn.tensor(logits.astype(np.float32), requires_grad=True)
        loss = F.cross_entropy(x.to(dtype), target)
        ref = F.cross_entropy(minicnn.tensor(logits.astype(np.float32)), target)
        _close(loss.float().numpy(), ref.numpy(), dtype, 32, "cross_entropy")
        loss.backward()
        assert x.grad.dtype == minicnn.float32


def test_batch_norm_half_input_keeps_float32_statistics():
    x = minicnn.randn(4, 3, 5, 5).bfloat16()
    rm, rv = minicnn.zeros(3), minicnn.ones(3)
    y = F.batch_norm(x, rm, rv, minicnn.ones(3), minicnn.zeros(3), training=True)
    assert y.dtype == minicnn.bfloat16 and rm.dtype == rv.dtype == minicnn.float32
    np.testing.assert_allclose(rm.numpy(), 0.1 * x.float().numpy().mean(axis=(0, 2, 3)), rtol=1e-5)


def test_an_all_half_batch_norm_updates_its_half_running_statistics():
    """model.to(float16), as torch's model.half(): the running buffers are half too."""
    x = minicnn.randn(4, 3, 5, 5) + 2.0
    rm, rv = minicnn.zeros(3, dtype=minicnn.float16), minicnn.ones(3, dtype=minicnn.float16)
    F.batch_norm(x.half(), rm, rv, minicnn.ones(3).half(), minicnn.zeros(3).half(), training=True)
    assert rm.dtype == minicnn.float16
    np.testing.assert_allclose(
        rm.numpy().astype(np.float32),
        0.1 * x.half().float().numpy().mean(axis=(0, 2, 3)),
        rtol=1e-3,
    )
