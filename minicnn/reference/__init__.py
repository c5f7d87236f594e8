"""The plain definition of every op: naive loops in NumPy, forward and backward side by side.

This package is the library's one oracle (the tests compare every device and dtype against it) and
the page to read first: each function is an explicit loop over output positions or windows,
computed in float64, with the math in its docstring. It is slow on purpose; use tiny shapes.

The letters, used the same way everywhere in minicnn (kernels, backends, tests):

    N   batch size                      n   one image of the batch
    C   input channels                  c   one input channel
    H   input height                    h   an input row
    W   input width                     w   an input column
    K   output channels (conv filters)  k   one filter
    R   kernel height                   r   a row of the kernel
    S   kernel width                    s   a column of the kernel
    P   output height                   p   an output row
    Q   output width                    q   an output column

Arrays are NCHW: x (N, C, H, W), a conv weight (K, C/groups, R, S), y (N, K, P, Q). Gradients take
a ``d`` prefix (dy = ∂L/∂y, the gradient flowing back), backward functions return the gradients of
the inputs in the order of the forward's arguments, and results come first, as in llm.c.

    conv.py        conv2d (stride, padding, dilation, groups)
    pool.py        max_pool2d, avg_pool2d, adaptive_avg_pool2d, pool_output_size
    norm.py        local_response_norm, batch_norm
    elementwise.py relu, dropout (given its mask)
    linear.py      linear (the fully connected layer)
    loss.py        cross_entropy (class indices or probabilities), nll_loss
"""

from .conv import conv2d_backward, conv2d_forward
from .elementwise import dropout_backward, dropout_forward, relu_backward, relu_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward, nll_loss_backward, nll_loss_forward
from .norm import (
    batch_norm_backward,
    batch_norm_forward,
    local_response_norm_backward,
    local_response_norm_forward,
)
from .pool import (
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_output_size,
)

__all__ = [
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "batch_norm_backward",
    "batch_norm_forward",
    "conv2d_backward",
    "conv2d_forward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout_backward",
    "dropout_forward",
    "linear_backward",
    "linear_forward",
    "local_response_norm_backward",
    "local_response_norm_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "nll_loss_backward",
    "nll_loss_forward",
    "pool_output_size",
    "relu_backward",
    "relu_forward",
]
