"""Finite-difference gradient checks in float64.

For ``out = fn(*inputs)`` and a fixed random cotangent ``w`` (shaped like ``out``) the scalar
``L(x) = Σ out · w`` has the analytic gradient that ``out.backward(w)`` computes. We compare it with
central differences

    dL/dx_j ≈ (L(x + ε e_j) − L(x − ε e_j)) / 2ε          (per element, small inputs)
    <∇L, v> ≈ (L(x + ε v) − L(x − ε v)) / 2ε               (random unit directions v, large inputs)

The error of one comparison is |analytic − numeric| / max(|analytic|, |numeric|, floor), where
``floor`` = 1e-3 · the largest gradient magnitude of that input (so entries whose true gradient is
~0 are judged against the input's gradient scale, not against round-off). Central differences in
float64 with ε = 1e-6 are accurate to ~1e-8 relative; a wrong backward is off by O(1).

Non-differentiable points (ReLU at 0, ties inside a max-pool window) are avoided by the inputs, not
by the checker: :func:`separated` makes values whose pairwise gaps and distance from 0 exceed 2ε.
Random ops (dropout) must be made deterministic inside ``fn`` (seed them on every call).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .tensor import Tensor, float64

__all__ = ["gradcheck", "GradcheckResult", "InputReport", "separated"]


@dataclass
class InputReport:
    index: int  # position in ``inputs``
    shape: tuple
    mode: str  # "per-element" or "directional"
    checks: int  # number of finite differences compared
    worst_error: float  # worst relative error (see module docstring)


@dataclass
class GradcheckResult:
    passed: bool
    tolerance: float
    inputs: list = field(default_factory=list)

    @property
    def worst_error(self):
        return max((r.worst_error for r in self.inputs), default=0.0)

    def __bool__(self):
        return self.passed

    def __str__(self):
        rows = [
            f"input {r.index} {r.shape}: {r.mode}, {r.checks} checks, worst relative error "
            f"{r.worst_error:.2e}"
            for r in self.inputs
        ]
        verdict = "passed" if self.passed else "FAILED"
        return f"gradcheck {verdict} (tolerance {self.tolerance:.0e})\n  " + "\n  ".join(rows)


def separated(shape, seed=0, gap=1e-2, scale=1.0):
    """A float64 array of ``shape`` with all values distinct by ≥ ``gap`` and |value| ≥ gap/2.

    Values are a shuffled, centred ramp scaled to roughly ±``scale``: safe input for ReLU and max
    pooling under finite differences with ε ≪ gap.
    """
    n = int(np.prod(shape)) if len(shape) else 1
    rng = np.random.default_rng(seed)
    step = max(gap, 2.0 * scale / max(n, 1))
    ramp = (np.arange(n) - (n - 1) / 2.0) * step  # symmetric, never exactly 0 …
    ramp += np.where(ramp >= 0, gap / 2, -gap / 2)  # … and at least gap/2 away from it
    return rng.permutation(ramp).reshape(shape)


def _loss(fn, inputs, w):
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return float((out._data.astype(np.float64) * w).sum())


def _check_inputs(inputs):
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    targets = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not targets:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in targets:
        if inputs[i].dtype != float64:
            raise TypeError(
                f"gradcheck: input {i} must be float64 for finite differences, "
                f"got {inputs[i].dtype}"
            )
    return inputs, targets


def gradcheck(
    fn, inputs, *, eps=1e-6, tol=1e-5, max_elements=128, directions=8, seed=0, raise_exception=False
):
    """Compare ``fn``'s backward with central differences; returns a :class:`GradcheckResult`.

    Inputs with at most ``max_elements`` elements are checked element by element, larger ones
    along ``directions`` random unit directions. With ``raise_exception`` a failure raises
    ``AssertionError`` carrying the report.
    """
    inputs, targets = _check_inputs(inputs)
    rng = np.random.default_rng(seed)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    out = fn(*inputs)
    if not isinstance(out, Tensor) or not out.requires_grad:
        raise ValueError("gradcheck: fn must return a Tensor that depends on the inputs")
    w = rng.standard_normal(out.shape)
    out.backward(w.astype(out.dtype))
    result = GradcheckResult(True, tol)
    for i in targets:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy().astype(np.float64)
        if x.numel() <= max_elements:
            numeric = _numeric_per_element(fn, inputs, x, w, eps)
            floor = 1e-3 * max(
                np.abs(numeric).max(initial=0), np.abs(analytic).max(initial=0), 1e-12
            )
            err = np.abs(analytic - numeric) / np.maximum(
                np.maximum(np.abs(analytic), np.abs(numeric)), floor
            )
            report = InputReport(i, x.shape, "per-element", x.numel(), float(err.max(initial=0)))
        else:
            errs = []
            scale = 1e-3 * max(np.linalg.norm(analytic), 1e-12)
            for _ in range(directions):
                v = rng.standard_normal(x.shape)
                v /= np.linalg.norm(v)
                num = _directional(fn, inputs, x, w, v, eps)
                ana = float((analytic * v).sum())
                errs.append(abs(ana - num) / max(abs(ana), abs(num), scale))
            report = InputReport(i, x.shape, "directional", directions, float(max(errs)))
        result.inputs.append(report)
        result.passed &= report.worst_error <= tol
    if raise_exception and not result.passed:
        raise AssertionError(str(result))
    return result


def _numeric_per_element(fn, inputs, x, w, eps):
    flat = x._data.reshape(-1)  # a view: perturb in place, restore after
    if not np.shares_memory(flat, x._data):
        raise ValueError(
            "gradcheck: inputs must be contiguous arrays (make them with minicnn.tensor)"
        )
    numeric = np.empty(flat.size)
    with no_grad():
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = _loss(fn, inputs, w)
            flat[j] = orig - eps
            minus = _loss(fn, inputs, w)
            flat[j] = orig
            numeric[j] = (plus - minus) / (2 * eps)
    return numeric.reshape(x.shape)


def _directional(fn, inputs, x, w, v, eps):
    orig = x._data.copy()
    with no_grad():
        x._data[...] = orig + eps * v
        plus = _loss(fn, inputs, w)
        x._data[...] = orig - eps * v
        minus = _loss(fn, inputs, w)
    x._data[...] = orig
    return (plus - minus) / (2 * eps)
