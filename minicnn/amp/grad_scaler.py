"""GradScaler: loss scaling for float16 training, with ``torch.amp.GradScaler``'s semantics.

float16 flushes gradients below 2^-24 to zero. Multiplying the loss by a large scale S moves the
gradients of backward up into float16's range; ``unscale_``/``step`` divide them by S again (in
float32, on the master weights' gradients) before the optimizer sees them. When a gradient holds an
inf or NaN (S was too large, or the forward overflowed), the step is skipped and S is halved
(``backoff_factor``); after ``growth_interval`` finite steps in a row S is doubled
(``growth_factor``), so it hovers near the largest scale that does not overflow:

    scaler = minicnn.amp.GradScaler()
    with minicnn.autocast("cuda"):
        loss = criterion(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)          # optional: clip the true gradients here
    scaler.step(optimizer)              # skipped if a gradient is not finite
    scaler.update()

The scale lives on the host as a float32 value; the inf check is one device-side reduction per
gradient, combined on the device, and read back once per step (``step``): one device→host sync.
bfloat16 has float32's exponent range and needs no scaler (``enabled=False`` makes every method a
pass-through, as in torch).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import get_backend
from ..dtypes import float16
from ..tensor import Tensor

__all__ = ["GradScaler"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


def _f32(x):
    return float(np.float32(x))


class GradScaler:
    """``GradScaler(device="cuda", init_scale=2**16, growth_factor=2.0, backoff_factor=0.5,
    growth_interval=2000, enabled=True)``; see the module docstring. ``steps_skipped`` counts the
    optimizer steps skipped for non-finite gradients (minicnn's addition, for the logs)."""

    def __init__(
        self,
        device="cuda",
        init_scale=2.0**16,
        growth_factor=2.0,
        backoff_factor=0.5,
        growth_interval=2000,
        enabled=True,
    ):
        self.device = device
        self._enabled = bool(enabled)
        self.steps_skipped = 0
        if not self._enabled:
            return
        _check_positive("init_scale", init_scale)
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(
                f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor!r}"
            )
        _check_interval(growth_interval)
        self._scale = _f32(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer = {}

    def is_enabled(self) -> bool:
        return self._enabled

    # ---- scaling and unscaling ------------------------------------------------------------------
    def scale(self, outputs):
        """``outputs`` (a Tensor, or nested lists/tuples of them) times the current scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(
            f"GradScaler.scale: outputs must be a Tensor or a list/tuple of Tensors, "
            f"got {type(outputs).__name__}"
        )

    def _state(self, optimizer):
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": None})

    def unscale_(self, optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale in place and record whether any is not
        finite (no sync). At most once per optimizer between two ``update()`` calls."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if state["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        state["found_inf"] = self._unscale_grads(optimizer, _f32(1.0 / self._scale))
        state["stage"] = _UNSCALED

    def _unscale_grads(self, optimizer, inv_scale):
        """found_inf: a device-side bool (0-d array) over every gradient, or False if none."""
        found = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad._data
                if g.dtype == float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                xp = get_backend(p.grad.device).xp
                bad = xp.logical_not(xp.isfinite(g).all())  # checked before the multiply
                found = bad if found is False else xp.logical_or(found, bad)
                g *= g.dtype.type(inv_scale)
        return found

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()`` unless the unscaled gradients hold an inf or NaN (then skipped:
        returns None). Unscales first if ``unscale_`` was not called."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        state["found_inf"] = _to_host(state["found_inf"])  # the one device -> host sync
        state["stage"] = _STEPPED
        if state["found_inf"]:
            self.steps_skipped += 1
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None) -> None:
        """Back off after a non-finite step, grow after ``growth_interval`` finite ones (or set
        ``new_scale``); then every optimizer is ready for the next iteration."""
        if not self._enabled:
            return
        if new_scale is not None:
            value = new_scale.item() if isinstance(new_scale, Tensor) else new_scale
            _check_positive("new_scale", value)
            self._scale = _f32(value)
        else:
            found = [s["found_inf"] for s in self._per_optimizer.values()]
            if not found:
                raise AssertionError("No inf checks were recorded prior to update.")
            self._update_scale(any(bool(f) for f in found))
        self._per_optimizer = {}

    def _update_scale(self, found_inf: bool) -> None:
        """torch's _amp_update_scale_: float32 arithmetic, a growth that overflows is dropped."""
        if found_inf:
            self._scale = _f32(self._scale * self._backoff_factor)
            self._growth_tracker = 0
            return
        successful = self._growth_tracker + 1
        if successful == self._growth_interval:
            grown = np.float32(self._scale) * np.float32(self._growth_factor)
            if np.isfinite(grown):
                self._scale = float(grown)
            successful = 0
        self._growth_tracker = successful

    # ---- getters, setters, state ----------------------------------------------------------------
    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval) -> None:
        _check_interval(new_interval)
        self._growth_interval = int(new_interval)

    def state_dict(self) -> dict:
        """torch's keys: scale, growth_factor, backoff_factor, growth_interval, _growth_tracker
        (empty when disabled)."""
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict) -> None:
        if not self._enabled:
            raise RuntimeError(
                "Attempting to load_state_dict on a disabled instance of GradScaler."
            )
        if len(state_dict) == 0:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved from a disabled "
                "instance of GradScaler."
            )
        self._scale = _f32(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


def _to_host(found_inf) -> bool:
    """Read the device-side inf flag back (a sync on "cuda"): once per step."""
    return bool(found_inf)


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"GradScaler: {name} must be a positive number, got {value!r}")
    if not np.isfinite(np.float32(value)):
        raise ValueError(f"GradScaler: {name} must be finite in float32, got {value!r}")


def _check_interval(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"GradScaler: growth_interval must be a positive integer, got {value!r}")
