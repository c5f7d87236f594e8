"""Our CUDA kernels, one at a time, beside PyTorch's (cuDNN where PyTorch uses it) on the same
inputs.

    python benchmarks/bench_kernels.py [--device cuda] [--batch 32] [--dtype float32] [--repeats 20]

For every kernel family, forward and backward separately: our kernel through the device backend's
function (what the ops call), and the same computation in PyTorch on the same data; the time of one
call (CUDA events around ``--repeats`` calls after a warm-up) and the largest difference of the
results from PyTorch's (so the table is also an independent check against PyTorch). ``--device emu``
runs the emulator against PyTorch on the CPU (tiny batches: it is there to check this script, the
times mean nothing). Speed is never asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from minicnn.backends import get_backend
from minicnn.ops.geometry import Pool2dGeometry

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the table then shows minicnn's figures only
    torch = None


# ---- timing -------------------------------------------------------------------------------------
def time_cuda_events(fn, repeats, events, synchronize):
    """Milliseconds per call of ``fn``: CUDA events around ``repeats`` calls after one warm-up."""
    fn()
    synchronize()
    start, end = events()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return (
        start.elapsed_time(end) / repeats
        if hasattr(start, "elapsed_time")
        else __import__("cupy").cuda.get_elapsed_time(start, end) / repeats
    )


def time_host(fn, repeats):
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1e3 / repeats


class Timer:
    def __init__(self, device, repeats):
        self.device, self.repeats = device, repeats

    def ours(self, fn):
        if self.device != "cuda":
            return time_host(fn, self.repeats)
        import cupy

        return time_cuda_events(
            fn,
            self.repeats,
            lambda: (cupy.cuda.Event(), cupy.cuda.Event()),
            cupy.cuda.get_current_stream().synchronize,
        )

    def torch(self, fn):
        if self.device != "cuda":
            return time_host(fn, self.repeats)
        return time_cuda_events(
            fn,
            self.repeats,
            lambda: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)),
            torch.cuda.synchronize,
        )


# ---- the cases -----------------------------------------------------------------------------------
def cases(n):
    """(name, input shape, ours, theirs).

    ours(backend, x, dy) -> (forward, backward, y): closures calling our kernels, and the output;
    theirs(x) -> the same op in PyTorch, as a function of its input tensor.
    """

    def relu(b, x, dy):
        y = b.relu_forward(x)
        return (lambda: b.relu_forward(x)), (lambda: b.relu_backward(dy, y)), y

    def max_pool(b, x, dy):
        g = Pool2dGeometry.of(x.shape, (3, 3), (2, 2))
        y, argmax = b.max_pool2d_forward(x, g)
        return (
            (lambda: b.max_pool2d_forward(x, g)),
            (lambda: b.max_pool2d_backward(dy, argmax, g)),
            y,
        )

    def avg_pool(b, x, dy):
        g = Pool2dGeometry.of(x.shape, (2, 2), (2, 2))
        y = b.avg_pool2d_forward(x, g)
        return (lambda: b.avg_pool2d_forward(x, g)), (lambda: b.avg_pool2d_backward(dy, g)), y

    def adaptive(b, x, dy):
        g = Pool2dGeometry.adaptive(x.shape, (1, 1))
        y = b.adaptive_avg_pool2d_forward(x, g)
        return (
            (lambda: b.adaptive_avg_pool2d_forward(x, g)),
            (lambda: b.adaptive_avg_pool2d_backward(dy, g)),
            y,
        )

    def lrn(b, x, dy):
        y, scale = b.local_response_norm_forward(x, 5, 1e-4, 0.75, 2.0)
        return (
            (lambda: b.local_response_norm_forward(x, 5, 1e-4, 0.75, 2.0)),
            (lambda: b.local_response_norm_backward(dy, x, scale, 5, 1e-4, 0.75)),
            y,
        )

    def bn_train(b, x, dy):
        C = x.shape[1]
        w, bias = b.xp.ones(C, x.dtype), b.xp.zeros(C, x.dtype)
        y, mean, invstd = b.batch_norm_forward_training(x, w, bias, None, None, 0.1, 1e-5)
        return (
            (lambda: b.batch_norm_forward_training(x, w, bias, None, None, 0.1, 1e-5)),
            (lambda: b.batch_norm_backward(dy, x, w, mean, invstd, True)),
            y,
        )

    # PyTorch: given the input tensor (for the parameters' dtype and device), the op as a function
    # of it.
    def t_relu(x):
        return TF.relu

    def t_max_pool(x):
        return lambda t: TF.max_pool2d(t, 3, 2)

    def t_avg_pool(x):
        return lambda t: TF.avg_pool2d(t, 2, 2)

    def t_adaptive(x):
        return lambda t: TF.adaptive_avg_pool2d(t, 1)

    def t_lrn(x):
        return lambda t: TF.local_response_norm(t, 5, 1e-4, 0.75, 2.0)

    def t_bn_train(x):
        w, bias = (
            torch.ones(x.shape[1], dtype=x.dtype, device=x.device),
            torch.zeros_like(x[0, :, 0, 0]),
        )
        return lambda t: TF.batch_norm(t, None, None, w, bias, training=True)

    return [
        ("relu @56 (64 ch)", (n, 64, 56, 56), relu, t_relu),
        ("max_pool2d 3x3/2 @55 (96 ch)", (n, 96, 55, 55), max_pool, t_max_pool),
        ("avg_pool2d 2x2/2 @56 (128 ch)", (n, 128, 56, 56), avg_pool, t_avg_pool),
        ("adaptive_avg_pool2d 7x7->1 (512 ch)", (n, 512, 7, 7), adaptive, t_adaptive),
        ("local_response_norm 5 @55 (96 ch)", (n, 96, 55, 55), lrn, t_lrn),
        ("batch_norm train @56 (64 ch)", (n, 64, 56, 56), bn_train, t_bn_train),
    ]


def torch_pair(make_op, x_np, dy_np, device):
    """PyTorch's forward and backward closures on copies of the inputs, its output and gradient."""
    dev = "cuda" if device == "cuda" else "cpu"
    x = torch.tensor(x_np, device=dev, requires_grad=True)
    op = make_op(x)
    y = op(x)
    dy = torch.tensor(dy_np, device=dev)
    assert tuple(y.shape) == dy.shape, (tuple(y.shape), dy.shape)

    def forward():
        with torch.no_grad():
            op(x)

    def backward():
        torch.autograd.grad(y, x, dy, retain_graph=True)

    return (
        forward,
        backward,
        y.detach().cpu().numpy(),
        torch.autograd.grad(y, x, dy, retain_graph=True)[0],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "emu"])
    parser.add_argument("--batch", type=int, default=None, help="default: 32 on cuda, 1 on emu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=None, help="default: 20 on cuda, 1 on emu")
    args = parser.parse_args(argv)
    batch = args.batch or (32 if args.device == "cuda" else 1)
    repeats = args.repeats or (20 if args.device == "cuda" else 1)
    backend = get_backend(args.device)
    timer = Timer(args.device, repeats)
    rng = np.random.default_rng(0)
    if torch is None:
        print("PyTorch is not installed: minicnn's times only")
    elif args.device == "cuda":
        print(
            f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
            f"{torch.cuda.get_device_name()}"
        )
    print(f"device {args.device}, {args.dtype}, batch {batch}, ms per call (mean of {repeats})\n")
    head = f"{'kernel':38} {'pass':4} {'minicnn':>9} {'torch':>9} {'ratio':>6} {'max |diff|':>10}"
    print(head)
    print("-" * len(head))
    for name, shape, ours, theirs in cases(batch):
        x_np = rng.standard_normal(shape).astype(args.dtype)
        x = backend.from_numpy(x_np)
        # the output shape, then a gradient of that shape
        _, _, y = ours(backend, x, None)
        dy_np = rng.standard_normal(tuple(y.shape)).astype(args.dtype)
        forward, backward, y = ours(backend, x, backend.from_numpy(dy_np))
        times = {"forward": timer.ours(forward), "backward": timer.ours(backward)}
        dx = backward()
        dx = dx[0] if isinstance(dx, tuple) else dx  # batch norm: (dx, dweight, dbias)
        results = {"forward": backend.to_numpy(y), "backward": backend.to_numpy(dx)}
        ref = {}
        if torch is not None:
            t_forward, t_backward, ref["forward"], dx = torch_pair(theirs, x_np, dy_np, args.device)
            ref["backward"] = dx.cpu().numpy()
            ref_times = {"forward": timer.torch(t_forward), "backward": timer.torch(t_backward)}
        for phase in ("forward", "backward"):
            line = f"{name if phase == 'forward' else '':38} {phase[:4]:4} {times[phase]:9.4f}"
            if torch is not None:
                diff = float(np.abs(results[phase] - ref[phase]).max())
                line += (
                    f" {ref_times[phase]:9.4f} {times[phase] / ref_times[phase]:6.2f} {diff:10.2e}"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
