"""The cpu device's per-element passes at model sizes (issue 16): batch norm, BN+ReLU fused and
unfused, ReLU, LRN (C++ and the NumPy definition), the engine's gradient sums.

    python benchmarks/bench_elementwise.py [--threads 1 2] [--batch 16] [--repeats 9]

Each row is forward+backward of one op on the cpu device (minicnn ops, autograd included), the
median of ``--repeats`` runs: wall milliseconds and CPU/wall (the cores it kept busy) per thread
count, and the speedup from the first count to the last. The load average is printed before and
after: on a shared machine, read CPU/wall and the 1-thread figures. Speed is never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _common import early_threads, load_average, set_threads

early_threads(default=1)  # before NumPy loads

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
import minicnn.functional as F  # noqa: E402
from minicnn.backends import _np_norm  # noqa: E402


def _bn_args(C, rng):
    t = minicnn.tensor
    w = t(rng.uniform(0.5, 1.5, C).astype(np.float32), requires_grad=True)
    b = t(rng.standard_normal(C).astype(np.float32), requires_grad=True)
    return (t(np.zeros(C, np.float32)), t(np.ones(C, np.float32)), w, b, True)


def _step(fn):
    """forward + backward of fn(x) for a fresh leaf x of the case's shape."""

    def run(x):
        x.grad = None
        fn(x).backward(minicnn.ones(*x.shape))

    return run


def cases(batch):
    rng = np.random.default_rng(0)
    out = []
    for C, hw in ((64, 32), (256, 8), (512, 2)):
        args = _bn_args(C, rng)
        shape = (batch, C, hw, hw)
        tag = f"{C}x{hw}x{hw}"
        out.append(
            (f"bn+relu fused {tag}", shape, _step(lambda x, a=args: F.batch_norm_relu(x, *a)))
        )
        out.append(
            (f"bn, relu       {tag}", shape, _step(lambda x, a=args: F.relu(F.batch_norm(x, *a))))
        )
    out.append(("relu 64x32x32", (batch, 64, 32, 32), _step(F.relu)))
    lrn = (5, 1e-4, 0.75, 2.0)
    out.append(
        ("lrn C++ 96x15x15", (batch, 96, 15, 15), _step(lambda x: F.local_response_norm(x, *lrn)))
    )
    out.append(("lrn NumPy 96x15x15", (batch, 96, 15, 15), _numpy_lrn(lrn)))
    out.append(("x used 3x: grad sums", (batch, 64, 32, 32), _step(lambda x: x + x * 2.0 + x)))
    return out


def _numpy_lrn(params):
    """The NumPy definition of LRN's forward and backward (what ran before lrn.h)."""

    def run(x):
        a = x.numpy()
        y, scale = _np_norm.local_response_norm_forward_reference(a, *params)
        _np_norm.local_response_norm_backward_reference(np.ones_like(y), a, scale, *params[:3])

    return run


def measure(run, shape, repeats):
    x = minicnn.tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    x.requires_grad = True
    run(x)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        run(x)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    wall = statistics.median(walls)
    return wall * 1e3, statistics.median(cpus) / max(wall, 1e-9)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args(argv)
    if a.batch < 2 or a.repeats < 1 or min(a.threads) < 1:
        p.error("--batch must be >= 2, --repeats and --threads >= 1")
    print(f"load average before: {load_average()}")
    head = "".join(f" | ms @{n} | cpu/wall @{n}" for n in a.threads)
    print(f"| op (batch {a.batch}){head} | speedup |")
    print("|---" * (2 + 2 * len(a.threads)) + "|")
    for name, shape, run in cases(a.batch):
        row = []
        for n in a.threads:
            set_threads(n)
            row.append(measure(run, shape, a.repeats))
        cells = "".join(f" | {ms:.2f} | {ratio:.2f}" for ms, ratio in row)
        print(f"| {name}{cells} | {row[0][0] / row[-1][0]:.2f}x |")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    sys.exit(main())
