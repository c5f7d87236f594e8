"""Data-parallel costs on this machine: MPI all-reduce bandwidth, and training scaling 1 -> N ranks.

    python benchmarks/bench_distributed.py [--nproc 2] [--model resnet20] [--batch 32] [--size 32]
                                           [--steps 8] [--sizes-mb 0.004 0.06 1 4 16 64] [--json F]

Starts itself under mpiexec (one thread per rank: OMP/OpenBLAS/the C++ pool), twice:

1. all-reduce: for each message size, the median and the best over repetitions of a float32 MPI
   Allreduce on ``--nproc`` ranks (each call timed on its slowest rank), as bus bandwidth
   2(N-1)/N · bytes / time (the figure that is comparable across N for a ring all-reduce). On a
   shared, busy machine the median includes the time a rank waits to be scheduled; the best
   shows what the memory system allows.
2. training: img/s of DDP steps (forward, backward with bucketed all-reduce, SGD momentum) of
   ``--model`` at a fixed per-rank batch (weak scaling), on 1 rank and on ``--nproc`` ranks;
   scaling efficiency = img/s(N) / (N · img/s(1)).

With 2 cores and 2 ranks each rank has one core to itself; a loaded machine lowers every figure.
Speed is never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch", type=int, default=32, help="images per rank per step")
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--steps", type=int, default=8, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--sizes-mb", type=float, nargs="+", default=[0.004, 0.06, 1, 4, 16, 64])
    p.add_argument("--sync-bn", action="store_true", help="convert BatchNorm to SyncBatchNorm")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--rank-job", choices=["allreduce", "train"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- inside the ranks -----------------------------------------------------------------------


def allreduce_job(args):
    import numpy as np

    import minicnn.distributed as dist

    dist.init_process_group("mpi")
    rows = []
    for mb in args.sizes_mb:
        a = np.ones(max(1, int(mb * 2**20 / 4)), dtype=np.float32)
        reps = max(3, min(50, int(64 / max(mb, 1e-3))))
        times = []
        for _ in range(reps + 1):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(a)
            times.append(time.perf_counter() - start)
        per_rank = []
        dist.all_gather_object(per_rank, times[1:])
        t = statistics.median(max(ts) for ts in zip(*per_rank))  # a call ends on its slowest rank
        best = min(max(ts) for ts in zip(*per_rank))
        n, nbytes = dist.get_world_size(), a.nbytes
        rows.append(
            {
                "bytes": nbytes,
                "seconds": t,
                "best_seconds": best,
                "algbw_GBps": nbytes / t / 1e9,
                "busbw_GBps": 2 * (n - 1) / n * nbytes / t / 1e9,
                "best_busbw_GBps": 2 * (n - 1) / n * nbytes / best / 1e9,
            }
        )
    return rows


def train_job(args):
    import numpy as np

    import minicnn
    import minicnn.distributed as dist
    from minicnn import functional as F
    from minicnn import models, nn, optim
    from minicnn.backends import get_backend

    get_backend("cpu").set_num_threads(1)
    dist.init_process_group("mpi")
    minicnn.manual_seed(0)
    model = models.get_model(args.model, num_classes=10)
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = nn.parallel.DistributedDataParallel(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(dist.get_rank())
    x = minicnn.tensor(rng.standard_normal((args.batch, 3, args.size, args.size)).astype("float32"))
    y = minicnn.tensor(rng.integers(0, 10, args.batch))
    times = []
    for step in range(args.steps + 2):
        dist.barrier()
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - start)
    t = statistics.median(times[2:])
    lst = []
    dist.all_gather_object(lst, t)
    n = dist.get_world_size()
    params = sum(p.numel() for p in model.parameters())
    return {
        "ranks": n,
        "step_s": max(lst),
        "img_per_s": n * args.batch / max(lst),
        "grad_MB": params * 4 / 2**20,
        "buckets": len(model._buckets),
    }


# ---- the driver -----------------------------------------------------------------------------


def run_ranks(nproc, job, argv):
    from minicnn.distributed.launch import mpiexec_command

    out = f"/tmp/bench_distributed_{os.getpid()}_{job}.json"
    command = mpiexec_command(nproc) + [
        sys.executable,
        os.path.abspath(__file__),
        *argv,
        "--rank-job",
        job,
        "--json",
        out,
    ]
    subprocess.run(command, check=True, env=dict(os.environ, **ONE_THREAD), timeout=1800)
    with open(out) as f:
        result = json.load(f)
    os.unlink(out)
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.rank_job:
        result = allreduce_job(args) if args.rank_job == "allreduce" else train_job(args)
        import minicnn.distributed as dist

        if dist.get_rank() == 0:
            with open(args.json, "w") as f:
                json.dump(result, f)
        return
    from minicnn.distributed.launch import without_option

    base = without_option(argv, "--json")  # the arguments to pass on to the ranks
    rows = run_ranks(args.nproc, "allreduce", base)
    print(f"MPI all-reduce, {args.nproc} ranks (float32; median and best of the calls):")
    print(f"{'size':>10} {'median':>10} {'busbw GB/s':>11} {'best':>10} {'busbw GB/s':>11}")
    for r in rows:
        print(
            f"{r['bytes'] / 2**20:>8.3f}MB {r['seconds'] * 1e3:>8.3f}ms "
            f"{r['busbw_GBps']:>11.2f} {r['best_seconds'] * 1e3:>8.3f}ms "
            f"{r['best_busbw_GBps']:>11.2f}"
        )
    one, many = run_ranks(1, "train", base), run_ranks(args.nproc, "train", base)
    efficiency = many["img_per_s"] / (args.nproc * one["img_per_s"])
    bn = " + SyncBatchNorm" if args.sync_bn else ""
    print(
        f"\n{args.model} DDP{bn} training, batch {args.batch}/rank at "
        f"{args.size}x{args.size}, 1 thread/rank ({one['grad_MB']:.2f} MB of gradients, "
        f"{many['buckets']} bucket(s)):"
    )
    for r in (one, many):
        print(
            f"  {r['ranks']} rank(s): {r['step_s'] * 1e3:.0f} ms/step, {r['img_per_s']:.1f} img/s"
        )
    print(f"  scaling efficiency {args.nproc} ranks: {100 * efficiency:.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"allreduce": rows, "train": [one, many], "efficiency": efficiency}, f, indent=2
            )


if __name__ == "__main__":
    main()
