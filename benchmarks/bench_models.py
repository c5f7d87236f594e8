"""One training step (forward, backward, SGD momentum update) of each CNN family on the CPU,
minicnn beside PyTorch when it is installed.

    python benchmarks/bench_models.py [--models resnet18 resnet50 …] [--batch 16] [--size 64]
                                      [--steps 7] [--threads N [N …]] [--profile] [--no-memory]
                                      [--check]

For each model both frameworks run in this one process with the same thread count, alternating
step by step; after ``--warmup`` steps the median of ``--steps`` timed steps is reported, with
images/s and the ratio minicnn/PyTorch. Peak memory is measured in a fresh subprocess per
framework and model: the high-water mark of the process's resident memory (VmHWM) during two
steps, minus the resident memory before the model is built (so it counts parameters, gradients,
momentum buffers, activations and temporaries). ``--check`` first copies minicnn's weights into
the PyTorch model and compares the two forward passes, so the two sides are the same network.

``--profile`` then runs ``--steps`` more minicnn steps with every op timed (benchmarks/_profile.py):
milliseconds per step and CPU/wall (cores kept busy) per op family. Several thread counts
(``--threads 1 2``) run one subprocess each (NumPy's BLAS reads its thread count at start-up) and
end with the comparison: each framework's speedup, and with --profile each op family's speedup and
parallel efficiency. Every table shows the 1-minute load average before and after its run.

The PyTorch models are in benchmarks/_torch_models.py. Speed is never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import clock, early_threads, import_torch, load_average, set_threads

early_threads(default=os.cpu_count())  # before NumPy loads

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
import minicnn.functional as F  # noqa: E402
import minicnn.models as models  # noqa: E402

torch = import_torch()
if torch is not None:
    import torch.nn as tnn

    from _torch_models import torch_model  # noqa: F401 (bench_train_gpu.py imports it from here)

CLOCK = clock("wall")

# name -> (minicnn builder kwargs, input side); AlexNet at its smallest input, the rest at --size.
MODELS = {
    "alexnet": (dict(variant="paper"), "min"),
    "vgg11_bn": ({}, None),
    "googlenet": (dict(variant="paper", aux_logits=False), None),  # aux heads need >= 79x79
    "resnet18": ({}, None),
    "resnet50": ({}, None),
    "densenet121": ({}, None),
}
NUM_CLASSES = 1000
LR, MOMENTUM = 0.01, 0.9


# ---- one training step in each framework ---------------------------------------------------------
def _input_side(name, size):
    kwargs, side = MODELS[name]
    return (
        models.get_model(name, num_classes=NUM_CLASSES, **kwargs).min_input_size
        if side == "min"
        else size
    )


def _data(batch, side, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, side, side)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=batch)
    return x, y


class MinicnnTrainer:
    """model(x) -> cross entropy -> backward -> SGD with momentum (torch.optim.SGD's update)."""

    def __init__(self, name, x, y):
        kwargs, _ = MODELS[name]
        self.model = models.get_model(name, num_classes=NUM_CLASSES, **kwargs)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.x, self.y = minicnn.tensor(x), minicnn.tensor(y)
        self.optimizer = self._optimizer()

    def _optimizer(self):
        try:
            from minicnn.optim import SGD

            return SGD(self.params, lr=LR, momentum=MOMENTUM)
        except ImportError:
            return None

    def _sgd_update(self, block=1 << 16):
        """buf = momentum·buf + grad;  p -= lr·buf  (no optimizer module yet: the same in NumPy,
        in place, in blocks so the lr·buf temporary stays in cache)."""
        if not hasattr(self, "_bufs"):
            self._bufs = [None] * len(self.params)
        for i, p in enumerate(self.params):
            g = p.grad._data
            if self._bufs[i] is None:
                self._bufs[i] = g.copy()
            else:
                self._bufs[i] *= MOMENTUM
                self._bufs[i] += g
            flat_p, flat_b = p._data.reshape(-1), self._bufs[i].reshape(-1)
            for start in range(0, flat_p.size, block):
                flat_p[start : start + block] -= LR * flat_b[start : start + block]

    def step(self):
        for p in self.params:
            p.grad = None
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        else:
            self._sgd_update()
        return float(loss.item())


class TorchTrainer:
    def __init__(self, name, x, y):
        self.model = torch_model(name, NUM_CLASSES)
        self.model.train()
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)

    def step(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = tnn.functional.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())


def check_same_network(name, side):
    """Copy minicnn's weights into the torch model; compare eval-mode logits. Returns max |diff|."""
    x, _ = _data(2, side)
    ours = MinicnnTrainer(name, x, np.zeros(2, dtype=np.int64)).model
    theirs = torch_model(name, NUM_CLASSES)
    state = {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    ours.eval()
    theirs.eval()
    with minicnn.no_grad(), torch.no_grad():
        a = ours(minicnn.tensor(x)).numpy()
        b = theirs(torch.from_numpy(x)).numpy()
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    if n_ours != n_theirs:
        raise AssertionError(f"{name}: {n_ours} parameters in minicnn, {n_theirs} in torch")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def time_steps(trainers, warmup, steps):
    """Alternate the trainers step by step; median seconds per step of each."""
    for _ in range(warmup):
        for t in trainers:
            t.step()
    times = [[] for _ in trainers]
    for _ in range(steps):
        for t, ts in zip(trainers, times):
            start = CLOCK()
            t.step()
            ts.append(CLOCK() - start)
    return [statistics.median(ts) for ts in times]


# ---- peak memory, in a subprocess per framework and model ---------------------------------------
def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _memory_child(framework, name, batch, side):
    """Runs in the subprocess: print {"peak_mib": …} for two training steps."""
    x, y = _data(batch, side)
    base = _status_kib("VmRSS")
    trainer = (MinicnnTrainer if framework == "minicnn" else TorchTrainer)(name, x, y)
    trainer.step()
    trainer.step()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_mib": None if peak is None else (peak - base) / 1024}))


def peak_memory_mib(framework, name, batch, side, threads):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        framework,
        name,
        "--batch",
        str(batch),
        "--size",
        str(side),
        "--threads",
        str(threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


# ---- one run at one thread count -----------------------------------------------------------------
def _parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="input side (AlexNet: its minimum)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per framework (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count()])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--no-torch", action="store_true", help="time minicnn only")
    parser.add_argument("--profile", action="store_true", help="per-op-family profile of minicnn")
    parser.add_argument(
        "--check", action="store_true", help="first check that both compute the same network"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time (steadier with --threads 1 on a busy machine)",
    )
    hidden = dict(help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "MODEL"), **hidden)
    parser.add_argument("--results-json", **hidden)
    return parser


def _header(args, threads, use_torch):
    version = torch.__version__ if torch is not None else "not installed"
    print(
        f"training step (forward, backward, SGD momentum), batch {args.batch}, float32, "
        f"{threads} threads, median of {args.steps} after {args.warmup} warm-up, {args.clock} "
        f"clock; PyTorch {version}; load average {load_average()}",
        flush=True,
    )
    header = f"{'model':<13}{'input':>7}{'minicnn s':>11}{'img/s':>8}"
    if use_torch:
        header += f"{'torch s':>9}{'img/s':>8}{'ratio':>7}"
    if not args.no_memory:
        header += f"{'minicnn MiB':>13}" + (f"{'torch MiB':>11}{'ratio':>7}" if use_torch else "")
    print(header)
    print("-" * len(header), flush=True)


def _memory_cells(args, name, side, threads, use_torch):
    ours = peak_memory_mib("minicnn", name, args.batch, side, threads)
    cells = f"{ours:>13.0f}" if ours is not None else f"{'failed':>13}"
    theirs = None
    if use_torch:
        theirs = peak_memory_mib("torch", name, args.batch, side, threads)
        cells += f"{theirs:>11.0f}" if theirs is not None else f"{'failed':>11}"
        cells += f"{ours / theirs:>7.2f}" if ours and theirs else f"{'':>7}"
    return cells, [ours, theirs]


def _profile(trainer, steps):
    from _profile import OpProfile

    profile = OpProfile()
    with profile.active(trainer.optimizer):
        for _ in range(steps):
            profile.run_step(trainer.step)
    return profile


def run(args, threads):
    """Time every model at ``threads`` threads; print the table; return the figures."""
    use_torch = torch is not None and not args.no_torch
    results = {"threads": threads, "load": [load_average()], "models": {}, "profiles": {}}
    _header(args, threads, use_torch)
    profiles = []
    for name in args.models:
        side = _input_side(name, args.size)
        if args.check and use_torch:
            diff = check_same_network(name, side)
            print(f"  {name}: max relative difference of the logits {diff:.2e}")
        x, y = _data(args.batch, side)
        trainers = [MinicnnTrainer(name, x, y)] + ([TorchTrainer(name, x, y)] if use_torch else [])
        secs = time_steps(trainers, args.warmup, args.steps)
        if args.profile:
            profiles.append((name, _profile(trainers[0], args.steps)))
            results["profiles"][name] = profiles[-1][1].as_dict()
        del trainers
        row = f"{name:<13}{side:>7}{secs[0]:>11.3f}{args.batch / secs[0]:>8.1f}"
        if use_torch:
            row += f"{secs[1]:>9.3f}{args.batch / secs[1]:>8.1f}{secs[0] / secs[1]:>7.2f}"
        memory = [None, None]
        if not args.no_memory:
            cells, memory = _memory_cells(args, name, side, threads, use_torch)
            row += cells
        results["models"][name] = {"minicnn": secs[0], "torch": secs[-1] if use_torch else None}
        results["models"][name]["memory_mib"] = memory
        print(row, flush=True)
    results["load"].append(load_average())
    for name, profile in profiles:
        print()
        print(profile.table(f"{name}, {threads} threads: minicnn per op family (mean of steps)"))
    print(f"load average after the run {results['load'][-1]}", flush=True)
    return results


# ---- several thread counts: one subprocess each ------------------------------------------------
def _child_command(args, threads, path):
    cmd = [sys.executable, os.path.abspath(__file__), "--models", *args.models]
    for option in ("batch", "size", "steps", "warmup", "clock"):
        cmd += [f"--{option}", str(getattr(args, option))]
    cmd += ["--threads", str(threads), "--results-json", path]
    flags = ("no_memory", "no_torch", "profile", "check")
    return cmd + [f"--{f.replace('_', '-')}" for f in flags if getattr(args, f)]


def run_each(args):
    """Run each thread count in a subprocess; return their results, in --threads order."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.threads:
            path = os.path.join(tmp, f"threads{n}.json")
            subprocess.run(_child_command(args, n, path), check=True)
            print()
            with open(path) as f:
                runs.append(json.load(f))
    return runs


def _scaling_table(runs):
    base = runs[0]
    loads = ", ".join(f"{r['threads']} threads: {r['load'][0]} -> {r['load'][1]}" for r in runs)
    print(f"thread scaling (load average {loads})")
    n0 = base["threads"]
    head = f"{'model':<13}" + "".join(f"{'ratio @' + str(r['threads']):>10}" for r in runs)
    for r in runs[1:]:
        n = r["threads"]
        head += f"{f'minicnn x{n0}->{n}':>15}{f'torch x{n0}->{n}':>14}"
    print(head)
    for name, m0 in base["models"].items():
        row = f"{name:<13}"
        for r in runs:
            m = r["models"][name]
            row += f"{m['minicnn'] / m['torch']:>10.2f}" if m["torch"] else f"{'':>10}"
        for r in runs[1:]:
            m = r["models"][name]
            row += f"{m0['minicnn'] / m['minicnn']:>15.2f}"
            row += f"{m0['torch'] / m['torch']:>14.2f}" if m["torch"] else f"{'':>14}"
        print(row)


def _profile_tables(runs):
    from _profile import compare

    for name in runs[0]["profiles"]:
        per_count = {r["threads"]: r["profiles"][name] for r in runs}
        print()
        print(compare(per_count, f"{name}: minicnn ms/step per op family, speedup, efficiency"))
    totals = {}
    for r in runs:
        total = totals.setdefault(r["threads"], {})
        for profile in r["profiles"].values():
            for family, ms in profile.items():
                total[family] = total.get(family, 0.0) + ms
    if totals and any(totals.values()):
        print()
        print(compare(totals, "all models together: ms per step of each model, summed"))


def main():
    args = _parser().parse_args()
    global CLOCK
    CLOCK = clock(args.clock)
    if args.memory_child:
        set_threads(args.threads[0], torch)
        _memory_child(*args.memory_child, args.batch, args.size)
        return
    if len(args.threads) > 1:
        runs = run_each(args)
        _scaling_table(runs)
        if args.profile:
            _profile_tables(runs)
        return
    set_threads(args.threads[0], torch)
    results = run(args, args.threads[0])
    if args.results_json:
        with open(args.results_json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
