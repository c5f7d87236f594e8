"""Starting N ranks: the mpiexec command line (used by ``minicnn train --nproc N`` and the tests).

The mpiexec next to the running Python (Open MPI's wheel installs it in the environment's bin/)
is preferred over one on PATH, so the ranks use the same MPI library as mpi4py. Open MPI refuses
more ranks than cores and running as root unless told: ``--oversubscribe`` and, for root,
``--allow-run-as-root`` are added for it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from ._mpi import EXTRA_HINT


def without_option(argv, flag):
    """argv minus ``flag VALUE`` and ``flag=VALUE`` wherever they stand (what each rank runs)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def find_mpiexec():
    """Path of mpiexec, or RuntimeError naming the extra to install."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError(f"mpiexec not found (next to {sys.executable} or on PATH); {EXTRA_HINT}")
    return found


@functools.lru_cache(maxsize=None)
def _is_open_mpi(mpiexec):
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


def mpiexec_command(nproc, mpiexec=None):
    """``[mpiexec, -n, N, …flags]``: append the program and its arguments."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"mpiexec_command: nproc must be an integer >= 1, got {nproc!r}")
    mpiexec = mpiexec or find_mpiexec()
    command = [mpiexec, "-n", str(nproc)]
    if _is_open_mpi(mpiexec):
        command.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-run-as-root")
    return command


def launched_by_mpi():
    """Whether this process was started by an MPI launcher (without importing MPI)."""
    keys = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
    return any(k in os.environ for k in keys)
