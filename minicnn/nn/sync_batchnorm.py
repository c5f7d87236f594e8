"""SyncBatchNorm (torch.nn.SyncBatchNorm): batch normalization over the global batch of all ranks.

Each rank holds N_r samples; the statistics are those of the concatenated batch of
M = Σ_r N_r · (spatial size) values per channel. Forward: every rank computes its count, mean and
sum of squared deviations (M2) per channel in float64, one all_gather brings everyone's, and
Chan et al.'s pairwise update merges them exactly (no E[x²] − E[x]² cancellation):

    mean = Σ n_r mean_r / M,   M2 = Σ (M2_r + n_r (mean_r − mean)²),   var = M2 / M.

Backward: y_r depends on the statistics, which depend on every rank's x, so the gradient of the
global loss Σ_r L_r with respect to x_r needs two global sums per channel, all-reduced together:

    g = Σ_all dy,   h = Σ_all dy · (x − mean),
    dx = weight · invstd · (dy − g / M − (x − mean) · invstd² · h / M).

dweight = Σ_local dy · x̂ and dbias = Σ_local dy stay local: DistributedDataParallel averages
them with the other gradients. In evaluation mode, or without an initialized process group (or with
one rank), the layer is plain batch_norm, so a converted model also runs in one process.
"""

from __future__ import annotations

import numpy as np

from .. import distributed as dist
from ..autograd import Function
from ..ops._util import check_same_dtype
from .module import Module
from .normalization import _BatchNorm

__all__ = ["SyncBatchNorm"]


def _merge_stats(gathered):
    """(count, mean, M2) over all ranks from rows [count, mean (C), M2 (C)] (float64)."""
    C = (gathered.shape[1] - 1) // 2
    counts, means, m2s = gathered[:, :1], gathered[:, 1 : 1 + C], gathered[:, 1 + C :]
    total = counts.sum()
    mean = (counts * means).sum(axis=0) / total
    m2 = (m2s + counts * (means - mean) ** 2).sum(axis=0)
    return total, mean, m2


class SyncBatchNormFunction(Function):
    """Training-mode batch norm with global statistics; x is viewed as (N, C, L)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, momentum, eps):
        xp = ctx.xp
        x3 = x.reshape(x.shape[0], x.shape[1], -1)  # (N, C, L)
        n = x3.shape[0] * x3.shape[2]
        local_mean = x3.mean(axis=(0, 2), dtype=np.float64)
        local_m2 = ((x3 - local_mean[None, :, None]) ** 2).sum(axis=(0, 2), dtype=np.float64)
        row = xp.concatenate([xp.full(1, float(n)), local_mean, local_m2])
        rows = [xp.empty_like(row) for _ in range(dist.get_world_size())]
        dist.all_gather(rows, row)
        total, mean, m2 = _merge_stats(xp.stack(rows))
        total = float(total)
        if total <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel when "
                f"training, got {int(total)} over all ranks (input {x.shape})"
            )
        var = m2 / total
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += (momentum * var * total / (total - 1)).astype(running_var.dtype)
        mean, invstd = mean.astype(x.dtype), (1 / xp.sqrt(var + eps)).astype(x.dtype)
        y = (x3 - mean[None, :, None]) * invstd[None, :, None]
        if weight is not None:
            y = y * weight[None, :, None]
        if bias is not None:
            y = y + bias[None, :, None]
        ctx.save_for_backward(x3, weight, mean, invstd)
        ctx.total = total
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dout):
        x3, weight, mean, invstd = ctx.saved_tensors
        xp, needs = ctx.xp, ctx.needs_input_grad
        dy = dout.reshape(x3.shape)
        xmu = x3 - mean[None, :, None]
        sum_dy = dy.sum(axis=(0, 2), dtype=np.float64)
        sum_dy_xmu = (dy * xmu).sum(axis=(0, 2), dtype=np.float64)
        dweight = (sum_dy_xmu * invstd).astype(x3.dtype) if needs[3] else None
        dbias = sum_dy.astype(x3.dtype) if len(needs) > 4 and needs[4] else None
        dx = None
        if needs[0]:
            sums = xp.concatenate([sum_dy, sum_dy_xmu])
            dist.all_reduce(sums)  # the one backward collective
            C = x3.shape[1]
            g, h = (sums[:C] / ctx.total).astype(x3.dtype), (sums[C:] / ctx.total).astype(x3.dtype)
            scale = invstd if weight is None else invstd * weight
            dx = scale[None, :, None] * (
                dy - g[None, :, None] - xmu * (invstd**2 * h)[None, :, None]
            )
            dx = dx.reshape(dout.shape)
        return dx, None, None, dweight, dbias


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, ...) input whose training statistics span every rank's batch."""

    _expected_dims = (2, 3, 4, 5)

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        process_group=None,
        device=None,
        dtype=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if process_group is not None:
            raise NotImplementedError(
                "SyncBatchNorm: process_group other than the default (all "
                "ranks) is not supported yet"
            )
        self.process_group = None

    def forward(self, input):
        self._check_input(input)
        distributed = dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return self._batch_norm_4d(input)
        factor = self._momentum_for_this_step()
        use_running = self.track_running_stats
        rm, rv = (self.running_mean, self.running_var) if use_running else (None, None)
        check_same_dtype(
            "SyncBatchNorm",
            input=input,
            running_mean=rm,
            running_var=rv,
            weight=self.weight,
            bias=self.bias,
        )
        return SyncBatchNormFunction.apply(input, rm, rv, self.weight, self.bias, factor, self.eps)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm sharing its parameters
        and buffers (torch's helper); a BatchNorm passed directly is returned converted."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
            )
            for name in ("weight", "bias"):
                setattr(converted, name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(converted, name, getattr(module, name))
            converted.train(module.training)
            return converted
        if isinstance(module, Module):
            for name, child in list(module._modules.items()):
                if child is not None:
                    module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module
