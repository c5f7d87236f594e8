"""Fused batch norm + ReLU, composed of a backend's own kernels.

The devices without a fused kernel (emu, cuda, and cpu for dtypes its C++ helpers do not take)
run ``relu(batch_norm(x))`` and its backward as the two ops would: the same kernels in the same
order, so the fused op's results equal the unfused path's there by construction. The cpu device
overrides both methods with one-pass C++ kernels (csrc/cpu/batchnorm.h).
"""

from __future__ import annotations


class ComposedBatchNormReLU:
    """batch_norm_relu_forward / _backward from batch_norm_* and relu_* of the same backend."""

    def batch_norm_relu_forward(
        self, x, weight, bias, running_mean, running_var, training, momentum, eps
    ):
        """(y, mean, invstd): y = max(0, batch_norm(x)); running statistics as batch_norm."""
        if training:
            z, mean, invstd = self.batch_norm_forward_training(
                x, weight, bias, running_mean, running_var, momentum, eps
            )
        else:
            z, mean, invstd = self.batch_norm_forward_inference(
                x, weight, bias, running_mean, running_var, eps
            )
        return self.relu_forward(z), mean, invstd

    def batch_norm_relu_backward(self, dout, y, x, weight, mean, invstd, training):
        """(dx, dweight, dbias): batch norm's backward of dout · [y > 0], y the fused output."""
        dz = self.relu_backward(dout, y)
        kernel = (
            self.batch_norm_backward_training if training else self.batch_norm_backward_inference
        )
        return kernel(dz, x, weight, mean, invstd)
