"""Per-op-family profile of minicnn training steps (bench_models.py --profile).

While ``OpProfile.active()`` is on, the forward and backward of every autograd Function subclass
(minicnn/ops/*) and the optimizer's step are timed: wall time and the process's CPU time (all its
threads). Per family it reports milliseconds per step and CPU/wall, the number of cores the family
kept busy on average (1.0 = one core, 2.0 = both). What is left of the step (autograd engine,
gradient accumulation, Python) is the "engine/other" row. Only the outermost call is timed where
ops nest. Two profiles at different thread counts give each family's speedup and parallel
efficiency (``compare``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

from minicnn.autograd import Function

# Function class name prefix -> family (first match); anything else is reported by its own name.
FAMILIES = [
    ("Conv", "conv"),
    ("BatchNorm", "batch_norm"),
    ("ReLU", "relu"),
    ("MaxPool", "pool"),
    ("AvgPool", "pool"),
    ("AdaptiveAvgPool", "pool"),
    ("LocalResponseNorm", "lrn"),
    ("LRN", "lrn"),
    ("Add", "add"),
    ("Cat", "cat"),
    ("Linear", "linear"),
    ("MatMul", "linear"),
    ("CrossEntropy", "loss"),
    ("LogSoftmax", "loss"),
    ("NLL", "loss"),
    ("Dropout", "dropout"),
    ("Reshape", "reshape"),
]
OTHER = "engine/other"
OPTIMIZER = "optimizer"


def family(cls_name):
    for prefix, name in FAMILIES:
        if cls_name.startswith(prefix):
            return name
    return cls_name.lower()


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


class OpProfile:
    """Seconds (wall, CPU) per op family, summed over the steps run while active()."""

    def __init__(self):
        self.wall = defaultdict(float)
        self.cpu = defaultdict(float)
        self.steps = 0
        self.step_wall = 0.0
        self.step_cpu = 0.0
        self._depth = threading.local()

    def _timed(self, fn, name):
        def timed(*args, **kwargs):
            depth = getattr(self._depth, "n", 0)
            if depth:
                return fn(*args, **kwargs)
            self._depth.n = 1
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] += time.perf_counter() - w0
                self.cpu[name] += time.process_time() - c0
                self._depth.n = 0

        return timed

    def _wrapped(self, fn, cls):
        """fn (a staticmethod, or a classmethod that subclasses share) timed under its family."""
        if isinstance(fn, classmethod):  # e.g. ops.shape.Invertible: the family of the subclass

            def per_class(klass, *args, **kwargs):
                timed = self._timed(fn.__func__, family(klass.__name__))
                return timed(klass, *args, **kwargs)

            return classmethod(per_class)
        inner = fn.__func__ if isinstance(fn, staticmethod) else fn
        return staticmethod(self._timed(inner, family(cls.__name__)))

    @contextlib.contextmanager
    def active(self, optimizer=None):
        """Time every Function's forward/backward (and ``optimizer.step``) inside the block."""
        saved = []
        for cls in set(_subclasses(Function)):
            for attr in ("forward", "backward"):
                if attr in cls.__dict__:
                    fn = cls.__dict__[attr]
                    saved.append((cls, attr, fn))
                    setattr(cls, attr, self._wrapped(fn, cls))
        if optimizer is not None:
            optimizer.step = self._timed(optimizer.step, OPTIMIZER)
        try:
            yield self
        finally:
            for cls, attr, fn in saved:
                setattr(cls, attr, fn)
            if optimizer is not None:
                del optimizer.step  # the instance attribute; the class's method shows again

    def run_step(self, step):
        """Run one step(), adding its whole wall and CPU time to the totals."""
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        self.step_wall += time.perf_counter() - w0
        self.step_cpu += time.process_time() - c0
        self.steps += 1

    def rows(self):
        """[(family, ms per step, CPU/wall)], largest first, with the engine/other remainder."""
        n = max(self.steps, 1)
        rows = [
            (k, 1e3 * self.wall[k] / n, self.cpu[k] / max(self.wall[k], 1e-12)) for k in self.wall
        ]
        rest_wall = self.step_wall - sum(self.wall.values())
        rest_cpu = self.step_cpu - sum(self.cpu.values())
        rows.append((OTHER, 1e3 * rest_wall / n, rest_cpu / max(rest_wall, 1e-12)))
        rows.sort(key=lambda r: -r[1])
        return rows

    def table(self, title):
        total = 1e3 * self.step_wall / max(self.steps, 1)
        lines = [title, f"{'op family':<16}{'ms/step':>10}{'share':>8}{'CPU/wall':>10}"]
        for name, ms, busy in self.rows():
            lines.append(f"{name:<16}{ms:>10.1f}{ms / max(total, 1e-12):>8.0%}{busy:>10.2f}")
        busy = self.step_cpu / max(self.step_wall, 1e-12)
        lines.append(f"{'step':<16}{total:>10.1f}{1:>8.0%}{busy:>10.2f}")
        return "\n".join(lines)

    def as_dict(self):
        return {name: ms for name, ms, _ in self.rows()} | {
            "step": 1e3 * self.step_wall / max(self.steps, 1)
        }


def compare(profiles, title):
    """Table of ms/step per family at each thread count, with speedup and efficiency from the
    first count to each later one. ``profiles``: {threads: OpProfile.as_dict()}."""
    counts = sorted(profiles)
    base = counts[0]
    head = f"{'op family':<16}" + "".join(f"{f'ms @{n}':>10}" for n in counts)
    head += "".join(f"{f'x @{n}':>8}{f'eff @{n}':>9}" for n in counts[1:])
    lines = [title, head]
    names = sorted(profiles[base], key=lambda k: -profiles[base][k])
    names = [k for k in names if k != "step"] + ["step"]
    for name in names:
        row = f"{name:<16}" + "".join(f"{profiles[n].get(name, 0.0):>10.1f}" for n in counts)
        for n in counts[1:]:
            t0, t1 = profiles[base].get(name, 0.0), profiles[n].get(name, 0.0)
            speedup = t0 / t1 if t1 > 0 else float("nan")
            row += f"{speedup:>8.2f}{speedup * base / n:>9.0%}"
        lines.append(row)
    return "\n".join(lines)
