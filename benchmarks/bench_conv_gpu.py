"""Our conv2d kernels (csrc/kernels/conv2d.cu) beside PyTorch's cuDNN, on every distinct conv layer
shape of ResNet-50 (torchvision, stride on the 3x3) at 224x224 pixels.

    python benchmarks/bench_conv_gpu.py [--batch 64] [--repeats 5] [--dtype float32]
                                        [--check 1e-3] [--device cuda|emu] [--scale 1] [--json
                                        out.json]

For each shape: forward, backward data and backward weight, each timed with CUDA events (one
warm-up, then ``--repeats`` calls; 0: no timing), as TFLOP/s (2·N·K·P·Q·C/G·R·S flops per pass) for
ours and for cuDNN (TF32 off, ``cudnn.benchmark = True``: cuDNN picks its fastest algorithm per
shape; ``--dtype float16`` / ``bfloat16``: ours on tensor cores, conv2d version 4, beside cuDNN in
the same dtype), their ratio, and the largest difference of our result from the reference
relative to the reference's largest magnitude. The totals weight each shape by how many layers of
ResNet-50 have it,
over the passes a training step runs (every layer's forward and backward weight, and backward data
of all but the stem, whose input needs no gradient): the issue's target is ours >= 50% of cuDNN.

``--check TOL`` exits 1 when any relative difference exceeds TOL. The reference is PyTorch on the
same device (cuDNN on cuda), or minicnn's cpu conv (NumPy) where PyTorch is missing. ``--device
emu``
runs the emulator (the dry run of scripts/gpu_check.sh): there ``--scale 4`` divides the image sides
by 4 (channels, kernels and strides kept) so it takes seconds; its times mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from minicnn.ops.geometry import Conv2dGeometry

# (C, H, K, R, stride, padding, layers of ResNet-50 with this shape); W = H, S = R, groups 1.
RESNET50_CONVS = [
    (3, 224, 64, 7, 2, 3, 1),  # stem
    (64, 56, 64, 1, 1, 0, 1),
    (64, 56, 64, 3, 1, 1, 3),
    (64, 56, 256, 1, 1, 0, 4),  # layer1 (+ downsample)
    (256, 56, 64, 1, 1, 0, 2),
    (256, 56, 128, 1, 1, 0, 1),
    (128, 56, 128, 3, 2, 1, 1),
    (128, 28, 128, 3, 1, 1, 3),  # layer2
    (128, 28, 512, 1, 1, 0, 4),
    (256, 56, 512, 1, 2, 0, 1),
    (512, 28, 128, 1, 1, 0, 3),
    (512, 28, 256, 1, 1, 0, 1),
    (256, 28, 256, 3, 2, 1, 1),
    (256, 14, 256, 3, 1, 1, 5),  # layer3
    (256, 14, 1024, 1, 1, 0, 6),
    (512, 28, 1024, 1, 2, 0, 1),
    (1024, 14, 256, 1, 1, 0, 5),
    (1024, 14, 512, 1, 1, 0, 1),
    (512, 14, 512, 3, 2, 1, 1),
    (512, 7, 512, 3, 1, 1, 2),  # layer4
    (512, 7, 2048, 1, 1, 0, 3),
    (1024, 14, 2048, 1, 2, 0, 1),
    (2048, 7, 512, 1, 1, 0, 2),
]
PASSES = ("fwd", "bwd-data", "bwd-weight")
HALF_TORCH = ()  # torch.float16, torch.bfloat16 once torch is imported


def np_dtype(name):
    """The NumPy dtype of --dtype (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class Device:
    """Arrays, timing and the reference of one device: cuda (CuPy, CUDA events, cuDNN) or emu."""

    def __init__(self, name):
        from minicnn.backends import get_backend

        try:
            self.backend = get_backend(name)
        except RuntimeError as e:
            sys.exit(f"bench_conv_gpu.py: device {name!r} is not usable here: {e}")
        self.name = name
        self.xp = np
        if name == "cuda":
            import cupy

            self.xp = cupy
        self.torch = torch_setup(name)

    def sync(self):
        if self.name == "cuda":
            self.xp.cuda.get_current_stream().synchronize()
            if self.torch is not None:
                self.torch.cuda.synchronize()

    def time_ms(self, fn, repeats):
        """Mean ms of one call after a warm-up; None when repeats is 0."""
        if repeats == 0:
            return None
        fn()
        self.sync()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        self.sync()
        return (time.perf_counter() - start) * 1e3 / repeats

    def host(self, a):
        return a.get() if self.name == "cuda" else np.asarray(a)


def torch_setup(device):
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: the reference is minicnn's cpu conv, and no cuDNN timings")
        return None
    global HALF_TORCH
    HALF_TORCH = (torch.float16, torch.bfloat16)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def reference(dev, x, w, dy, g):
    """{pass: a callable giving the reference result as NumPy, and its timing callable or None}."""
    torch = dev.torch
    if torch is None:
        from minicnn.backends import get_backend

        cpu = get_backend("cpu")
        hx, hw, hdy = (
            dev.host(a).astype(np.promote_types(a.dtype, np.float32)) for a in (x, w, dy)
        )
        return {
            "fwd": (lambda: cpu.conv2d_forward(hx, hw, None, g), None),
            "bwd-data": (lambda: cpu.conv2d_backward_data(hdy, hw, g), None),
            "bwd-weight": (lambda: cpu.conv2d_backward_weight(hdy, hx, g), None),
        }
    tdev = "cuda" if dev.name == "cuda" else "cpu"
    # through float32 (CuPy's bfloat16 does not reach torch everywhere), then torch's own dtype
    tdtype = getattr(torch, x.dtype.name)
    tx, tw, tdy = (
        torch.as_tensor(a.astype(np.promote_types(a.dtype, np.float32)), device=tdev).to(tdtype)
        for a in (x, w, dy)
    )
    kw = dict(stride=g.stride, padding=g.padding)
    calls = {
        "fwd": lambda: torch.nn.functional.conv2d(tx, tw, None, **kw),
        "bwd-data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw),
        "bwd-weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw),
    }
    timed = dev.name == "cuda"

    def as_numpy(t):
        return (t.float() if t.dtype in HALF_TORCH else t).cpu().numpy()

    return {p: ((lambda f=f: as_numpy(f())), f if timed else None) for p, f in calls.items()}


def run_shape(dev, shape, batch, dtype, repeats, scale):
    """{pass: (our ms, reference ms or None, max relative difference)} for one layer shape."""
    C, H, K, R, stride, padding, _ = shape
    H = max(H // scale, R)
    xp, backend = dev.xp, dev.backend
    rng = np.random.default_rng(0)
    dtype = np_dtype(dtype)
    x = xp.asarray(rng.standard_normal((batch, C, H, H)).astype(dtype))
    w = xp.asarray((rng.standard_normal((K, C, R, R)) / np.sqrt(C * R * R)).astype(dtype))
    g = Conv2dGeometry.of(x.shape, w.shape, (stride, stride), (padding, padding))
    y = backend.conv2d_forward(x, w, None, g)
    dy = xp.asarray(rng.standard_normal(y.shape).astype(dtype))
    ours = {
        "fwd": lambda: backend.conv2d_forward(x, w, None, g),
        "bwd-data": lambda: backend.conv2d_backward_data(dy, w, g),
        "bwd-weight": lambda: backend.conv2d_backward_weight(dy, x, g),
    }
    theirs = reference(dev, x, w, dy, g)
    results = {}
    for p in PASSES:
        ms = dev.time_ms(ours[p], repeats)
        tms = dev.time_ms(theirs[p][1], repeats) if theirs[p][1] is not None else None
        a, b = dev.host(ours[p]()).astype(np.promote_types(dtype, np.float32)), theirs[p][0]()
        diff = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
        results[p] = (ms, tms, diff)
    ours = theirs = x = w = y = dy = None  # drop the arrays (the closures hold them too)
    if dev.name == "cuda":
        xp.get_default_memory_pool().free_all_blocks()
    return results


def flops(shape, batch, scale=1):
    C, H, K, R, stride, padding, _ = shape
    H = max(H // scale, R)
    P = (H + 2 * padding - R) // stride + 1
    return 2.0 * batch * K * P * P * C * R * R


def training_passes(shape):
    """The passes a training step runs for this shape: no backward data for the stem (its input is
    the image)."""
    return [p for p in PASSES if not (p == "bwd-data" and shape[0] == 3)]


def cell(f, ms, tms, diff):
    ours = "" if ms is None else f"{f / ms / 1e9:6.1f}"
    theirs = "" if tms is None else f" / {f / tms / 1e9:6.1f} ({tms / ms:4.2f})"
    return f"{ours}{theirs} {diff:8.1e}"


def summary(rows, args):
    """Whole-network ms and TFLOP/s over the training passes, ours and the reference's."""
    total = {"ours_ms": 0.0, "ref_ms": 0.0, "flops": 0.0}
    for row in rows:
        shape = tuple(row["shape"])
        for p in training_passes(shape):
            ms, tms = row[p]["ours_ms"], row[p]["ref_ms"]
            total["flops"] += shape[-1] * flops(shape, args.batch, args.scale)
            total["ours_ms"] += shape[-1] * (ms or 0.0)
            total["ref_ms"] += shape[-1] * (tms or 0.0)
    if total["ours_ms"]:
        total["ours_tflops"] = total["flops"] / total["ours_ms"] / 1e9
    if total["ref_ms"]:
        total["ref_tflops"] = total["flops"] / total["ref_ms"] / 1e9
        total["ours_over_ref"] = total["ref_ms"] / total["ours_ms"]
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed calls per pass (0: check only)"
    )
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"]
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "emu"])
    parser.add_argument("--scale", type=int, default=1, help="divide the image sides by this")
    parser.add_argument(
        "--check", type=float, help="exit 1 when a relative difference exceeds this"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    dev = Device(args.device)
    side = max(224 // args.scale, 7)
    print(
        f"ResNet-50 conv layers on {args.device}, batch {args.batch}, {side}x{side}, {args.dtype}; "
        "TFLOP/s ours / reference (ratio: ours/reference throughput), "
        "max relative difference from the reference"
    )
    print(
        f"{'C':>5} {'HxW':>7} {'K':>5} {'RxS/st':>7} {'#':>2}  "
        + "  ".join(f"{p:^33}" for p in PASSES)
    )
    rows, worst = [], 0.0
    for shape in RESNET50_CONVS:
        C, H, K, R, stride, _, count = shape
        res = run_shape(dev, shape, args.batch, args.dtype, args.repeats, args.scale)
        f = flops(shape, args.batch, args.scale)
        rows.append(
            dict(
                shape=list(shape),
                **{
                    p: dict(ours_ms=res[p][0], ref_ms=res[p][1], rel_diff=res[p][2], flops=f)
                    for p in PASSES
                },
            )
        )
        worst = max([worst] + [res[p][2] for p in PASSES])
        H = max(H // args.scale, R)
        print(
            f"{C:5d} {H:3d}x{H:<3d} {K:5d} {R}x{R}/{stride:<3d} {count:2d}  "
            + "  ".join(f"{cell(f, *res[p]):33}" for p in PASSES),
            flush=True,
        )
    total = summary(rows, args)
    if "ours_tflops" in total:
        line = (
            f"\nwhole network, training passes: ours {total['ours_ms']:.2f} ms "
            f"{total['ours_tflops']:.1f} TFLOP/s"
        )
        if "ref_tflops" in total:
            line += (
                f"; cuDNN {total['ref_ms']:.2f} ms {total['ref_tflops']:.1f} TFLOP/s;"
                f" ours/cuDNN {total['ours_over_ref']:.2f}"
            )
        print(line)
    passed = args.check is None or worst <= args.check
    print(
        f"largest relative difference {worst:.1e}"
        + (
            ""
            if args.check is None
            else f" (limit {args.check:g}: {'passed' if passed else 'FAILED'})"
        )
    )
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(
                dict(
                    device=args.device,
                    batch=args.batch,
                    scale=args.scale,
                    dtype=args.dtype,
                    reference="torch" if dev.torch is not None else "minicnn cpu",
                    shapes=rows,
                    network=total,
                    worst_rel_diff=worst,
                    check=args.check,
                    passed=passed,
                ),
                f,
                indent=1,
            )
        os.replace(args.json + ".tmp", args.json)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
