"""SGD with momentum, Nesterov momentum and (L2) weight decay — torch.optim.SGD's update.

For each parameter p with gradient g, learning rate lr, momentum mu, dampening d, weight decay wd:

    g <- g + wd * p                                  (L2 penalty wd/2 |p|^2)
    b <- g                        on the first step  (momentum buffer)
    b <- mu * b + (1 - d) * g     afterwards
    g <- g + mu * b  (nesterov)   or   g <- b
    p <- p - lr * g

This is the formulation of Sutskever et al. 2013 as PyTorch writes it (lr multiplies the buffer
at use, not at accumulation), so a changing learning rate acts at once. Nesterov momentum evaluates
the step as if looking ahead along the buffer.
"""

from __future__ import annotations

from .optimizer import Optimizer, Params, _check_number

__all__ = ["SGD"]


class SGD(Optimizer):
    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_number("momentum value", group["momentum"])
        _check_number("weight_decay value", group["weight_decay"])
        _check_number("dampening value", group["dampening"])

    def _update_group(self, group, backend, params, grads):
        mu = group["momentum"]
        states = [self.state.setdefault(id(p), {}) for p in params]
        first = [mu != 0 and "momentum_buffer" not in s for s in states]
        for state, p, new in zip(states, params, first):
            if new:  # filled with the gradient by the update
                state["momentum_buffer"] = backend.xp.empty_like(p._data)
        for first_step in (True, False):  # both only on a step where some buffers are new
            pick = [i for i, f in enumerate(first) if f == first_step]
            if not pick:
                continue
            backend.sgd_update(
                [params[i]._data for i in pick],
                [grads[i] for i in pick],
                [states[i].get("momentum_buffer") for i in pick],
                lr=group["lr"],
                momentum=mu,
                dampening=group["dampening"],
                weight_decay=group["weight_decay"],
                nesterov=group["nesterov"],
                first_step=first_step,
            )
