"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) — torch.optim's updates.

For each parameter p with gradient g at step t (from 1), lr, betas (b1, b2), eps, weight decay wd:

    Adam:  g <- g + wd * p                         (L2 penalty folded into the gradient)
    AdamW: p <- p * (1 - lr * wd)                  (decoupled weight decay, sec. 2 of the AdamW paper)
    m <- b1 m + (1 - b1) g                         (first moment)
    v <- b2 v + (1 - b2) g^2                       (second moment)
    v_hat <- max(v_hat, v) if amsgrad else v
    p <- p - lr / (1 - b1^t) * m / (sqrt(v_hat) / sqrt(1 - b2^t) + eps)

(the bias corrections 1 - b^t undo the zero start of m and v, Algorithm 1 of the Adam paper; eps
is added after the correction, as PyTorch does).
"""

from __future__ import annotations

import math

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

    def _update(self, param, grad, state, group, xp):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd != 0:
            if self.decoupled:
                param *= 1 - lr * wd
            else:
                grad = grad + wd * param
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = xp.sqrt(v) / math.sqrt(1 - b2**t) + eps
        param -= (lr / (1 - b1**t)) * m / denom


class AdamW(Adam):
    decoupled = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
