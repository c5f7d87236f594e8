"""The torch.nn.functional-style API over minicnn's differentiable ops."""

from .ops.activation import log_softmax, relu, softmax
from .ops.conv import conv2d
from .ops.dropout import dropout
from .ops.linear import linear
from .ops.loss import cross_entropy, nll_loss
from .ops.lrn import local_response_norm
from .ops.norm import batch_norm, batch_norm_relu
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .ops.shape import flatten

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "batch_norm_relu",
    "conv2d",
    "cross_entropy",
    "dropout",
    "flatten",
    "linear",
    "local_response_norm",
    "log_softmax",
    "max_pool2d",
    "nll_loss",
    "relu",
    "softmax",
]
