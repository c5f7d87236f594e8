"""How fast the data pipeline delivers batches, without any model: images/s of
DataLoader(ImageFolder).

    python benchmarks/bench_data.py                      # the built-in dataset (32x32 PNGs)
    python benchmarks/bench_data.py --workers 0 1 2 4    # one row per worker count
    python benchmarks/bench_data.py --data DIR --image-size 224 --augment imagenet

Each row decodes and augments the training split (pad + random crop + flip + normalise for small
images, as ``minicnn train`` does; RandomResizedCrop + flip + PCA lighting with --augment imagenet)
for --epochs epochs after one warm-up epoch (which also starts the worker processes), and reports
images per second. The load of the machine is printed too: the number is only as quiet as the
machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from minicnn.data import DataLoader, ImageFolder, builtin_dataset  # noqa: E402
from minicnn.data import transforms as T  # noqa: E402
from minicnn.train import TrainConfig, train_transform  # noqa: E402


def measure(dataset, workers, batch_size, epochs):
    loader = DataLoader(dataset, batch_size, shuffle=True, num_workers=workers, seed=0)
    try:
        for _ in loader:  # warm-up: starts the workers, fills the page cache
            pass
        start, images = time.perf_counter(), 0
        for _ in range(epochs):
            for x, _ in loader:
                images += len(x)
        return images / (time.perf_counter() - start)
    finally:
        loader.close()


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", help="an image folder with train/ (default: the built-in dataset)")
    p.add_argument("--workers", type=int, nargs="+", default=[2])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--augment", default="auto", choices=("auto", "small", "imagenet", "none"))
    args = p.parse_args()
    root = args.data or builtin_dataset(log=lambda m: print(m, file=sys.stderr))
    config = TrainConfig(augment=args.augment)
    dataset = ImageFolder(
        os.path.join(root, "train"),
        train_transform(config, args.image_size, T.IMAGENET_MEAN, T.IMAGENET_STD),
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{len(dataset)} images of {root}/train, batch {args.batch_size}, "
        f"{args.image_size}x{args.image_size}, "
        f"{os.cpu_count()} CPUs, load average {load:.2f}"
    )
    print(f"{'workers':>8} {'images/s':>10}")
    for workers in args.workers:
        print(
            f"{workers:>8} {measure(dataset, workers, args.batch_size, args.epochs):>10.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
