"""Our conv2d kernels (csrc/kernels/conv2d.cu) beside PyTorch's cuDNN, on every distinct conv layer
shape of ResNet-50 (torchvision, stride on the 3x3) at 224x224 pixels.

    python benchmarks/bench_conv_gpu.py [--batch 64] [--repeats 5] [--dtype float32]

For each shape: forward, backward data and backward weight, each timed with CUDA events (one
warm-up, then ``--repeats`` calls), as TFLOP/s (2·N·K·P·Q·C/G·R·S flops per pass) for ours and for
cuDNN (TF32 off, ``cudnn.benchmark = True``: cuDNN picks its fastest FP32 algorithm per shape),
their ratio, and the largest relative difference of our result from PyTorch's (an independent
check). The totals weight each shape by how many layers of ResNet-50 have it: time summed over the
network, which is what the issue's target (ours >= 50% of cuDNN) is about. Runs only on a GPU.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from minicnn.ops.geometry import Conv2dGeometry

# (C, H, K, R, stride, padding, layers of ResNet-50 with this shape); W = H, S = R, groups 1.
RESNET50_CONVS = [
    (3, 224, 64, 7, 2, 3, 1),                                    # stem
    (64, 56, 64, 1, 1, 0, 1), (64, 56, 64, 3, 1, 1, 3), (64, 56, 256, 1, 1, 0, 4),   # layer1 (+ downsample)
    (256, 56, 64, 1, 1, 0, 2),
    (256, 56, 128, 1, 1, 0, 1), (128, 56, 128, 3, 2, 1, 1), (128, 28, 128, 3, 1, 1, 3),  # layer2
    (128, 28, 512, 1, 1, 0, 4), (256, 56, 512, 1, 2, 0, 1), (512, 28, 128, 1, 1, 0, 3),
    (512, 28, 256, 1, 1, 0, 1), (256, 28, 256, 3, 2, 1, 1), (256, 14, 256, 3, 1, 1, 5),  # layer3
    (256, 14, 1024, 1, 1, 0, 6), (512, 28, 1024, 1, 2, 0, 1), (1024, 14, 256, 1, 1, 0, 5),
    (1024, 14, 512, 1, 1, 0, 1), (512, 14, 512, 3, 2, 1, 1), (512, 7, 512, 3, 1, 1, 2),  # layer4
    (512, 7, 2048, 1, 1, 0, 3), (1024, 14, 2048, 1, 2, 0, 1), (2048, 7, 512, 1, 1, 0, 2),
]
PASSES = ("fwd", "bwd-data", "bwd-weight")


def need_gpu():
    """(cupy, the cuda backend), or exit with why not."""
    from minicnn.backends import get_backend
    try:
        backend = get_backend("cuda")
    except RuntimeError as e:
        sys.exit(f"bench_conv_gpu.py runs on a GPU only (device 'cuda'), and it is not usable here: {e}")
    import cupy
    return cupy, backend


def time_ms(cupy, fn, repeats):
    fn()
    cupy.cuda.get_current_stream().synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / repeats


def torch_setup():
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: only our timings are shown")
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def run_shape(cupy, backend, torch, shape, batch, dtype, repeats):
    """{pass: (our ms, torch ms or None, max relative difference or None)} for one layer shape."""
    C, H, K, R, stride, padding, _ = shape
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((batch, C, H, H)).astype(dtype))
    w = cupy.asarray((rng.standard_normal((K, C, R, R)) / np.sqrt(C * R * R)).astype(dtype))
    g = Conv2dGeometry.of(x.shape, w.shape, (stride, stride), (padding, padding))
    y = backend.conv2d_forward(x, w, None, g)
    dy = cupy.asarray(rng.standard_normal(y.shape).astype(dtype))
    ours = {
        "fwd": lambda: backend.conv2d_forward(x, w, None, g),
        "bwd-data": lambda: backend.conv2d_backward_data(dy, w, g),
        "bwd-weight": lambda: backend.conv2d_backward_weight(dy, x, g),
    }
    theirs = {}
    if torch is not None:
        tx, tw, tdy = (torch.as_tensor(a, device="cuda") for a in (x, w, dy))
        kw = dict(stride=stride, padding=padding)
        theirs = {
            "fwd": lambda: torch.nn.functional.conv2d(tx, tw, None, **kw),
            "bwd-data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw),
            "bwd-weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw),
        }
    results = {}
    for p in PASSES:
        ms = time_ms(cupy, ours[p], repeats)
        tms = diff = None
        if theirs:
            tms = time_ms(cupy, theirs[p], repeats)
            torch.cuda.synchronize()
            a, b = cupy.asnumpy(ours[p]()), theirs[p]().cpu().numpy()
            diff = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        results[p] = (ms, tms, diff)
    del x, w, y, dy
    cupy.get_default_memory_pool().free_all_blocks()
    return results


def flops(shape, batch):
    C, H, K, R, stride, padding, _ = shape
    P = (H + 2 * padding - R) // stride + 1
    return 2.0 * batch * K * P * P * C * R * R


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    cupy, backend = need_gpu()
    torch = torch_setup()
    print(f"ResNet-50 conv layers, batch {args.batch}, 224x224, {args.dtype}; TFLOP/s ours / cuDNN (ratio: ours/cuDNN "
          f"throughput), "
          f"max relative difference from PyTorch")
    print(f"{'C':>5} {'HxW':>7} {'K':>5} {'RxS/st':>7} {'#':>2}  " +
          "  ".join(f"{p:^33}" for p in PASSES))
    totals = {p: [0.0, 0.0] for p in PASSES}  # ms summed over the network's layers: ours, theirs
    for shape in RESNET50_CONVS:
        C, H, K, R, stride, _, count = shape
        res = run_shape(cupy, backend, torch, shape, args.batch, args.dtype, args.repeats)
        f = flops(shape, args.batch)
        cells = []
        for p in PASSES:
            ms, tms, diff = res[p]
            totals[p][0] += count * ms
            totals[p][1] += count * (tms or 0.0)
            if tms is None:
                cells.append(f"{f / ms / 1e9:6.1f}{'':27}")
            else:
                cells.append(f"{f / ms / 1e9:6.1f} / {f / tms / 1e9:6.1f} ({ms and tms / ms:4.2f}) {diff:8.1e}")
        print(f"{C:5d} {H:3d}x{H:<3d} {K:5d} {R}x{R}/{stride:<3d} {count:2d}  " + "  ".join(cells), flush=True)
    total_flops = sum(flops(s, args.batch) * s[-1] for s in RESNET50_CONVS)
    print("\nwhole network (each shape times its layer count):")
    for p in PASSES:
        ours, theirs = totals[p]
        line = f"  {p:10s} ours {ours:8.2f} ms  {total_flops / ours / 1e9:6.1f} TFLOP/s"
        if theirs:
            line += f"   cuDNN {theirs:8.2f} ms  {total_flops / theirs / 1e9:6.1f} TFLOP/s   ours/cuDNN {theirs / ours:5.2f}"
        print(line)


if __name__ == "__main__":
    main()
