"""The "nccl" backend: NCCL collectives (CuPy's ``cupy.cuda.nccl``) on CuPy arrays.

The communicator is created from a unique id that rank 0 draws and broadcasts over MPI; each rank
first selects GPU ``local rank`` (its rank among the processes of its node). Collectives run on a
dedicated stream that waits for the current stream's work, so they overlap with what the current
stream does next (DDP: the rest of backward); ``Work.wait()`` makes the current stream wait for
the collective (no host synchronisation).
"""

from __future__ import annotations

import socket

import numpy as np

from ._common import CompletedWork, ReduceOp, Work, check_dtype

NCCL_HINT = (
    "pip install 'minicnn[cuda]' (CuPy) and the NCCL wheel matching CuPy's CUDA "
    "(nvidia-nccl-cu12 or nvidia-nccl-cu13)"
)


def import_nccl():
    """(cupy, cupy.cuda.nccl), or ImportError saying what to install."""
    try:
        import cupy
    except ImportError as e:
        raise ImportError(f"backend 'nccl' needs CuPy ({e}); {NCCL_HINT}") from None
    try:
        from cupy.cuda import nccl

        if not getattr(nccl, "available", True):
            raise ImportError("CuPy was built without NCCL")
    except ImportError as e:
        raise ImportError(f"backend 'nccl' needs CuPy's NCCL support ({e}); {NCCL_HINT}") from None
    return cupy, nccl


def select_gpu(cupy, rank, local_rank):
    """Use GPU ``local_rank``; RuntimeError naming the rank and host when it does not exist."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as e:
        count, why = 0, f" ({e})"
    else:
        why = ""
    if local_rank >= count:
        raise RuntimeError(
            f"init_process_group: rank {rank} (local rank {local_rank}) on host "
            f"{socket.gethostname()} cannot see its GPU: {count} GPU(s) visible"
            f"{why}; "
            f"start at most {count} processes per node, or check "
            f"CUDA_VISIBLE_DEVICES"
        )
    cupy.cuda.Device(local_rank).use()
    return local_rank


class _NCCLWork(Work):
    def __init__(self, cupy, event, finish):
        self._cupy, self._event, self._finish, self._done = cupy, event, finish, False

    def wait(self):
        if not self._done:
            self._cupy.cuda.get_current_stream().wait_event(self._event)
            self._finish()
            self._done = True
        return True

    def is_completed(self):
        return self._done or self._event.done


class NCCLGroup:
    """NCCL collectives for CuPy arrays; ``mpi_group`` (an MPIGroup) carries the unique id."""

    backend = "nccl"

    def __init__(self, mpi_group, local_rank):
        self.cupy, self.nccl = import_nccl()
        self.rank, self.size = mpi_group.rank, mpi_group.size
        self.device = select_gpu(self.cupy, self.rank, local_rank)
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = mpi_group.broadcast_object(uid, 0)
        self.comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        self.stream = self.cupy.cuda.Stream(non_blocking=True)
        nccl = self.nccl
        self._dtypes = {
            np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64,
            np.dtype(np.int32): nccl.NCCL_INT32,
            np.dtype(np.int64): nccl.NCCL_INT64,
        }
        self._ops = {
            ReduceOp.SUM: nccl.NCCL_SUM,
            ReduceOp.AVG: nccl.NCCL_SUM,
            ReduceOp.MAX: nccl.NCCL_MAX,
            ReduceOp.MIN: nccl.NCCL_MIN,
            ReduceOp.PRODUCT: nccl.NCCL_PROD,
        }

    def _check(self, name, array, op=None):
        if not isinstance(array, self.cupy.ndarray):
            raise TypeError(
                f"{name}: backend 'nccl' works on cuda tensors, got a "
                f"{type(array).__module__}.{type(array).__name__}; use backend='mpi' "
                f"(or None) for cpu tensors"
            )
        check_dtype(name, array, op)
        if not array.flags.c_contiguous:
            raise ValueError(
                f"{name}: backend 'nccl' needs a contiguous tensor, got strides {array.strides}"
            )

    def _run(self, launch, async_op, finish=lambda: None):
        """Run ``launch(stream_ptr)`` on the NCCL stream after the current stream's work."""
        current = self.cupy.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        launch(self.stream.ptr)
        work = _NCCLWork(self.cupy, self.stream.record(), finish)
        if async_op:
            return work
        work.wait()
        return None

    def all_reduce(self, array, op, async_op=False):
        self._check("all_reduce", array, op)
        finish = (lambda: array.__itruediv__(self.size)) if op == ReduceOp.AVG else (lambda: None)
        return self._run(
            lambda s: self.comm.allReduce(
                array.data.ptr,
                array.data.ptr,
                array.size,
                self._dtypes[np.dtype(array.dtype)],
                self._ops[op],
                s,
            ),
            async_op,
            finish,
        )

    def broadcast(self, array, src, async_op=False):
        self._check("broadcast", array)
        return self._run(
            lambda s: self.comm.bcast(
                array.data.ptr, array.size, self._dtypes[np.dtype(array.dtype)], src, s
            ),
            async_op,
        )

    def all_gather(self, outputs, array):
        self._check("all_gather", array)
        gathered = self.cupy.empty((self.size,) + array.shape, dtype=array.dtype)
        self._run(
            lambda s: self.comm.allGather(
                array.data.ptr,
                gathered.data.ptr,
                array.size,
                self._dtypes[np.dtype(array.dtype)],
                s,
            ),
            False,
        )
        for out, part in zip(outputs, gathered):
            out[...] = part

    def barrier(self):
        one = self.cupy.zeros(1, dtype=np.float32)
        self.all_reduce(one, ReduceOp.SUM)
        self.cupy.cuda.get_current_stream().synchronize()

    def destroy(self):
        self.stream.synchronize()
        self.comm.destroy()


__all__ = ["CompletedWork", "NCCLGroup", "import_nccl", "select_gpu"]
