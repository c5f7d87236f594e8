"""The "mpi" backend: collectives of mpi4py on host (NumPy) arrays.

CuPy arrays are staged through host memory (an MPI library need not be CUDA-aware); on cuda the
"nccl" backend is the fast path. Non-blocking collectives (``async_op=True``) are MPI's
``Iallreduce``/``Ibcast``: every rank must start them in the same order, which callers (the DDP
reducer) guarantee.
"""

from __future__ import annotations

import numpy as np

from ._common import ReduceOp, Work, check_dtype

EXTRA_HINT = "pip install 'minicnn[distributed]' (mpi4py and Open MPI's wheel)"


def import_mpi():
    """mpi4py's MPI module, or ImportError naming the extra that brings it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            f"minicnn.distributed needs mpi4py and an MPI library ({e}); {EXTRA_HINT}"
        ) from None
    return MPI


class _MPIWork(Work):
    def __init__(self, request, finish):
        self._request, self._finish, self._done = request, finish, False

    def wait(self):
        if not self._done:
            self._request.Wait()
            self._finish()
            self._done = True
        return True

    def is_completed(self):
        return self._done or bool(self._request.Test())


class MPIGroup:
    """Collectives over an mpi4py communicator (COMM_WORLD by default)."""

    backend = "mpi"

    def __init__(self, comm):
        self.MPI = import_mpi()
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._ops = {
            ReduceOp.SUM: self.MPI.SUM,
            ReduceOp.AVG: self.MPI.SUM,
            ReduceOp.MAX: self.MPI.MAX,
            ReduceOp.MIN: self.MPI.MIN,
            ReduceOp.PRODUCT: self.MPI.PROD,
        }

    def _host(self, array):
        """(contiguous NumPy buffer, write-back function) for ``array`` (NumPy or CuPy)."""
        if isinstance(array, np.ndarray):
            if array.flags.c_contiguous:
                return array, lambda: None
            buf = np.ascontiguousarray(array)
            return buf, lambda: array.__setitem__(Ellipsis, buf)
        buf = array.get()  # CuPy: through the host
        return (
            buf,
            lambda: (
                array.set(buf)
                if array.flags.c_contiguous
                else array.__setitem__(Ellipsis, type(array)(buf))
            ),
        )

    def all_reduce(self, array, op, async_op=False):
        check_dtype("all_reduce", array, op)
        buf, write_back = self._host(array)

        def finish():
            if op == ReduceOp.AVG:
                buf[...] /= self.size
            write_back()

        if not async_op:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
            finish()
            return None
        return _MPIWork(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._ops[op]), finish)

    def broadcast(self, array, src, async_op=False):
        check_dtype("broadcast", array)
        buf, write_back = self._host(array)
        if not async_op:
            self.comm.Bcast(buf, root=src)
            write_back()
            return None
        return _MPIWork(self.comm.Ibcast(buf, root=src), write_back)

    def all_gather(self, outputs, array):
        check_dtype("all_gather", array)
        buf, _ = self._host(array)
        gathered = np.empty((self.size,) + buf.shape, dtype=buf.dtype)
        self.comm.Allgather(buf, gathered)
        for out, part in zip(outputs, gathered):
            if isinstance(out, np.ndarray):
                out[...] = part
            else:
                out.set(np.ascontiguousarray(part))

    def barrier(self):
        self.comm.Barrier()

    def broadcast_object(self, obj, src):
        return self.comm.bcast(obj, root=src)

    def all_gather_object(self, obj):
        return self.comm.allgather(obj)

    def destroy(self):
        pass  # COMM_WORLD is MPI's to free at exit
