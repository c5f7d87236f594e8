"""Start-up helpers shared by the CPU benchmarks (bench_models.py, bench_ops.py, bench_emu.py).

Import this module before NumPy: ``early_threads()`` reads ``--threads`` from the command line and
puts it into the environment variables that NumPy's OpenBLAS and any OpenMP runtime read when they
load (with several counts, ``--threads 1 2``, the largest: the helpers' pool is resized per run).
"""

from __future__ import annotations

import os
import sys
import time

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_from_argv(argv=None):
    """The integers after ``--threads`` (or in ``--threads=N``), [] when the option is absent."""
    argv = sys.argv if argv is None else argv
    for i, a in enumerate(argv):
        if a.startswith("--threads="):
            return [int(v) for v in a.split("=", 1)[1].split(",") if v.isdigit()]
        if a == "--threads":
            values = []
            for v in argv[i + 1 :]:
                if not v.isdigit():
                    break
                values.append(int(v))
            return values
    return []


def early_threads(default=None):
    """Set the BLAS/OpenMP thread variables from --threads (call before NumPy loads); returns the
    thread counts."""
    counts = threads_from_argv() or ([default] if default else [])
    if counts:
        for name in THREAD_VARIABLES + ("MINICNN_NUM_THREADS",):
            os.environ[name] = str(max(counts))
    return counts


def import_torch():
    """torch, or None where it is not installed (the tables then show minicnn's figures only)."""
    try:
        import torch

        return torch
    except ImportError:
        return None


def set_threads(n, torch=None):
    """The thread count of minicnn's CPU helpers (GEMM included) and of PyTorch, at run time."""
    if torch is not None:
        torch.set_num_threads(n)
    from minicnn.backends import get_backend

    get_backend("cpu").set_num_threads(n)


def clock(name):
    """``wall``: time.perf_counter; ``cpu``: the process's CPU time (all its threads), steadier with
    one thread on a shared, loaded machine (it leaves out the time other processes hold the
    core)."""
    return time.process_time if name == "cpu" else time.perf_counter


def load_average():
    """The 1-minute load average as text ("n/a" where /proc/loadavg is missing)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "n/a"
