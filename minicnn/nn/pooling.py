"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (torch.nn) over minicnn.functional.

Like torch, the attributes keep the values as given (``MaxPool2d(3, 2).kernel_size == 3``) and a
missing stride defaults to the kernel size.
"""

from __future__ import annotations

import numbers
from typing import Optional

from .. import functional as F
from ..ops.geometry import check_pool_padding
from ..ops.pool import IntPair
from ..tensor import Tensor
from ._util import check_int, check_pair
from .module import Module

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d"]


class _WindowPool2d(Module):
    """What MaxPool2d and AvgPool2d share: a window (kernel_size, stride, padding), validated early
    with the functional's rules (the op checks it again with the input, in Pool2dGeometry)."""

    def __init__(self, layer, kernel_size, stride, padding, dilation, ceil_mode) -> None:
        super().__init__()
        stride = kernel_size if stride is None else stride
        k = check_pair(layer, "kernel_size", kernel_size, 1)
        check_pair(layer, "stride", stride, 1)
        check_pair(layer, "dilation", dilation, 1)
        check_pool_padding(layer, k, check_pair(layer, "padding", padding, 0))
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode

    @property
    def _window(self):
        return self.kernel_size, self.stride, self.padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_WindowPool2d):
    """Max over each kernel_size window (overlapping when stride < kernel_size, as AlexNet's
    3/2)."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__("MaxPool2d", kernel_size, stride, padding, dilation, ceil_mode)
        self.dilation, self.return_indices = dilation, return_indices

    def forward(self, input: Tensor):
        options = dict(ceil_mode=self.ceil_mode, return_indices=self.return_indices)
        return F.max_pool2d(input, *self._window, self.dilation, **options)

    def extra_repr(self):
        return f"{super().extra_repr()}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class AvgPool2d(_WindowPool2d):
    """Mean over each window; ``count_include_pad`` counts padded zeros in the divisor."""

    def __init__(
        self,
        kernel_size: IntPair,
        stride: Optional[IntPair] = None,
        padding: IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
    ) -> None:
        super().__init__("AvgPool2d", kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None:
            check_int("AvgPool2d", "divisor_override", divisor_override)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor):
        divisor = (self.count_include_pad, self.divisor_override)
        return F.avg_pool2d(input, *self._window, self.ceil_mode, *divisor)


class AdaptiveAvgPool2d(Module):
    """Average into a fixed (P, Q) output whatever the input size; None keeps that input dim."""

    def __init__(self, output_size) -> None:
        super().__init__()
        sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
        if isinstance(output_size, (tuple, list)) and len(output_size) != 2:
            raise ValueError(
                f"AdaptiveAvgPool2d: output_size must be an int or a pair, got {output_size!r}"
            )
        for s in sizes:
            if s is not None and not (isinstance(s, numbers.Integral) and not isinstance(s, bool)):
                raise TypeError(
                    f"AdaptiveAvgPool2d: output_size must be ints or None, got {output_size!r}"
                )
            if s is not None and s < 1:
                raise ValueError(
                    f"AdaptiveAvgPool2d: output_size must be >= 1, got {output_size!r}"
                )
        self.output_size = output_size

    def forward(self, input: Tensor):
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
