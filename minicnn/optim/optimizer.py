"""Optimizer: the base class of SGD, Adam and AdamW (torch.optim.Optimizer's interface).

An optimizer holds ``param_groups`` — a list of dicts, each with its ``params`` and its own
hyperparameters (``lr``, ``weight_decay``, …; missing ones come from the optimizer's defaults) — and
``state``, per-parameter buffers (momentum, Adam's moments) created on the first ``step``. Updates
work on the parameters' arrays in place (NumPy for cpu/emu, CuPy for cuda), so a parameter keeps its
identity and the model sees the new values without any copying.

``state_dict()`` is torch's layout with plain values and host NumPy arrays only:

    {"state": {0: {"momentum_buffer": ndarray}, …},
     "param_groups": [{"lr": 0.1, "momentum": 0.9, …, "params": [0, 1, …]}, …]}

(parameters are numbered in group order), so it can be written without pickle (see
``minicnn.train.save_checkpoint``) and loaded back into an optimizer over the same parameters.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Iterable, Optional, Union

import numpy as np

from ..backends import get_backend
from ..tensor import Tensor

# What an optimizer takes: tensors, or dicts of a "params" list and hyperparameters.
Params = Iterable[Union[Tensor, Dict[str, Any]]]

__all__ = ["Optimizer"]


def _check_number(name, value, low=0.0, high=None, inclusive_high=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if value < low or (
        high is not None and (value > high or (value == high and not inclusive_high))
    ):
        bound = (
            f"[{low}, {high}{']' if inclusive_high else ')'}" if high is not None else f">= {low}"
        )
        raise ValueError(f"Invalid {name}: {value} (expected {bound})")


class Optimizer:
    """Base class: subclasses set ``defaults`` and implement ``_update_group``."""

    def __init__(self, params: Params, defaults: Dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # id(param) -> dict of buffers (arrays on the param's device) and counters
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                "dicts, but got a Tensor"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Dict[str, Any]) -> None:
        """Add a dict with ``params`` (and optional hyperparameters that override the defaults)."""
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is "
                    f"{type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        _check_number("learning rate", group["lr"])

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- stepping -------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient (``set_to_none=False`` fills them with zeros)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad(set_to_none)

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss.

        The parameters of a group go to their backend together (``sgd_update``/``adam_update``):
        one fused kernel launch per group on "emu"/"cuda" (per device and dtype, if a group
        mixes them), NumPy on "cpu". Nothing is read back to the host."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for backend, params, grads in self._with_grads(group):
                self._update_group(group, backend, params, grads)
        return loss

    @staticmethod
    def _with_grads(group):
        """(backend, params, their gradient arrays) for each (device, dtype) of the group's
        parameters that have a gradient (a gradient of another dtype is converted)."""
        batches = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad._data
            if grad.dtype != p._data.dtype:
                grad = grad.astype(p._data.dtype)
            batches.setdefault((p.device, p._data.dtype.str), []).append((p, grad))
        for (device, _), items in batches.items():
            yield get_backend(device), [p for p, _ in items], [g for _, g in items]

    def _update_group(self, group, backend, params, grads):
        """Update the Tensors ``params`` in place from the arrays ``grads`` (one device and dtype
        of ``group``); ``self.state[id(p)]`` holds each parameter's buffers."""
        raise NotImplementedError

    # ---- saving ---------------------------------------------------------------------------------
    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> Dict[str, Any]:
        """torch's layout with host NumPy arrays and plain numbers (see the module docstring)."""
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {}
        for p in self._params():
            if id(p) in self.state and self.state[id(p)]:
                backend = get_backend(p.device)
                state[index[id(p)]] = {
                    k: (np.array(backend.to_numpy(v)) if hasattr(v, "shape") else v)
                    for k, v in self.state[id(p)].items()
                }
        groups = []
        for group in self.param_groups:
            g = {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in group.items()
                if k != "params"
            }
            g["params"] = [index[id(p)] for p in group["params"]]
            groups.append(g)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore hyperparameters and buffers saved by ``state_dict`` (same parameters, order)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(groups)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        for saved, group in zip(groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the "
                    "size of optimizer's group"
                )
        params = self._params()
        new_state = {}
        for key, buffers in state_dict["state"].items():
            p = params[int(key)]  # int(): keys come back as strings from JSON
            backend = get_backend(p.device)
            new_state[id(p)] = {}
            for name, value in buffers.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if tuple(value.shape) != p.shape:
                        raise ValueError(
                            f"optimizer state {name!r} of parameter {key} has shape "
                            f"{tuple(value.shape)}, the parameter has {p.shape}"
                        )
                    value = backend.from_numpy(np.array(value, dtype=p._data.dtype))
                elif isinstance(value, np.ndarray):
                    value = value.item()
                new_state[id(p)][name] = value
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state
