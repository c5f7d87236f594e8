"""Learning-rate schedules (torch.optim.lr_scheduler's names and values).

A scheduler sets every param group's ``lr`` from the group's ``initial_lr`` (recorded when the first
scheduler is attached) and a counter ``last_epoch``, advanced by ``step()``. The counter counts
whatever you call ``step()`` for: epochs, as in PyTorch's examples, or iterations (``minicnn train``
steps once per batch, so warm-up and cosine decay are smooth even for runs of a few epochs). With
``t = last_epoch`` and ``base`` = the group's initial lr:

    StepLR             base * gamma ** (t // step_size)
    MultiStepLR        base * gamma ** (number of milestones <= t)
    CosineAnnealingLR  eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2
                       (SGDR without restarts)
    LinearLR           base * (start + (end - start) * min(t, total_iters) / total_iters)
                       (linear warm-up)
    SequentialLR       schedulers[i] from milestones[i-1] on, its own t restarting at 0 there

Each is computed in closed form, so a schedule restored with ``load_state_dict`` continues exactly.
``state_dict()`` holds plain numbers and lists only.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List, Optional, Sequence

from .optimizer import Optimizer

__all__ = ["CosineAnnealingLR", "LRScheduler", "LinearLR", "MultiStepLR", "SequentialLR", "StepLR"]


class LRScheduler:
    """Base class: subclasses implement ``_lr_at(t)``, the groups' learning rates at step t."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        f"resuming an optimizer"
                    )
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def _lr_at(self, t):
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        """The learning rates at the current ``last_epoch``."""
        return self._lr_at(self.last_epoch)

    def get_last_lr(self) -> List[float]:
        """The learning rates set by the last ``step()``."""
        return list(self._last_lr)

    def step(self, epoch: Optional[int] = None) -> None:
        """Advance ``last_epoch`` by one (or set it to ``epoch``); set the groups' lr."""
        self._step_count += 1
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        self._last_lr = [float(lr) for lr in self._lr_at(self.last_epoch)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def state_dict(self) -> Dict[str, Any]:
        """Every attribute but the optimizer: plain numbers and lists."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in self.__dict__.items()
            if k != "optimizer"
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.__dict__.update(state_dict)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t):
        return [base * self.gamma ** (t // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each of the ``milestones`` (step counts)."""

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.milestones, self.gamma = sorted(int(m) for m in milestones), gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t):
        return [
            base * self.gamma ** bisect.bisect_right(self.milestones, t) for base in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from the base lr to ``eta_min`` in ``T_max`` steps (Loshchilov-Hutter 2017)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t):
        c = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` in ``total_iters`` steps."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(
                "LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                f"{start_factor!r} and {end_factor!r}"
            )
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t):
        progress = min(t, self.total_iters) / self.total_iters if self.total_iters > 0 else 1.0
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` (its count restarted), …

    ``SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=w), CosineAnnealingLR(opt, T - w)], [w])``
    is linear warm-up followed by cosine decay.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ) -> None:
        if len(schedulers) < 1 or len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: expected {len(schedulers) - 1} milestones for "
                f"{len(schedulers)} schedulers, got {len(milestones)}"
            )
        for s in schedulers:
            if s.optimizer is not optimizer:
                raise ValueError("SequentialLR: every scheduler must belong to the same optimizer")
        self._schedulers, self._milestones = list(schedulers), [int(m) for m in milestones]
        for group in optimizer.param_groups:  # undo the first step each scheduler took when built
            group["lr"] = group["initial_lr"]
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, t):
        i = bisect.bisect_right(self._milestones, t)
        start = self._milestones[i - 1] if i > 0 else 0
        scheduler = self._schedulers[i]
        scheduler.last_epoch = t - start
        return scheduler._lr_at(t - start)

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state = dict(state_dict)
        for scheduler, sub in zip(self._schedulers, state.pop("_schedulers")):
            scheduler.load_state_dict(sub)
        self.__dict__.update(state)
