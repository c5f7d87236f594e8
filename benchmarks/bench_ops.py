"""Forward+backward time of representative CNN layers on the CPU, beside PyTorch's when installed.

    python benchmarks/bench_ops.py [--batch 8] [--repeats 5] [--threads N] [--dtype float32]
    python benchmarks/bench_ops.py --model-convs [resnet18 …] [--batch 16] [--size 64]
    python benchmarks/bench_ops.py --model-convs [googlenet …] --passes --threads 2 [--no-torch]
    python benchmarks/bench_ops.py --pool [--threads 2]

minicnn and PyTorch run in this one process with the same thread count, alternating run by run,
and the median of ``--repeats`` timed runs (after one warm-up) is reported with the ratio
minicnn/PyTorch. ``--model-convs`` times every distinct conv layer shape of the benchmark models
(bench_models.py's list, at its batch and input size) instead, and ends with the largest ratio and
the time-weighted one; with ``--passes``, each conv pass (forward, dx, dw, bias, dx+dw as a step
runs them) at 1 and --threads threads, and the passes losing the most time to idle cores.
``--pool`` measures the C++ thread pool instead: the microseconds
(median, p90, mean) of a tiny parallel_for after the caller was busy for 0-1000 us (how far apart
a step's phases are), and how often a worker joined in time (MINICNN_SPIN_US sets how long idle
workers spin). Speed is never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from _common import clock, early_threads, import_torch

early_threads(default=os.cpu_count())  # before NumPy loads

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
import minicnn.functional as F  # noqa: E402

torch = import_torch()
if torch is not None:
    import torch.nn.functional as TF

CLOCK = clock("wall")


def layers(n):
    """(name, input shape, parameter shapes, op for (F, x, *params))."""
    return [
        (
            "AlexNet conv1 11x11/4, 3->96",
            (n, 3, 227, 227),
            [(96, 3, 11, 11), (96,)],
            lambda f, x, w, b: f.conv2d(x, w, b, stride=4),
        ),
        (
            "VGG conv 3x3, 64->64 @56",
            (n, 64, 56, 56),
            [(64, 64, 3, 3), (64,)],
            lambda f, x, w, b: f.conv2d(x, w, b, padding=1),
        ),
        (
            "ResNet 1x1, 256->64 @56",
            (n, 256, 56, 56),
            [(64, 256, 1, 1)],
            lambda f, x, w: f.conv2d(x, w),
        ),
        (
            "AlexNet grouped conv2 5x5 @27",
            (n, 96, 27, 27),
            [(256, 48, 5, 5), (256,)],
            lambda f, x, w, b: f.conv2d(x, w, b, padding=2, groups=2),
        ),
        (
            "LRN size 5 @55 (96 ch)",
            (n, 96, 55, 55),
            [],
            lambda f, x: f.local_response_norm(x, 5, 1e-4, 0.75, 2.0),
        ),
        (
            "BatchNorm train @56 (64 ch)",
            (n, 64, 56, 56),
            [(64,), (64,)],
            lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True),
        ),
        ("MaxPool 3x3/2 @55 (96 ch)", (n, 96, 55, 55), [], lambda f, x: f.max_pool2d(x, 3, 2)),
        ("ReLU @56 (64 ch)", (n, 64, 56, 56), [], lambda f, x: f.relu(x)),
    ]


def _median_times(steps, repeats, clock_name=None):
    """Median seconds of each step, run alternately ``repeats`` times after one warm-up each
    (``clock_name``: "wall" or "cpu", else --clock's)."""
    now = CLOCK if clock_name is None else clock(clock_name)
    for step in steps:
        step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, ts in zip(steps, times):
            start = now()
            step()
            ts.append(now() - start)
    return [statistics.median(ts) for ts in times]


def model_conv_layers(names, n, side):
    """(name, input shape, parameter shapes, op) for every distinct conv of the models, with the
    number of times it occurs; traced from one forward pass of each minicnn model."""
    import minicnn.models as models
    from minicnn.autograd import trace_ops
    from minicnn.ops.conv import Conv2d

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_models import MODELS, _input_side

    seen = {}

    def hook(fn, args, kwargs, out):
        if fn is Conv2d:
            x, w, b, g = args  # the op's Conv2dGeometry
            stride, padding, dilation, groups = g.stride, g.padding, g.dilation, g.G
            key = (x.shape, w.shape, b is not None, stride, padding, dilation, groups)
            seen.setdefault(key, [0, set()])
            seen[key][0] += 1
            seen[key][1].add(current)

    for current in names:
        kwargs, _ = MODELS[current]
        model = models.get_model(current, num_classes=1000, **kwargs)
        model.eval()
        x = minicnn.zeros(n, 3, _input_side(current, side), _input_side(current, side))
        with minicnn.no_grad(), trace_ops(hook):
            model(x)
    rows = []
    for (xs, ws, bias, stride, padding, dilation, groups), (count, where) in seen.items():
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        label = (
            f"{ws[2]}x{ws[3]}/{stride[0]} {xs[1]}->{ws[0]} @{xs[2]}"
            + (f" g{groups}" if groups > 1 else "")
            + f" x{count} {','.join(sorted(where))}"
        )
        pshapes = [ws] + ([(ws[0],)] if bias else [])
        rows.append(
            (
                label,
                xs,
                pshapes,
                (lambda kw: lambda f, x, w, b=None: f.conv2d(x, w, b, **kw))(kw),
                count,
            )
        )
    return rows


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


def pool_probe(threads, calls=2000):
    """The pool's dispatch + wake latency (csrc/cpu/pool_probe.h) after gaps of caller work."""
    from minicnn.backends._cpp import load_cpu_extension

    C = load_cpu_extension()
    if C is None or not hasattr(C, "pool_probe"):
        sys.exit("bench_ops: --pool needs minicnn._C_cpu (build the C++ helpers)")
    C.set_num_threads(threads)
    spin = os.environ.get("MINICNN_SPIN_US", "50 (default)")
    print(f"tiny parallel_for, {threads} threads, MINICNN_SPIN_US={spin}, load {_loadavg()}")
    for gap in (0, 20, 50, 100, 1000):
        median, p90, mean, joined = C.pool_probe(calls if gap < 1000 else calls // 10, gap)
        print(
            f"after {gap:5d} us of caller work: us per call median {median:7.1f}, "
            f"p90 {p90:7.1f}, mean {mean:7.1f}; a worker joined {joined:.0%}"
        )


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _pass_steps(xshape, pshapes, op, dtype, rng):
    """(name, step) for conv2d's forward, each backward pass and dx + dw together (as a training
    step asks for them), on the NumPy backend's kernels."""
    from minicnn.backends import _np_conv
    from minicnn.ops.geometry import Conv2dGeometry

    kw = op.__closure__[0].cell_contents  # model_conv_layers' conv2d keywords
    g = Conv2dGeometry.of(
        xshape, pshapes[0], kw["stride"], kw["padding"], kw["dilation"], kw["groups"]
    )
    x, w = (rng.standard_normal(s).astype(dtype) for s in (xshape, pshapes[0]))
    dy = rng.standard_normal(g.y_shape).astype(dtype)
    return [
        ("forward", lambda: _np_conv.conv2d_forward(x, w, None, g)),
        ("data", lambda: _np_conv.conv2d_backward_data(dy, w, g)),
        ("weight", lambda: _np_conv.conv2d_backward_weight(dy, x, g)),
        ("bias", lambda: _np_conv.conv2d_backward_bias(dy)),
        ("dx+dw", lambda: _np_conv.conv2d_backward(dy, x, w, g, needs=(True, True, False))),
    ]


def _pass_figures(step, threads, repeats, backend):
    """(wall at 1, cpu at 1, wall at ``threads``, cpu at ``threads``) seconds of one pass."""
    figures = []
    for n in (1, threads):
        backend.set_num_threads(n)
        figures += [_median_times([step], repeats, clock_name=c)[0] for c in ("wall", "cpu")]
    return figures


def pass_table(rows, threads, repeats, dtype, top=12):
    """--passes: each conv pass's wall ms at 1 and ``threads`` threads, the speedup, the CPU
    time at ``threads`` over that at 1 (about 1: the work splits without overhead) and the ms
    lost to idle cores (wall at ``threads`` - wall at 1 / ``threads``, times the layer's count);
    then the passes that lose the most and the totals."""
    from minicnn.backends import get_backend

    backend, rng = get_backend("cpu"), np.random.default_rng(0)
    totals, losses = {}, []
    print(f"per pass: wall ms at 1/{threads} threads (speedup, cpu ratio); load {_loadavg()}")
    for name, xshape, pshapes, op, count in rows:
        cells = []
        for pass_name, step in _pass_steps(xshape, pshapes, op, dtype, rng):
            w1, c1, wn, cn = _pass_figures(step, threads, repeats, backend)
            total = totals.setdefault(pass_name, [0.0, 0.0, 0.0])
            for i, v in enumerate((w1, wn, c1)):
                total[i] += count * v
            losses.append((count * (wn - w1 / threads), f"{name} {pass_name}", w1, wn))
            cells.append(
                f"{pass_name} {w1 * 1e3:.2f}/{wn * 1e3:.2f} ({w1 / wn:.2f}x, {cn / c1:.2f})"
            )
        print(f"{name:<44} " + " | ".join(cells), flush=True)
    print(f"largest losses (count x (ms@{threads} - ms@1/{threads})):")
    for lost, label, w1, wn in sorted(losses, reverse=True)[:top]:
        print(f"  {lost * 1e3:7.2f} ms  {label}: {w1 * 1e3:.2f} / {wn * 1e3:.2f} ms")
    for pass_name, (w1, wn, c1) in totals.items():
        print(
            f"all layers {pass_name}: {w1 * 1e3:.1f} / {wn * 1e3:.1f} ms, {w1 / wn:.2f}x "
            f"(cpu at 1 thread {c1 * 1e3:.1f} ms)"
        )
    print(f"load {_loadavg()}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=None, help="default 8, 16 with --model-convs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--model-convs",
        nargs="*",
        metavar="MODEL",
        help="time every distinct conv shape of these models (default: all six)",
    )
    parser.add_argument("--size", type=int, default=64, help="input side for --model-convs")
    parser.add_argument("--no-torch", action="store_true", help="time minicnn only")
    parser.add_argument("--pool", action="store_true", help="the thread pool's wake latency")
    parser.add_argument(
        "--passes",
        action="store_true",
        help="with --model-convs: each conv pass at 1 and --threads threads (minicnn only)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time (steadier with --threads 1 on a busy machine)",
    )
    args = parser.parse_args()
    if args.pool:
        return pool_probe(args.threads)
    global CLOCK
    CLOCK = clock(args.clock)
    use_torch = torch is not None and not args.no_torch
    if torch is not None:
        torch.set_num_threads(args.threads)
    from minicnn.backends import get_backend

    get_backend("cpu").set_num_threads(args.threads)  # the C++ helpers' thread pool
    rng = np.random.default_rng(0)
    if args.model_convs is not None:
        from bench_models import MODELS

        names = args.model_convs or list(MODELS)
        batch = args.batch or 16
        rows = model_conv_layers(names, batch, args.size)
    else:
        batch = args.batch or 8
        rows = [row + (1,) for row in layers(batch)]
    if args.passes:
        return pass_table(rows, args.threads, args.repeats, args.dtype)
    print(
        f"forward+backward, batch {batch}, {args.dtype}, {args.threads} threads, "
        f"median of {args.repeats}, {args.clock} clock; "
        f"PyTorch {torch.__version__ if use_torch else 'not used'}"
    )
    width = max(32, max(len(r[0]) for r in rows) + 2)
    header = f"{'layer':<{width}}{'minicnn ms':>12}" + (
        f"{'torch ms':>10}{'ratio':>8}" if use_torch else ""
    )
    print(header)
    print("-" * len(header))
    totals, worst = [0.0, 0.0], (0.0, "")
    for name, xshape, pshapes, op, count in rows:
        arrays = [rng.standard_normal(s).astype(args.dtype) for s in [xshape] + pshapes]
        steps = [_minicnn_step(op, arrays)] + ([_torch_step(op, arrays)] if use_torch else [])
        times = _median_times(steps, args.repeats)
        row = f"{name:<{width}}{times[0] * 1e3:>12.2f}"
        if use_torch:
            ratio = times[0] / times[1]
            row += f"{times[1] * 1e3:>10.2f}{ratio:>8.2f}"
            totals[0] += count * times[0]
            totals[1] += count * times[1]
            worst = max(worst, (ratio, name))
        print(row, flush=True)
    if use_torch and args.model_convs is not None:
        print(
            f"largest ratio {worst[0]:.2f} ({worst[1]}); all layers weighted by their count: "
            f"minicnn {totals[0]:.3f} s, torch {totals[1]:.3f} s, ratio {totals[0] / totals[1]:.2f}"
        )


if __name__ == "__main__":
    main()
