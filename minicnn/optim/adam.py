"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) — torch.optim's updates.

For each parameter p with gradient g at step t (from 1), lr, betas (b1, b2), eps, weight decay wd:

    Adam:  g <- g + wd * p                         (L2 penalty folded into the gradient)
    AdamW: p <- p * (1 - lr * wd)                  (decoupled weight decay, AdamW paper sec. 2)
    m <- b1 m + (1 - b1) g                         (first moment)
    v <- b2 v + (1 - b2) g^2                       (second moment)
    v_hat <- max(v_hat, v) if amsgrad else v
    p <- p - lr / (1 - b1^t) * m / (sqrt(v_hat) / sqrt(1 - b2^t) + eps)

(the bias corrections 1 - b^t undo the zero start of m and v, Algorithm 1 of the Adam paper; eps
is added after the correction, as PyTorch does).
"""

from __future__ import annotations

import types
from typing import Tuple

from .optimizer import Optimizer, Params, _check_number

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    decoupled = False

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_number("epsilon value", group["eps"])
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        _check_number("beta parameter at index 0", betas[0], 0.0, 1.0)
        _check_number("beta parameter at index 1", betas[1], 0.0, 1.0)
        _check_number("weight_decay value", group["weight_decay"])

    def _update_group(self, group, backend, params, grads):
        states = [self._state(p, group, backend.xp) for p in params]
        for step in sorted({s["step"] for s in states}):  # one call, unless steps differ
            pick = [i for i, s in enumerate(states) if s["step"] == step]
            b1, b2 = group["betas"]
            backend.adam_update(
                [params[i]._data for i in pick],
                [grads[i] for i in pick],
                [states[i]["exp_avg"] for i in pick],
                [states[i]["exp_avg_sq"] for i in pick],
                step=step,
                lr=group["lr"],
                beta1=b1,
                beta2=b2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                decoupled=self.decoupled,
                max_exp_avg_sqs=(
                    [states[i]["max_exp_avg_sq"] for i in pick] if group["amsgrad"] else None
                ),
            )

    def _state(self, p, group, xp):
        """The parameter's state (its buffers made, zeros, on its first step), its step counted."""
        state = self.state.setdefault(id(p), {})
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p._data)
            state["exp_avg_sq"] = xp.zeros_like(p._data)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = xp.zeros_like(p._data)
        state["step"] += 1
        return state


def _with_defaults(init, **defaults):
    """A copy of the function ``init`` with other default values for some of its arguments."""
    code = init.__code__
    names = code.co_varnames[: code.co_argcount][-len(init.__defaults__) :]
    values = dict(zip(names, init.__defaults__), **defaults)  # keeps the argument order
    copy = types.FunctionType(
        code, init.__globals__, init.__name__, tuple(values.values()), init.__closure__
    )
    copy.__annotations__ = dict(init.__annotations__)
    return copy


class AdamW(Adam):
    """Adam with decoupled weight decay, by default 1e-2 (torch.optim.AdamW's signature)."""

    decoupled = True
    __init__ = _with_defaults(Adam.__init__, weight_decay=1e-2)
