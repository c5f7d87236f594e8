"""One-rank smoke test of the GPU path: ``python -m minicnn.distributed.smoke`` (gpu_check.sh).

A single lent GPU can run only a world of one, but that still exercises everything NCCL-specific:
the unique id broadcast over MPI, the communicator, all_reduce / broadcast / all_gather of CuPy
arrays on the collectives' own stream, and DDP steps of a small model on cuda (its buckets reduced
over NCCL, its BatchNorm a SyncBatchNorm) against the same steps without DDP. Exit status 0 when
all agree, 1 when a check fails, 2 when there is no GPU, CuPy, NCCL or mpi4py here (with the
reason). ``--device cpu`` runs the same checks over MPI on NumPy arrays (how the tests run it).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _collectives(xp, dist, sync):
    a = xp.arange(6, dtype=xp.float32)
    dist.all_reduce(a, dist.ReduceOp.SUM)
    dist.all_reduce(a, "avg")
    dist.broadcast(a, src=0)
    outs = [xp.zeros_like(a) for _ in range(dist.get_world_size())]
    dist.all_gather(outs, a)
    sync()
    expected = np.arange(6, dtype=np.float32) * dist.get_world_size()
    for name, got in [("all_reduce/broadcast", a)] + [("all_gather", out) for out in outs]:
        got = got.get() if hasattr(got, "get") else got
        if not np.array_equal(got, expected):
            raise AssertionError(f"{name} gave {got}, expected {expected}")


def _ddp_steps(minicnn, device):
    from minicnn import functional as F
    from minicnn import nn, optim

    def steps(wrap):
        minicnn.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 10),
        ).to(device)
        if wrap:
            model = nn.parallel.DistributedDataParallel(
                nn.SyncBatchNorm.convert_sync_batchnorm(model), bucket_cap_mb=0.001
            )
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
        x, y = minicnn.tensor(x, device=device), minicnn.tensor(np.arange(4), device=device)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return [p.numpy() for p in model.parameters()]

    for a, b in zip(steps(True), steps(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def main(argv=None):
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    device = args.parse_args(argv).device
    import minicnn
    from minicnn import distributed as dist

    try:
        dist.init_process_group("nccl" if device == "cuda" else "mpi")
    except (ImportError, RuntimeError) as e:
        print(f"minicnn.distributed.smoke: cannot run here: {e}", file=sys.stderr)
        return 2
    if device == "cuda":
        import cupy as xp

        sync = xp.cuda.get_current_stream().synchronize
    else:
        xp, sync = np, (lambda: None)
    where = f"{dist.get_backend()} rank {dist.get_rank()} of {dist.get_world_size()}"
    if device == "cuda":
        where += f" on GPU {dist.get_local_rank()}"
    try:
        _collectives(xp, dist, sync)
        _ddp_steps(minicnn, device)
    except AssertionError as e:
        print(f"minicnn.distributed.smoke: FAILED ({where}): {e}", file=sys.stderr)
        return 1
    finally:
        dist.destroy_process_group()
    print(f"minicnn.distributed.smoke: {where}: collectives and DDP + SyncBatchNorm steps agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
