"""Dropout (Srivastava et al. 2014; AlexNet, VGG): zero each element with chance p in training."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from ._util import check_real
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """In training: y = x · mask / (1 - p), mask ~ Bernoulli(1 - p); in eval: y = x."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = check_real("Dropout", "p (the dropout probability)", p, 0, 1)
        if self.p == 1:  # as F.dropout: p must lie in [0, 1)
            raise ValueError("Dropout: p (the dropout probability) must be in [0, 1), got 1")
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
