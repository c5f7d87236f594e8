"""DistributedDataParallel (torch.nn.parallel): one model replica per process, gradients averaged.

At wrap time rank 0's parameters and buffers are broadcast, so every replica starts equal; every
training forward broadcasts the buffers again (BatchNorm's running statistics). During backward
each parameter's post-accumulate-grad hook marks it ready; the parameters are grouped into buckets
of about ``bucket_cap_mb`` in reverse registration order (roughly the order backward produces
their gradients), and a bucket whose parameters are all ready is copied into one flat buffer and
all-reduced asynchronously while backward goes on. Buckets are launched strictly in index order,
so every rank starts the same collectives in the same order. When the last bucket is launched,
the reducer waits for all of them and writes the averaged gradients back into ``.grad``.

On cuda with the NCCL backend the all-reduces run on NCCL's own stream, overlapping with the rest
of backward on the current stream; on the CPU, MPI's non-blocking all-reduce progresses while the
next bucket's gradients are computed (as far as the MPI library progresses in the background).
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import distributed as dist
from ..autograd import is_grad_enabled
from ..distributed.process_group import _xp_of
from ..tensor import Tensor
from .module import Module

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters (in ready order), their offsets in one flat buffer, and the pending all-reduce."""

    def __init__(self, index, params):
        self.index, self.params = index, params
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.flat, self.work, self.ready = None, None, set()

    def pack(self):
        """Copy the gradients into the flat buffer (zeros for a parameter without one)."""
        p0 = self.params[0]
        xp = _xp_of(p0._data)
        if self.flat is None:
            self.flat = xp.empty(self.numel, dtype=p0.dtype)
        for p, off in zip(self.params, self.offsets):
            view = self.flat[off : off + p.numel()]
            if p.grad is None:
                view[...] = 0
            else:
                view[...] = p.grad._data.reshape(-1)
        return self.flat

    def unpack(self, world_size, used=None):
        """Write the summed gradients / world_size back into each parameter's ``.grad``."""
        self.flat /= world_size
        for i, (p, off) in enumerate(zip(self.params, self.offsets)):
            if used is not None and not used[i]:
                continue  # unused on every rank: its .grad stays as it was (None)
            grad = self.flat[off : off + p.numel()].reshape(p.shape)
            if p.grad is None:
                p.grad = Tensor(grad.copy(), p.device)
            else:
                p.grad._data[...] = grad


def _make_buckets(params, cap_bytes):
    """Buckets of parameters in reverse order, split on cap, dtype and device changes."""
    buckets, current, size = [], [], 0
    for p in reversed(params):
        same = not current or (current[0].dtype == p.dtype and current[0].device == p.device)
        if current and (size >= cap_bytes or not same):
            buckets.append(_Bucket(len(buckets), current))
            current, size = [], 0
        current.append(p)
        size += p.numel() * p.dtype.itemsize
    if current:
        buckets.append(_Bucket(len(buckets), current))
    return buckets


class DistributedDataParallel(Module):
    """Wrap ``module`` so that backward averages its gradients over all ranks.

    ``find_unused_parameters``: after each forward, find the parameters the output does not
    depend on and count them as ready (without it, a parameter that gets no gradient leaves its
    bucket unreduced and the next forward raises an error naming it). ``broadcast_buffers``:
    rank 0's buffers are broadcast at every training forward. ``no_sync()`` skips the reduction
    for gradient accumulation. The wrapped module is ``.module`` (state_dict keys ``module.…``).
    """

    def __init__(
        self,
        module,
        device_ids=None,
        output_device=None,
        broadcast_buffers=True,
        bucket_cap_mb=25,
        find_unused_parameters=False,
    ):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: module must be a minicnn.nn.Module, got "
                f"{type(module).__name__}"
            )
        if not dist.is_initialized():
            raise RuntimeError(
                "DistributedDataParallel: call minicnn.distributed."
                "init_process_group() first (and start with mpiexec -n N)"
            )
        if not bucket_cap_mb > 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb!r}"
            )
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        self.world_size = dist.get_world_size()
        self.process_group = dist.new_group()  # its collectives never interleave with others'
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = {id(p): n for n, p in named}
        self._sync_state(list(module.parameters()) + list(module.buffers()))
        self._buckets = _make_buckets([p for _, p in named], bucket_cap_mb * 1024 * 1024)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._handles = [p.register_post_accumulate_grad_hook(self._grad_ready) for _, p in named]
        self._reset_iteration()

    # ---- state sync --------------------------------------------------------------------------
    def _sync_state(self, tensors):
        """Broadcast ``tensors`` from rank 0, coalesced per (device, dtype) into flat buffers."""
        groups = {}
        for t in tensors:
            if t is not None and t.numel():
                groups.setdefault((t.device, t.dtype), []).append(t)
        for group in groups.values():
            xp = _xp_of(group[0]._data)
            flat = xp.concatenate([t._data.reshape(-1) for t in group])
            dist.broadcast(flat, src=0, group=self.process_group)
            offset = 0
            for t in group:
                t._data[...] = flat[offset : offset + t.numel()].reshape(t.shape)
                offset += t.numel()

    def sync_buffers(self):
        """Broadcast rank 0's buffers (BatchNorm's running statistics) to every rank: call it
        before evaluating on several ranks, as each rank's last training forward updated its own."""
        if self.world_size > 1:
            self._sync_state(list(self.module.buffers()))

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        syncing = is_grad_enabled() and self.require_backward_grad_sync
        if syncing:
            self._check_previous_reduction()
            self._reset_iteration()
        if self.broadcast_buffers and self.training:
            self.sync_buffers()
        out = self.module(*args, **kwargs)
        if syncing and self.find_unused_parameters:
            self._mark_unused(out)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Backward inside the block accumulates local gradients without reducing them; the
        first backward after the block reduces the accumulated sum."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def _reset_iteration(self):
        self._next_bucket, self._n_ready, self._used = 0, 0, None
        self._backward_started = False
        for b in self._buckets:
            b.work, b.ready = None, set()

    def _check_previous_reduction(self):
        if self._backward_started and 0 < self._n_ready < len(self._bucket_of):
            missing = [self._names[i] for i in self._bucket_of if i not in self._bucket_of[i].ready]
            for bucket in self._buckets:  # launched on every rank alike: complete them
                if bucket.work is not None:
                    bucket.work.wait()
            self._reset_iteration()
            raise RuntimeError(
                f"DistributedDataParallel: the previous backward did not produce a gradient for "
                f"{len(missing)} parameter(s): {', '.join(missing[:10])}"
                f"{' …' if len(missing) > 10 else ''}; their gradients were not averaged. Pass "
                f"find_unused_parameters=True if forward does not use every parameter, or make "
                f"the loss depend on all of the outputs"
            )

    def _mark_unused(self, out):
        """Count the parameters ``out`` does not depend on as ready (their gradients are zeros)."""
        reached = _reachable_leaves(out)
        self._used = {pid: pid in reached for pid in self._bucket_of}
        for pid, used in self._used.items():
            if not used:
                self._mark(pid)

    # ---- backward: the reducer ---------------------------------------------------------------
    def _grad_ready(self, param):
        if self.require_backward_grad_sync and id(param) in self._bucket_of:
            self._backward_started = True
            self._mark(id(param))

    def _mark(self, pid):
        bucket = self._bucket_of[pid]
        if pid in bucket.ready:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self._names[pid]} got its "
                f"gradient twice in one backward (reentrant backward or a shared "
                f"parameter used through retain_graph); not supported"
            )
        bucket.ready.add(pid)
        self._n_ready += 1
        self._launch_ready_buckets()
        if self._n_ready == len(self._bucket_of):
            self._finish()

    def _launch_ready_buckets(self):
        """All-reduce the complete buckets, strictly in index order (the same on every rank)."""
        while self._next_bucket < len(self._buckets):
            bucket = self._buckets[self._next_bucket]
            if len(bucket.ready) < len(bucket.params):
                return
            flat = bucket.pack()
            bucket.work = dist.all_reduce(
                flat, dist.ReduceOp.SUM, self.process_group, async_op=True
            )
            self._next_bucket += 1

    def _finish(self):
        used = self._global_used() if self._used is not None else None
        for bucket in self._buckets:
            bucket.work.wait()
            mask = None if used is None else [used[id(p)] for p in bucket.params]
            bucket.unpack(self.world_size, mask)
        self._n_ready = 0
        for b in self._buckets:
            b.ready = set()

    def _global_used(self):
        """{param id: used on some rank}: one small MAX all-reduce of the local use flags."""
        ids = list(self._bucket_of)
        flags = np.array([1 if self._used[i] else 0 for i in ids], dtype=np.int32)
        dist.all_reduce(flags, dist.ReduceOp.MAX, self.process_group)
        return {i: bool(f) for i, f in zip(ids, flags)}


def _reachable_leaves(out):
    """ids of the leaf tensors the graph of ``out`` (a Tensor, or tuples/lists/dicts) reaches."""
    stack = [t for t in _tensors_in(out) if isinstance(t, Tensor)]
    seen, leaves = set(), set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._node is None:
            leaves.add(id(t))
        else:
            stack.extend(i for i in t._node.inputs if i is not None)
    return leaves


def _tensors_in(out):
    """The Tensors in a forward's output: a Tensor, or tuples, namedtuples, lists, dicts of them."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors_in(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors_in(o)]
    return []
