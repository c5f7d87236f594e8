"""One training step (forward, cross entropy, backward, SGD with momentum) on a GPU: minicnn on
device "cuda" beside PyTorch on cuda, from the same initial weights.

    python benchmarks/bench_train_gpu.py [--models resnet50 resnet18 densenet121] [--batch 64]
                                         [--size 224] [--steps 5] [--device cuda|emu] [--json
                                         out.json] [--amp fp16|bf16]

Per model: minicnn's weights are copied into the PyTorch model (benchmarks/bench_models.py writes
the PyTorch networks with torchvision's module names, or takes torchvision's), both run one step on
the same batch, and the first step's losses must agree to --loss-rtol (exit 1 otherwise: the two
sides are not the same computation). Then ``--warmup`` + ``--steps`` steps each, alternating; the
median step time gives images/s. TF32 is off (FP32 on both sides). ``--device emu`` runs minicnn on
the emulator (PyTorch then on the CPU when installed): the dry run of scripts/gpu_check.sh, whose
times mean nothing. ``--amp fp16|bf16``: mixed precision on both sides, the forward pass under
``minicnn.autocast`` / ``torch.autocast`` and, for fp16, the step through ``GradScaler`` (torch's
for torch); the first losses then agree to the half dtype's rounding (default --loss-rtol 2e-2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minicnn  # noqa: E402
import minicnn.functional as F  # noqa: E402
import minicnn.models as models  # noqa: E402
from minicnn.amp import GradScaler  # noqa: E402

LR, MOMENTUM, NUM_CLASSES = 0.01, 0.9, 1000


def data(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((batch, 3, size, size)).astype(np.float32),
        rng.integers(0, NUM_CLASSES, size=batch),
    )


AMP_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


class Ours:
    def __init__(self, name, x, y, device, amp=None):
        from minicnn.optim import SGD

        self.model = models.get_model(name, num_classes=NUM_CLASSES)
        self.state = {
            k: np.array(v) for k, v in self.model.state_dict().items()
        }  # the initial weights
        self.model.to(device)
        self.model.train()
        self.x, self.y = minicnn.tensor(x, device=device), minicnn.tensor(y, device=device)
        self.optimizer = SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=LR, momentum=MOMENTUM
        )
        self.device, self.amp = device, amp
        self.scaler = GradScaler(device, enabled=amp == "fp16")

    def step(self):
        self.optimizer.zero_grad()
        dtype = AMP_DTYPES.get(self.amp, "float16")
        with minicnn.autocast(self.device, dtype=dtype, enabled=self.amp is not None):
            loss = F.cross_entropy(self.model(self.x), self.y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.item())  # a device sync


class Theirs:
    def __init__(self, torch, name, x, y, state, device, amp=None):
        from bench_models import torch_model

        self.torch = torch
        self.model = torch_model(name, NUM_CLASSES)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        self.model.to(device).train()
        self.x, self.y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.device, self.amp = device, amp
        self.scaler = torch.amp.GradScaler(device, enabled=amp == "fp16")

    def step(self):
        torch = self.torch
        self.optimizer.zero_grad(set_to_none=True)
        dtype = getattr(torch, AMP_DTYPES.get(self.amp, "float16"))
        with torch.autocast(self.device, dtype=dtype, enabled=self.amp is not None):
            loss = torch.nn.functional.cross_entropy(self.model(self.x), self.y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.item())


def torch_or_none(device):
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: minicnn's figures only")
        return None
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch


def median_seconds(trainer, warmup, steps):
    for _ in range(warmup):
        trainer.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_model(name, args, torch):
    x, y = data(args.batch, args.size)
    ours = Ours(name, x, y, args.device, args.amp)
    row = dict(model=name, batch=args.batch, size=args.size, amp=args.amp)
    theirs = None
    if torch is not None:
        device = "cuda" if args.device == "cuda" else "cpu"
        theirs = Theirs(torch, name, x, y, ours.state, device, args.amp)
    row["loss_ours"] = ours.step()
    if theirs is not None:
        row["loss_torch"] = theirs.step()
        row["loss_rel_diff"] = abs(row["loss_ours"] - row["loss_torch"]) / max(
            abs(row["loss_torch"]), 1e-30
        )
        row["losses_equal"] = row["loss_rel_diff"] <= args.loss_rtol
    if not np.isfinite(row["loss_ours"]):
        row["losses_equal"] = False
    row["ours_img_s"] = args.batch / median_seconds(ours, args.warmup, args.steps)
    if theirs is not None and args.device == "cuda":
        row["torch_img_s"] = args.batch / median_seconds(theirs, args.warmup, args.steps)
        row["ours_over_torch"] = row["ours_img_s"] / row["torch_img_s"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "resnet18", "densenet121"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda", choices=["cuda", "emu"])
    ap.add_argument("--loss-rtol", type=float, help="default 1e-3, with --amp 2e-2")
    ap.add_argument("--amp", choices=sorted(AMP_DTYPES), help="mixed precision on both sides")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.loss_rtol is None:
        args.loss_rtol = 2e-2 if args.amp else 1e-3
    torch = torch_or_none(args.device)
    rows, ok = [], True
    for name in args.models:
        row = run_model(name, args, torch)
        rows.append(row)
        ok &= row.get("losses_equal", True)
        line = f"{name:12s} first loss ours {row['loss_ours']:.5f}"
        if "loss_torch" in row:
            same = "equal" if row["losses_equal"] else "DIFFERENT"
            line += f" torch {row['loss_torch']:.5f} ({same})"
        line += f"   ours {row['ours_img_s']:8.1f} img/s"
        if "torch_img_s" in row:
            line += f"   torch {row['torch_img_s']:8.1f} img/s"
            line += f"   ours/torch {row['ours_over_torch']:.2f}"
        print(line, flush=True)
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(dict(device=args.device, amp=args.amp, models=rows, passed=ok), f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
