"""minicnn.optim: SGD, Adam, AdamW and learning-rate schedules (torch.optim's names and semantics).

>>> opt = optim.SGD(optim.param_groups(model, weight_decay=5e-4), lr=0.1, momentum=0.9,
nesterov=True)
>>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
>>> for epoch in range(epochs):
...     for x, y in loader:
...         opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
...     sched.step()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler", "param_groups"]

if TYPE_CHECKING:
    from ..nn import Module


def param_groups(
    model: Module, weight_decay: float, no_decay_bn_bias: bool = True
) -> List[Dict[str, Any]]:
    """The model's parameters as optimizer groups: with ``no_decay_bn_bias``, biases and BatchNorm's
    scale/shift (every parameter with fewer than 2 dimensions) get no weight decay.

    Decaying them only pulls BN's scale towards 0 and biases towards a fixed point without
    regularising the function (Goyal et al. 2017, sec. 5.1 footnote; He et al. 2019 "Bag of
    Tricks", sec. 3.1), so it is common to exempt them.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_bn_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
