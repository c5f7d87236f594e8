"""minicnn.distributed: data-parallel training over MPI (processes, cpu tensors) and NCCL (GPUs),
mirroring torch.distributed.

    mpiexec -n 4 python train.py                 # or: minicnn train --nproc 4 …

    import minicnn.distributed as dist
    dist.init_process_group()                    # rank and size from mpiexec
    model = minicnn.nn.parallel.DistributedDataParallel(model)
    sampler = minicnn.data.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = minicnn.data.DataLoader(train_set, batch_size=64, sampler=sampler)

Needs the optional extra ``pip install 'minicnn[distributed]'`` (mpi4py and Open MPI's wheel);
NCCL needs CuPy with NCCL. Importing this package needs neither.
"""

from ._common import SUPPORTED_DTYPES, ReduceOp, Work
from .process_group import (
    BACKENDS,
    ProcessGroup,
    all_gather,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    destroy_process_group,
    get_backend,
    get_local_rank,
    get_local_world_size,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    is_nccl_available,
    new_group,
)

__all__ = [
    "BACKENDS",
    "ProcessGroup",
    "ReduceOp",
    "SUPPORTED_DTYPES",
    "Work",
    "all_gather",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "destroy_process_group",
    "get_backend",
    "get_local_rank",
    "get_local_world_size",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_nccl_available",
    "new_group",
]
