"""The default process group: init_process_group, rank/size queries and the collectives.

Rank and world size come from the MPI launcher (``mpiexec -n N python train.py``); a script run
without mpiexec is a world of one. Tensors are reduced in place: a minicnn Tensor (its array is
updated, so a Parameter stays the same object) or a NumPy / CuPy array.
"""

from __future__ import annotations

from ._common import ReduceOp, as_reduce_op
from ._mpi import MPIGroup, import_mpi
from .faults import install_fault_handlers

BACKENDS = ("mpi", "nccl")
_state = {"mpi": None, "nccl": None, "backend": None, "local_rank": 0}


def is_available():
    """Whether mpi4py and an MPI library can be imported (torch.distributed.is_available)."""
    try:
        import_mpi()
    except ImportError:
        return False
    return True


def is_nccl_available():
    from ._nccl import import_nccl

    try:
        import_nccl()
    except ImportError:
        return False
    return True


def is_initialized():
    return _state["mpi"] is not None


def _default_backend():
    """None -> "nccl" where CuPy's NCCL and a GPU are here, else "mpi"."""
    if not is_nccl_available():
        return "mpi"
    import cupy

    try:
        return "nccl" if cupy.cuda.runtime.getDeviceCount() > 0 else "mpi"
    except cupy.cuda.runtime.CUDARuntimeError:
        return "mpi"


def init_process_group(backend=None, *, abort_on_exception=True):
    """Join the job started by mpiexec (torch.distributed.init_process_group).

    ``backend``: "mpi" (every tensor over MPI; cuda tensors through host memory), "nccl" (cuda
    tensors over NCCL; the rank takes GPU ``local rank``), or None (NCCL for cuda tensors when
    CuPy's NCCL and a GPU are here, MPI for the rest). With ``abort_on_exception`` an uncaught
    exception on any rank prints that rank's traceback and aborts every rank (no hang).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"init_process_group: unknown backend {backend!r}; expected 'mpi', 'nccl' or None"
        )
    if is_initialized():
        raise RuntimeError(
            "init_process_group: the default process group is already initialized; "
            "call destroy_process_group() first"
        )
    MPI = import_mpi()
    comm = MPI.COMM_WORLD
    mpi = MPIGroup(comm)
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=mpi.rank)
    _state["local_rank"], _state["local_size"] = local.Get_rank(), local.Get_size()
    local.Free()
    name = _default_backend() if backend is None else backend
    nccl = None
    if name == "nccl":
        from ._nccl import NCCLGroup

        nccl = NCCLGroup(mpi, _state["local_rank"])
    _state.update(mpi=mpi, nccl=nccl, backend=name, explicit=backend)
    if abort_on_exception:
        install_fault_handlers(comm, mpi.rank, mpi.size)


def destroy_process_group():
    """Leave the process group (MPI itself is finalized at interpreter exit)."""
    _require("destroy_process_group")
    if _state["nccl"] is not None:
        _state["nccl"].destroy()
    _state.update(mpi=None, nccl=None, backend=None)


def _require(name):
    if not is_initialized():
        raise RuntimeError(
            f"{name}: the default process group has not been initialized; call "
            f"minicnn.distributed.init_process_group() first (and start the script "
            f"with mpiexec -n N)"
        )
    return _state["mpi"]


def get_rank():
    return _require("get_rank").rank


def get_world_size():
    return _require("get_world_size").size


def get_local_rank():
    """This process's rank among the processes of its node (its GPU number on cuda)."""
    _require("get_local_rank")
    return _state["local_rank"]


def get_local_world_size():
    """How many ranks run on this node."""
    _require("get_local_world_size")
    return _state["local_size"]


def get_backend():
    _require("get_backend")
    return _state["backend"]


def _array(name, tensor):
    """The array behind ``tensor`` (a minicnn Tensor, NumPy or CuPy array) to work on in place."""
    from ..tensor import Tensor

    if isinstance(tensor, Tensor):
        return tensor._data
    if hasattr(tensor, "dtype") and hasattr(tensor, "shape") and hasattr(tensor, "flags"):
        return tensor
    raise TypeError(
        f"{name}: expected a minicnn Tensor or a NumPy/CuPy array, got {type(tensor).__name__}"
    )


class ProcessGroup:
    """A group of all ranks with its own communicators (``new_group()``): its collectives never
    match another group's, so a library (DDP's reducer) can keep its own order of operations."""

    def __init__(self, mpi, nccl):
        self.mpi, self.nccl = mpi, nccl


def new_group():
    """A new group of all ranks (torch.distributed.new_group with ranks=None); collective call."""
    mpi = _require("new_group")
    dup = MPIGroup(mpi.comm.Dup())
    nccl = None
    if _state["nccl"] is not None:
        from ._nccl import NCCLGroup

        nccl = NCCLGroup(dup, _state["local_rank"])
    return ProcessGroup(dup, nccl)


def _xp_of(array):
    """The array module of ``array``: NumPy, or CuPy for a CuPy array."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    import numpy

    return numpy


def _group_for(name, array, group=None):
    """The group that carries ``array``: NCCL for CuPy arrays when NCCL is in use, else MPI."""
    _require(name)
    if group is not None:
        if not isinstance(group, ProcessGroup):
            raise TypeError(f"{name}: group must come from new_group(), got {type(group).__name__}")
        mpi, nccl = group.mpi, group.nccl
    else:
        mpi, nccl = _state["mpi"], _state["nccl"]
    on_gpu = type(array).__module__.startswith("cupy")
    if _state["backend"] == "nccl" and not on_gpu and _state.get("explicit") == "nccl":
        raise TypeError(
            f"{name}: backend 'nccl' works on cuda tensors, got a cpu array; use "
            f"init_process_group(backend='mpi') or backend=None for cpu tensors"
        )
    if on_gpu and nccl is not None:
        return nccl
    return mpi


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over all ranks, in place; op: SUM, AVG, MAX, MIN, PRODUCT (or names).

    ``async_op=True`` returns a Work whose ``wait()`` completes it; otherwise None.
    """
    array = _array("all_reduce", tensor)
    return _group_for("all_reduce", array, group).all_reduce(array, as_reduce_op(op), async_op)


def broadcast(tensor, src=0, group=None, async_op=False):
    """Overwrite ``tensor`` on every rank with rank ``src``'s, in place."""
    array = _array("broadcast", tensor)
    _check_rank("broadcast", "src", src)
    return _group_for("broadcast", array, group).broadcast(array, src, async_op)


def all_gather(tensor_list, tensor, group=None):
    """Fill ``tensor_list[r]`` with rank r's ``tensor`` (all shaped alike) on every rank."""
    array = _array("all_gather", tensor)
    outputs = [_array("all_gather", t) for t in tensor_list]
    size = get_world_size()
    if len(outputs) != size:
        raise ValueError(
            f"all_gather: tensor_list has {len(outputs)} entries, the world has {size}"
        )
    for i, out in enumerate(outputs):
        if tuple(out.shape) != tuple(array.shape):
            raise ValueError(
                f"all_gather: tensor_list[{i}] has shape {tuple(out.shape)}, the "
                f"input has {tuple(array.shape)}"
            )
    _group_for("all_gather", array, group).all_gather(outputs, array)


def barrier():
    """Block until every rank has called barrier()."""
    _require("barrier").barrier()


def broadcast_object_list(object_list, src=0):
    """Replace ``object_list``'s items on every rank with rank ``src``'s (picklable objects)."""
    _check_rank("broadcast_object_list", "src", src)
    objects = _require("broadcast_object_list").broadcast_object(list(object_list), src)
    object_list[:] = objects


def all_gather_object(object_list, obj):
    """Fill ``object_list`` (length world size) with every rank's ``obj``."""
    gathered = _require("all_gather_object").all_gather_object(obj)
    object_list[:] = gathered


def _check_rank(name, arg, value):
    size = get_world_size()
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise ValueError(f"{name}: {arg} must be a rank in [0, {size}), got {value!r}")
