"""What ``minicnn train`` needs to run data-parallel: joining the job, sharding, summing metrics,
and ``--nproc N`` (starting mpiexec on this machine).

The run's ``--batch-size`` is the global batch: each of N ranks takes batch/N images per step, so
the optimisation (batch, learning rate, steps per epoch, schedule) does not depend on N and a run
can be resumed with another N.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np

from . import process_group as pg
from .launch import launched_by_mpi, mpiexec_command

__all__ = ["EvalShard", "World", "join", "launch", "per_rank_batch", "sum_over_ranks"]


class World:
    """This process's place in the job: ``rank``, ``size``, ``main`` (rank 0 writes files)."""

    def __init__(self, rank=0, size=1):
        self.rank, self.size = rank, size
        self.main = rank == 0
        self.distributed = size > 1

    def barrier(self):
        if self.distributed:
            pg.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        pg.broadcast_object_list(box, src=0)
        return box[0]


def join(device):
    """Join the MPI job when started by mpiexec with more than one rank, else a World of one.

    Backend: NCCL for cuda (when CuPy has it), MPI otherwise. Each rank of a job gets a share of
    the node's cores for its threads unless OMP_NUM_THREADS says otherwise.
    """
    if not launched_by_mpi():
        return World()
    if not pg.is_initialized():
        pg.init_process_group("nccl" if device == "cuda" and pg.is_nccl_available() else "mpi")
    world = World(pg.get_rank(), pg.get_world_size())
    if device == "cuda" and pg.get_backend() == "mpi":  # NCCL's init selected the GPU already
        import cupy

        from ._nccl import select_gpu

        select_gpu(cupy, world.rank, pg.get_local_rank())
    if world.distributed and not {"MINICNN_NUM_THREADS", "OMP_NUM_THREADS"} & set(os.environ):
        _share_cores(world)
    return world


def _share_cores(world):
    from ..backends import get_backend

    local = pg.get_local_world_size()
    get_backend("cpu").set_num_threads(max(1, (os.cpu_count() or 1) // local))


def per_rank_batch(batch_size, world):
    """The global batch split over the ranks; ValueError when it does not divide."""
    if batch_size % world.size:
        raise ValueError(
            f"--batch-size {batch_size} is the global batch and must be divisible "
            f"by the number of processes ({world.size})"
        )
    return batch_size // world.size


class EvalShard:
    """Rank r's indices r, r + N, r + 2N, … of a dataset of ``n``: every sample exactly once over
    all ranks (no padding, unlike DistributedSampler), so summed counts are exact."""

    def __init__(self, n, world):
        self.indices = np.arange(world.rank, n, world.size, dtype=np.int64)

    def __iter__(self):
        return iter(self.indices.tolist())

    def __len__(self):
        return len(self.indices)


def sum_over_ranks(values, world):
    """{name: number} summed over all ranks (float64), the same dict on every rank."""
    if not world.distributed:
        return dict(values)
    keys = sorted(values)
    array = np.array([float(values[k]) for k in keys], dtype=np.float64)
    pg.all_reduce(array)
    return dict(zip(keys, array.tolist()))


def launch(argv, nproc):
    """Run ``python -m minicnn ARGV`` on ``nproc`` ranks under mpiexec; its exit status.

    Ctrl-C reaches mpiexec, which stops every rank; the checkpoints already written stay valid.
    """
    command = mpiexec_command(nproc) + [sys.executable, "-m", "minicnn", *argv]
    threads = str(max(1, (os.cpu_count() or 1) // nproc))  # the ranks share the cores
    env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, **os.environ}
    proc = subprocess.Popen(command, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130


def wrap_model(model, world, config):
    """The DistributedDataParallel wrapper of ``model`` (SyncBatchNorm first with
    ``config.sync_bn``), or None in a world of one."""
    if not world.distributed:
        return None
    from ..nn import SyncBatchNorm
    from ..nn.parallel import DistributedDataParallel

    if getattr(config, "sync_bn", False):
        SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model)


def sum_epoch(world, loss, top1, images, val):
    """An epoch's train (mean loss, top-1, images) and val metrics over every rank's share."""
    if not world.distributed:
        return loss, top1, images, val
    n_val = val["images"]
    sums = sum_over_ranks(
        {
            "loss": loss * images,
            "correct": top1 * images,
            "images": images,
            "val_loss": val["loss"] * n_val,
            "val_top1": val["top1"] * n_val,
            "val_top5": val["top5"] * n_val,
            "val_images": n_val,
        },
        world,
    )
    seen, val_seen = max(sums["images"], 1), max(sums["val_images"], 1)
    val = {
        "loss": sums["val_loss"] / val_seen,
        "top1": sums["val_top1"] / val_seen,
        "top5": sums["val_top5"] / val_seen,
        "images": int(sums["val_images"]),
    }
    return sums["loss"] / seen, sums["correct"] / seen, int(sums["images"]), val
