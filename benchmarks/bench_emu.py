"""One ResNet-20 training step (batch 32, 32x32) on "emu" against "cpu", at the same thread count.

    python benchmarks/bench_emu.py --threads 1
    python benchmarks/bench_emu.py --threads 2

The emulator runs the blocks of a launch on --threads OS threads (minicnn.emu.set_num_threads); the
cpu device's helpers and OpenBLAS get the same count. Prints the median step time of each device and
the ratio emu / cpu (issue 12's target: at most 25).
"""

import argparse

from _common import early_threads, set_threads

early_threads(default=1)  # before NumPy loads

import time  # noqa: E402

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
import minicnn.emu  # noqa: E402
import minicnn.functional as F  # noqa: E402
from minicnn import models  # noqa: E402


def step_time(device, batch, steps):
    model = models.resnet20(num_classes=10)
    model.to(device)
    model.train()
    rng = np.random.default_rng(0)
    x = minicnn.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device=device)
    target = minicnn.tensor(rng.integers(0, 10, batch), device=device)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), target)
        for p in model.parameters():
            p.grad = None
        loss.backward()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    set_threads(args.threads)  # the cpu device's helpers
    minicnn.emu.set_num_threads(args.threads)
    cpu = step_time("cpu", args.batch, args.steps)
    emu = step_time("emu", args.batch, args.steps)
    print(
        f"resnet20 batch {args.batch}, {args.threads} thread(s): cpu {cpu:.3f} s/step, "
        f"emu {emu:.3f} s/step, "
        f"emu/cpu {emu / cpu:.1f}x"
    )


if __name__ == "__main__":
    main()
