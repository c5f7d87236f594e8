"""BatchNorm2d / BatchNorm1d and LocalResponseNorm (torch.nn) over minicnn.functional."""

from __future__ import annotations

from typing import Optional

from .. import functional as F
from ..ops.norm import normalize
from ..tensor import Tensor, int64, ones, tensor, zeros
from . import init
from ._util import check_int, check_real, new_parameter
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm", "batch_norm_relu"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d (Ioffe & Szegedy 2015): y = (x - mean) / sqrt(var + eps) · γ + β.

    Training normalises with the batch statistics and, when ``track_running_stats``, updates
        running = (1 - m) · running + m · batch      (running_var with the unbiased batch variance)
    where m = ``momentum``, or 1 / num_batches_tracked (a cumulative average) when momentum is None.
    Evaluation normalises with the running statistics (or with the batch's when none are tracked).
    """

    _expected_dims = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Optional[str] = None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        name = self._get_name()
        self.num_features = check_int(name, "num_features", num_features)
        self.eps = check_real(name, "eps", eps, low=0)
        self.momentum = None if momentum is None else check_real(name, "momentum", momentum, 0, 1)
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = new_parameter((num_features,), device, dtype)
            if bias:
                self.bias = new_parameter((num_features,), device, dtype)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self._register_running_stats(device, dtype)
        self.reset_parameters()

    def _register_running_stats(self, device, dtype):
        kw = {"device": "cpu" if device is None else device}
        if self.track_running_stats:
            fdt = {"dtype": dtype} if dtype is not None else {}
            self.register_buffer("running_mean", zeros(self.num_features, **kw, **fdt))
            self.register_buffer("running_var", ones(self.num_features, **kw, **fdt))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, **kw))
        else:
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(buf, None)

    def _optional_state(self):
        return ("num_batches_tracked",) if self.track_running_stats else ()

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _check_input(self, input):
        name = self._get_name()
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in self._expected_dims:
            want = " or ".join(f"{d}-D" for d in self._expected_dims)
            raise ValueError(f"{name}: expected {want} input, got shape {input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected {self.num_features} channels (num_features), "
                f"got input of shape {input.shape}"
            )

    def _momentum_for_this_step(self):
        """torch's exponential_average_factor; counts the batch when tracking stats in training."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked._data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        return factor

    def _batch_norm_4d(self, x, relu=False):
        factor = self._momentum_for_this_step()
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        return normalize(
            relu,
            x,
            self.running_mean if use_running else None,
            self.running_var if use_running else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input over N, H, W for each of the C channels."""

    _expected_dims = (4,)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        return self._batch_norm_4d(input)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input over N (and L) for each channel."""

    _expected_dims = (2, 3)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input(input)
        shape = input.shape
        x = input.reshape(shape + (1,) * (4 - input.ndim))  # (N, C, L, 1): the same statistics
        return self._batch_norm_4d(x).reshape(shape)


class LocalResponseNorm(Module):
    """AlexNet's LRN (Krizhevsky et al. 2012, sec. 3.3), torch's convention:
    b_c = a_c / (k + alpha/size · Σ_{c' in window of size around c} a_c'²)^beta.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size = check_int("LocalResponseNorm", "size", size)
        self.alpha = check_real("LocalResponseNorm", "alpha", alpha)
        self.beta = check_real("LocalResponseNorm", "beta", beta)
        self.k = check_real("LocalResponseNorm", "k", k)

    def forward(self, input: Tensor) -> Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _hooked(module):
    return bool(module._forward_pre_hooks or module._forward_hooks)


def fusable_bn_relu(bn, relu) -> bool:
    """Whether ``relu(bn(x))`` is exactly the fused op: a BatchNorm2d and a ReLU (None: the
    functional F.relu) of these very classes (a subclass may override forward), no forward hooks."""
    from .activation import ReLU

    plain_relu = relu is None or (type(relu) is ReLU and not _hooked(relu))
    return type(bn) is BatchNorm2d and not _hooked(bn) and plain_relu


def batch_norm_relu(bn: Module, relu: Optional[Module], input: Tensor) -> Tensor:
    """``relu(bn(input))`` (``F.relu(bn(input))`` when relu is None), through the fused
    F.batch_norm_relu (one pass over memory fewer each way, the same numbers, state and
    gradients) when fusable_bn_relu(bn, relu), else the calls themselves. For models' bn → relu
    pairs; nn.Sequential fuses its adjacent pairs itself."""
    if not fusable_bn_relu(bn, relu):
        return F.relu(bn(input)) if relu is None else relu(bn(input))
    bn._check_input(input)
    return bn._batch_norm_4d(input, relu=True)
