"""Activation layers: ReLU, Softmax, LogSoftmax (torch.nn)."""

from __future__ import annotations

from typing import Optional

from .. import functional as F
from ..tensor import Tensor
from .module import Module

__all__ = ["LogSoftmax", "ReLU", "Softmax"]


class ReLU(Module):
    """y = max(x, 0). ``inplace`` is kept for torch compatibility (and repr); y is a new tensor."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, inplace=self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


def _implicit_dim(ndim):
    """torch's legacy choice of dim when none is given: 0 for 0-, 1- and 3-D input, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


class _AlongDim(Module):
    """A layer applying ``_fn(input, dim)`` (softmax, log_softmax) along one dimension."""

    _fn = None

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return self._fn(input, _implicit_dim(input.ndim) if self.dim is None else self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    _fn = staticmethod(F.softmax)


class LogSoftmax(_AlongDim):
    _fn = staticmethod(F.log_softmax)
