"""One training step (forward, backward, SGD momentum update) of each CNN family on the CPU,
minicnn beside PyTorch when it is installed.

    python benchmarks/bench_models.py [--models resnet18 resnet50 …] [--batch 16] [--size 64]
                                      [--steps 7] [--threads N] [--no-memory] [--check]

For each model both frameworks run in this one process with the same thread count, alternating
step by step; after ``--warmup`` steps the median of ``--steps`` timed steps is reported, with
images/s and the ratio minicnn/PyTorch. Peak memory is measured in a fresh subprocess per
framework and model: the high-water mark of the process's resident memory (VmHWM) during two
steps, minus the resident memory before the model is built (so it counts parameters, gradients,
momentum buffers, activations and temporaries). ``--check`` first copies minicnn's weights into
the PyTorch model and compares the two forward passes, so the two sides are the same network.

The PyTorch models are written below with torch.nn, mirroring minicnn.models (and torchvision:
inplace ReLUs, the same module names, hence the same state_dict keys); torchvision's builders are
used where torchvision is installed and has the model. Speed is never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# --clock cpu measures the process's CPU time instead of wall time: with one thread on a shared,
# loaded machine it leaves out the time other processes hold the core (not their cache traffic).
CLOCK = time.perf_counter


def _early_threads():
    """--threads must reach OpenBLAS (NumPy's GEMM) before NumPy is imported."""
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


if _early_threads():  # NumPy's OpenBLAS and any OpenMP runtime read these when they load
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINICNN_NUM_THREADS"):
        os.environ[_name] = _early_threads()

import numpy as np  # noqa: E402

import minicnn  # noqa: E402
import minicnn.functional as F  # noqa: E402
import minicnn.models as models  # noqa: E402

try:
    import torch
    import torch.nn as tnn
except ImportError:  # the table then shows minicnn's figures only
    torch = tnn = None

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


# ---- the PyTorch twins of minicnn.models ---------------------------------------------------------
def _torch_alexnet_paper(num_classes):
    lrn = lambda: tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    relu = lambda: tnn.ReLU(inplace=True)  # noqa: E731
    m = tnn.Module()
    m.features = tnn.Sequential(
        tnn.Conv2d(3, 96, 11, stride=4),
        relu(),
        lrn(),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(96, 256, 5, padding=2, groups=2),
        relu(),
        lrn(),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(256, 384, 3, padding=1),
        relu(),
        tnn.Conv2d(384, 384, 3, padding=1, groups=2),
        relu(),
        tnn.Conv2d(384, 256, 3, padding=1, groups=2),
        relu(),
        tnn.MaxPool2d(3, 2),
    )
    m.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
    m.classifier = tnn.Sequential(
        tnn.Linear(9216, 4096),
        relu(),
        tnn.Dropout(0.5),
        tnn.Linear(4096, 4096),
        relu(),
        tnn.Dropout(0.5),
        tnn.Linear(4096, num_classes),
    )
    m.forward = lambda x: m.classifier(torch.flatten(m.avgpool(m.features(x)), 1))
    return m


def _torch_vgg11_bn(num_classes):
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.BatchNorm2d(v), tnn.ReLU(inplace=True)]
            c = v
    m = tnn.Module()
    m.features = tnn.Sequential(*layers)
    m.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    m.classifier = tnn.Sequential(
        tnn.Linear(512 * 7 * 7, 4096),
        tnn.ReLU(True),
        tnn.Dropout(0.5),
        tnn.Linear(4096, 4096),
        tnn.ReLU(True),
        tnn.Dropout(0.5),
        tnn.Linear(4096, num_classes),
    )
    m.forward = lambda x: m.classifier(torch.flatten(m.avgpool(m.features(x)), 1))
    return m


def _torch_googlenet_paper(num_classes):
    class ConvReLU(tnn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, **kw)

        def forward(self, x):
            return torch.relu_(self.conv(x))

    class Inception(tnn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
            super().__init__()
            self.branch1 = ConvReLU(cin, c1, kernel_size=1)
            self.branch2 = tnn.Sequential(
                ConvReLU(cin, c3r, kernel_size=1), ConvReLU(c3r, c3, kernel_size=3, padding=1)
            )
            self.branch3 = tnn.Sequential(
                ConvReLU(cin, c5r, kernel_size=1), ConvReLU(c5r, c5, kernel_size=5, padding=2)
            )
            self.branch4 = tnn.Sequential(
                tnn.MaxPool2d(3, 1, padding=1, ceil_mode=True), ConvReLU(cin, pp, kernel_size=1)
            )

        def forward(self, x):
            return torch.cat(
                [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1
            )

    from minicnn.models.googlenet import INCEPTION_CFG, out_channels

    class GoogLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = ConvReLU(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.lrn1 = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            self.conv2 = ConvReLU(64, 64, kernel_size=1)
            self.conv3 = ConvReLU(64, 192, kernel_size=3, padding=1)
            self.lrn2 = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            c = 192
            for name, cfg in INCEPTION_CFG.items():
                setattr(self, "inception" + name, Inception(c, *cfg))
                c = out_channels(name)
            self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.maxpool4 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.dropout = tnn.Dropout(0.4)
            self.fc = tnn.Linear(1024, num_classes)

        def forward(self, x):
            x = self.lrn1(self.maxpool1(self.conv1(x)))
            x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
            x = self.maxpool4(self.inception4e(x))
            x = self.inception5b(self.inception5a(x))
            return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    return GoogLeNet()


def _torch_resnet(block_name, layers, num_classes):
    def conv3x3(cin, cout, stride=1):
        return tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)

    def conv1x1(cin, cout, stride=1):
        return tnn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, cin, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv3x3(cin, planes, stride), tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv3x3(planes, planes), tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, cin, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv1x1(cin, planes), tnn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3x3(planes, planes, stride), tnn.BatchNorm2d(planes)
            self.conv3, self.bn3 = conv1x1(planes, planes * 4), tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    block = BasicBlock if block_name == "basic" else Bottleneck
    m = tnn.Module()
    m.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    m.bn1, m.relu = tnn.BatchNorm2d(64), tnn.ReLU(inplace=True)
    m.maxpool = tnn.MaxPool2d(3, 2, padding=1)
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        stride, cout = (1 if i == 0 else 2), planes * block.expansion
        down = None
        if stride != 1 or cin != cout:
            down = tnn.Sequential(conv1x1(cin, cout, stride), tnn.BatchNorm2d(cout))
        blocks = [block(cin, planes, stride, down)] + [block(cout, planes) for _ in range(1, n)]
        setattr(m, f"layer{i + 1}", tnn.Sequential(*blocks))
        cin = cout
    m.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
    m.fc = tnn.Linear(512 * block.expansion, num_classes)

    def forward(x):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.fc(torch.flatten(m.avgpool(x), 1))

    m.forward = forward
    return m


def _torch_densenet121(num_classes, growth=32, blocks=(6, 12, 24, 16), init=64, bn_size=4):
    from collections import OrderedDict

    class DenseLayer(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.norm1, self.relu1 = tnn.BatchNorm2d(cin), tnn.ReLU(inplace=True)
            self.conv1 = tnn.Conv2d(cin, bn_size * growth, 1, bias=False)
            self.norm2, self.relu2 = tnn.BatchNorm2d(bn_size * growth), tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))

    class DenseBlock(tnn.ModuleDict):
        def __init__(self, n, cin):
            super().__init__()
            for i in range(n):
                self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth))

        def forward(self, x):
            features = [x]
            for layer in self.values():
                features.append(layer(torch.cat(features, 1)))
            return torch.cat(features, 1)

    stem = [
        ("conv0", tnn.Conv2d(3, init, 7, stride=2, padding=3, bias=False)),
        ("norm0", tnn.BatchNorm2d(init)),
        ("relu0", tnn.ReLU(inplace=True)),
        ("pool0", tnn.MaxPool2d(3, 2, padding=1)),
    ]
    m = tnn.Module()
    m.features = tnn.Sequential(OrderedDict(stem))
    c = init
    for i, n in enumerate(blocks):
        m.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c))
        c += n * growth
        if i != len(blocks) - 1:
            m.features.add_module(
                f"transition{i + 1}",
                tnn.Sequential(
                    OrderedDict(
                        [
                            ("norm", tnn.BatchNorm2d(c)),
                            ("relu", tnn.ReLU(inplace=True)),
                            ("conv", tnn.Conv2d(c, c // 2, 1, bias=False)),
                            ("pool", tnn.AvgPool2d(2, 2)),
                        ]
                    )
                ),
            )
            c //= 2
    m.features.add_module(f"norm{len(blocks) + 1}", tnn.BatchNorm2d(c))
    m.classifier = tnn.Linear(c, num_classes)
    m.forward = lambda x: m.classifier(
        torch.flatten(tnn.functional.adaptive_avg_pool2d(torch.relu(m.features(x)), (1, 1)), 1)
    )
    return m


def torch_model(name, num_classes):
    builders = {
        "alexnet": lambda: _torch_alexnet_paper(num_classes),
        "vgg11_bn": lambda: _torch_vgg11_bn(num_classes),
        "googlenet": lambda: _torch_googlenet_paper(num_classes),
        "resnet18": lambda: _torch_resnet("basic", [2, 2, 2, 2], num_classes),
        "resnet50": lambda: _torch_resnet("bottleneck", [3, 4, 6, 3], num_classes),
        "densenet121": lambda: _torch_densenet121(num_classes),
    }
    try:  # torchvision's own definitions where they are the same network as minicnn's
        import torchvision.models as tvm

        if name in ("vgg11_bn", "resnet18", "resnet50", "densenet121"):
            return getattr(tvm, name)(num_classes=num_classes)
    except ImportError:
        pass
    return builders[name]()


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


# ---- peak memory, in a subprocess per framework and model
# -----------------------------------------
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


# ---- main ----------------------------------------------------------------------------------------
def _set_threads(n):
    if torch is not None:
        torch.set_num_threads(n)
    try:
        from minicnn.backends import get_backend

        get_backend("cpu").set_num_threads(n)
    except (ImportError, AttributeError):
        pass


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="input side (AlexNet: its minimum)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per framework (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory subprocesses"
    )
    parser.add_argument("--no-torch", action="store_true", help="time minicnn only")
    parser.add_argument(
        "--check",
        action="store_true",
        help="first check that both frameworks compute the same network",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time (steadier with --threads 1 on a busy machine)",
    )
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("FRAMEWORK", "MODEL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    _set_threads(args.threads)
    if args.memory_child:
        _memory_child(*args.memory_child, args.batch, args.size)
        return
    use_torch = torch is not None and not args.no_torch
    print(
        f"training step (forward, backward, SGD momentum), batch {args.batch}, float32, "
        f"{args.threads} threads, median of {args.steps} after {args.warmup} warm-up, {args.clock} "
        f"clock; PyTorch "
        f"{torch.__version__ if torch is not None else 'not installed'}"
    )
    header = f"{'model':<13}{'input':>7}{'minicnn s':>11}{'img/s':>8}"
    if use_torch:
        header += f"{'torch s':>9}{'img/s':>8}{'ratio':>7}"
    if not args.no_memory:
        header += f"{'minicnn MiB':>13}" + (f"{'torch MiB':>11}{'ratio':>7}" if use_torch else "")
    print(header)
    print("-" * len(header))
    for name in args.models:
        side = _input_side(name, args.size)
        if args.check and use_torch:
            print(
                f"  {name}: max relative difference of the logits {check_same_network(name, side):.2e}"
            )
        x, y = _data(args.batch, side)
        trainers = [MinicnnTrainer(name, x, y)] + ([TorchTrainer(name, x, y)] if use_torch else [])
        secs = time_steps(trainers, args.warmup, args.steps)
        del trainers
        row = f"{name:<13}{side:>7}{secs[0]:>11.3f}{args.batch / secs[0]:>8.1f}"
        if use_torch:
            row += f"{secs[1]:>9.3f}{args.batch / secs[1]:>8.1f}{secs[0] / secs[1]:>7.2f}"
        if not args.no_memory:
            ours = peak_memory_mib("minicnn", name, args.batch, side, args.threads)
            row += f"{ours:>13.0f}" if ours is not None else f"{'failed':>13}"
            if use_torch:
                theirs = peak_memory_mib("torch", name, args.batch, side, args.threads)
                row += f"{theirs:>11.0f}" if theirs is not None else f"{'failed':>11}"
                row += f"{ours / theirs:>7.2f}" if ours and theirs else f"{'':>7}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
