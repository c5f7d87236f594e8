"""One-rank smoke test of the GPU path: ``python -m minicnn.distributed.smoke`` (gpu_check.sh).

A single lent GPU can run only a world of one, but that still exercises everything NCCL-specific:
the unique id broadcast over MPI, the communicator, all_reduce / broadcast / all_gather of CuPy
arrays on the collectives' own stream, and one DDP step of a small model on cuda (its buckets
reduced over NCCL) against the same step without DDP. Exit status 0 when all agree, 1 when a
check fails, 2 when there is no GPU, CuPy, NCCL or mpi4py here (with the reason).
"""
from __future__ import annotations

import sys

import numpy as np


def _collectives(cupy, dist):
    a = cupy.arange(6, dtype=cupy.float32)
    dist.all_reduce(a, dist.ReduceOp.SUM)
    dist.all_reduce(a, "avg")
    dist.broadcast(a, src=0)
    outs = [cupy.zeros_like(a)]
    dist.all_gather(outs, a)
    cupy.cuda.get_current_stream().synchronize()
    expected = np.arange(6, dtype=np.float32)
    for name, got in (("all_reduce/broadcast", a), ("all_gather", outs[0])):
        if not np.array_equal(cupy.asnumpy(got), expected):
            raise AssertionError(f"{name} over NCCL gave {cupy.asnumpy(got)}, expected {expected}")


def _ddp_step(minicnn, dist):
    from minicnn import functional as F
    from minicnn import nn, optim

    def step(wrap):
        minicnn.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).to("cuda")
        if wrap:
            model = nn.parallel.DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(
                model), bucket_cap_mb=0.001)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = minicnn.tensor(np.random.default_rng(0).standard_normal((4, 3, 8, 8)), device="cuda")
        y = minicnn.tensor(np.arange(4), device="cuda")
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    for a, b in zip(step(True), step(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def main():
    import minicnn
    from minicnn import distributed as dist
    try:
        dist.init_process_group("nccl")
    except (ImportError, RuntimeError) as e:
        print(f"minicnn.distributed.smoke: cannot run here: {e}", file=sys.stderr)
        return 2
    import cupy
    gpu = dist.get_local_rank()
    try:
        _collectives(cupy, dist)
        _ddp_step(minicnn, dist)
    except AssertionError as e:
        print(f"minicnn.distributed.smoke: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        dist.destroy_process_group()
    print(f"minicnn.distributed.smoke: NCCL rank 0 of 1 on GPU {gpu}: collectives and a DDP + "
          f"SyncBatchNorm step agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
