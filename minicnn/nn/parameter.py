"""Parameter: a Tensor that a Module registers as learnable (torch.nn.Parameter)."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor, float32, tensor


class Parameter(Tensor):
    """A leaf Tensor, ``requires_grad=True`` by default, that Modules collect in ``parameters()``.

    ``Parameter(t)`` shares ``t``'s storage (as torch does); arrays and lists are copied into a new
    tensor. ``Parameter()`` is an empty float32 tensor of shape (0,).
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array, device = np.empty((0,), dtype=float32), "cpu"
        elif isinstance(data, Tensor):
            array, device = data._data, data.device
        else:
            t = tensor(data)
            array, device = t._data, t.device
        super().__init__(array, device, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
