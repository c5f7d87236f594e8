"""Keep freed array memory in the process (glibc's malloc), so a training step's arrays do not
fault their pages in again every step.

A step frees and allocates the same large arrays (activations, their gradients) over and over.
glibc serves a block above its mmap threshold (128 KiB at first, raised by frees up to 32 MiB)
with a fresh mmap and gives it back to the kernel on free, and trims the heap top above the trim
threshold; each new array then takes a page fault per page it touches: about 4,000 faults and
~27 ms of system time per densenet121 step at batch 16 (issue 16), serial and under the kernel's
memory-map lock, so a second thread does not help. With both thresholds raised, freed blocks stay
in malloc's heap for the next allocation. Peak memory (VmHWM) is unchanged; resident memory stays
near it between steps, as PyTorch's caching allocators do on GPUs.

``MINICNN_KEEP_FREED_MEMORY=0`` leaves malloc as it is. Only glibc on Linux; elsewhere nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 256 << 20  # blocks up to 256 MiB from the heap
TRIM_THRESHOLD = 512 << 20  # keep up to 512 MiB free at the heap top


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (once per process); True when they were set."""
    if os.environ.get("MINICNN_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


KEPT = keep_freed_memory()
