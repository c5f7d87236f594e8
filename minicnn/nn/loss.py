"""CrossEntropyLoss (torch.nn) over F.cross_entropy."""

from __future__ import annotations

from typing import Optional

from .. import functional as F
from ..tensor import Tensor
from ._util import check_int, check_real
from .module import Module

__all__ = ["CrossEntropyLoss"]

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average, reduce):
    """torch's mapping of the deprecated size_average/reduce flags to ``reduction``."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "mean" if (size_average and reduce) else "sum" if reduce else "none"


class CrossEntropyLoss(Module):
    """loss_n = -Σ_c w_c · q_{n,c} · log softmax(x_n)_c, with q the (smoothed) one-hot target.

    ``weight`` (C,) is registered as a buffer named "weight" (so it is in state_dict when given).
    """

    def __init__(
        self,
        weight: Optional[Tensor] = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"CrossEntropyLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        if weight is not None and (not isinstance(weight, Tensor) or weight.ndim != 1):
            raise ValueError(
                f"CrossEntropyLoss: weight must be a 1-D Tensor of class weights, got "
                f"{getattr(weight, 'shape', type(weight).__name__)}"
            )
        self.register_buffer("weight", weight)
        self.ignore_index = check_int(
            "CrossEntropyLoss", "ignore_index", ignore_index, minimum=-(2**63)
        )
        self.reduction = reduction
        self.label_smoothing = check_real(
            "CrossEntropyLoss", "label_smoothing", label_smoothing, 0, 1
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )
