"""DistributedSampler (torch.utils.data.distributed): each rank's disjoint share of a dataset.

    sampler = DistributedSampler(train_set, shuffle=True, seed=0)     # rank, size from dist
    loader = DataLoader(train_set, batch_size=64, sampler=sampler, num_workers=2)
    for epoch in range(epochs):
        loader.set_epoch(epoch)             # also sets the sampler's epoch (or sampler.set_epoch)

Epoch e's order is one permutation drawn from (seed, e) — the same on every rank — padded by
repeating its head to a multiple of the number of replicas (or cut to one with ``drop_last``);
rank r takes every num_replicas-th index from position r. So the shards are disjoint (before
padding), together they cover the dataset, and the order changes with the epoch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterator, Optional

import numpy as np

__all__ = ["DistributedSampler"]


def _world(num_replicas, rank):
    """(num_replicas, rank) from the arguments or, where None, the default process group."""
    if num_replicas is None or rank is None:
        from .. import distributed as dist

        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedSampler: pass num_replicas and rank, or call "
                "minicnn.distributed.init_process_group() first"
            )
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    for name, value in (("num_replicas", num_replicas), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"DistributedSampler: {name} must be an integer, got {value!r}")
    if num_replicas < 1:
        raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(
            f"DistributedSampler: invalid rank {rank}, rank should be in the "
            f"interval [0, {num_replicas - 1}]"
        )
    return int(num_replicas), int(rank)


class DistributedSampler:
    """Indices of rank ``rank``'s share of ``dataset`` for the current epoch (torch's semantics)."""

    def __init__(
        self,
        dataset: Any,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.dataset, self.shuffle, self.drop_last = dataset, shuffle, drop_last
        self.seed = int(seed)
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s order (the same on every rank)."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 array."""
        n = len(self.dataset)
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(n)
            if self.shuffle
            else np.arange(n)
        )
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > n:
            order = np.concatenate([order, np.resize(order, self.total_size - n)]) if n else order
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
