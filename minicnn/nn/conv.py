"""Conv2d: a learnable 2-D convolution (torch.nn.Conv2d) over F.conv2d."""

from __future__ import annotations

import math
from typing import Optional, Union

from .. import functional as F
from ..ops.conv import IntPair, resolve_padding
from ..tensor import Tensor
from . import init
from ._util import check_int, check_pair, new_parameter
from .module import Module

__all__ = ["Conv2d"]


class Conv2d(Module):
    """y = conv2d(x, weight, bias): weight (K, C/groups, R, S), bias (K,).

    torch's constructor and defaults; ``padding`` may be an int, a pair, "valid" (0) or "same"
    (stride 1 only; an odd total padding puts the extra row/column at the bottom/right, as torch).
    Only ``padding_mode="zeros"`` is supported. Default init (torch's): weight
    kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias the same bound.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Union[IntPair, str] = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Optional[str] = None,
        dtype=None,
    ) -> None:
        super().__init__()
        name = "Conv2d"
        self.in_channels = check_int(name, "in_channels", in_channels)
        self.out_channels = check_int(name, "out_channels", out_channels)
        self.groups = check_int(name, "groups", groups)
        for what, n in (("in_channels", in_channels), ("out_channels", out_channels)):
            if n % groups:
                raise ValueError(f"{name}: {what} ({n}) must be divisible by groups ({groups})")
        self.kernel_size = check_pair(name, "kernel_size", kernel_size, 1)
        self.stride = check_pair(name, "stride", stride, 1)
        self.dilation = check_pair(name, "dilation", dilation, 1)
        self.padding = self._check_padding(padding)
        if padding_mode != "zeros":
            raise ValueError(
                f"{name}: padding_mode {padding_mode!r} is not supported; only 'zeros'"
            )
        self.padding_mode = padding_mode
        self.transposed, self.output_padding = False, (0, 0)
        self.weight = new_parameter(
            (out_channels, in_channels // groups) + self.kernel_size, device, dtype
        )
        if bias:
            self.bias = new_parameter((out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _check_padding(self, padding):
        """The functional's padding rules (ops/conv.py), checked early; "same"/"valid" are kept."""
        resolved, _ = resolve_padding(
            "Conv2d", padding, self.stride, self.dilation, self.kernel_size
        )
        return padding if isinstance(padding, str) else resolved

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
