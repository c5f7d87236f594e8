"""Forward+backward time of representative CNN layers on the CPU, beside PyTorch's when installed.

    python benchmarks/bench_ops.py [--batch 8] [--repeats 5] [--threads N] [--dtype float32]

minicnn and PyTorch run in this one process with the same thread count, alternating, and the
median of ``--repeats`` timed runs (after one warm-up) is reported. Speed is never asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import minicnn
import minicnn.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the table then shows minicnn's figures only
    torch = None


def layers(n):
    """(name, input shape, parameter shapes, op for (F, x, *params))."""
    return [
        ("AlexNet conv1 11x11/4, 3->96", (n, 3, 227, 227), [(96, 3, 11, 11), (96,)],
         lambda f, x, w, b: f.conv2d(x, w, b, stride=4)),
        ("VGG conv 3x3, 64->64 @56", (n, 64, 56, 56), [(64, 64, 3, 3), (64,)],
         lambda f, x, w, b: f.conv2d(x, w, b, padding=1)),
        ("ResNet 1x1, 256->64 @56", (n, 256, 56, 56), [(64, 256, 1, 1)],
         lambda f, x, w: f.conv2d(x, w)),
        ("AlexNet grouped conv2 5x5 @27", (n, 96, 27, 27), [(256, 48, 5, 5), (256,)],
         lambda f, x, w, b: f.conv2d(x, w, b, padding=2, groups=2)),
        ("LRN size 5 @55 (96 ch)", (n, 96, 55, 55), [],
         lambda f, x: f.local_response_norm(x, 5, 1e-4, 0.75, 2.0)),
        ("BatchNorm train @56 (64 ch)", (n, 64, 56, 56), [(64,), (64,)],
         lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True)),
        ("MaxPool 3x3/2 @55 (96 ch)", (n, 96, 55, 55), [],
         lambda f, x: f.max_pool2d(x, 3, 2)),
        ("ReLU @56 (64 ch)", (n, 64, 56, 56), [],
         lambda f, x: f.relu(x)),
    ]


def _median_time(step, repeats):
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _minicnn_step(op, arrays):
    tensors = [minicnn.tensor(a, requires_grad=True) for a in arrays]
    dout = None

    def step():
        nonlocal dout
        for t in tensors:
            t.grad = None
        y = op(F, *tensors)
        if dout is None:
            dout = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
        y.backward(dout)
    return step


def _torch_step(op, arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    dout = None

    def step():
        nonlocal dout
        for t in tensors:
            t.grad = None
        y = op(TF, *tensors)
        if dout is None:
            dout = torch.randn(y.shape, dtype=y.dtype)
        y.backward(dout)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"forward+backward, batch {args.batch}, {args.dtype}, {args.threads} threads, "
          f"median of {args.repeats}; PyTorch {'%s' % torch.__version__ if torch else 'not installed'}")
    header = f"{'layer':<32}{'minicnn ms':>12}{'torch ms':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name, xshape, pshapes, op in layers(args.batch):
        arrays = [rng.standard_normal(s).astype(args.dtype) for s in [xshape] + pshapes]
        ours = _median_time(_minicnn_step(op, arrays), args.repeats)
        row = f"{name:<32}{ours * 1e3:>12.1f}"
        if torch is not None:
            theirs = _median_time(_torch_step(op, arrays), args.repeats)
            row += f"{theirs * 1e3:>10.1f}{ours / theirs:>8.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
