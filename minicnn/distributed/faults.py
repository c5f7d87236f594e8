"""Fault propagation: an uncaught exception on one rank stops every rank, with that rank's message.

Without this, the other ranks would wait forever in their next collective. The hook prints the
traceback with a ``[rank r]`` prefix and calls ``MPI_Abort``, which makes mpiexec kill the whole
job at once. Ctrl-C (KeyboardInterrupt) prints one line and aborts with exit status 130; SIGTERM
(what mpiexec sends the ranks when it is interrupted) becomes a KeyboardInterrupt, so the training
loop's ``except KeyboardInterrupt`` reports what was saved.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback

_installed = {}
_DRAIN_SECONDS = 0.3


def _report(rank, size, kind, value, tb):
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write(f"[rank {rank}] interrupted; stopping all {size} ranks\n")
        return 130
    text = "".join(traceback.format_exception(kind, value, tb))
    sys.stderr.write("".join(f"[rank {rank}] {line}" for line in text.splitlines(True)))
    sys.stderr.write(f"[rank {rank}] aborting all {size} ranks (MPI_Abort)\n")
    return 1


def install_fault_handlers(comm, rank, size):
    """Make an uncaught exception (main thread or any other) on this rank abort the whole job."""
    if size == 1 or _installed.get("comm") is comm:
        return
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        code = _report(rank, size, kind, value, tb)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        time.sleep(_DRAIN_SECONDS)  # let mpiexec forward the message before it kills the job
        comm.Abort(code)
        previous(kind, value, tb)  # only reached if Abort returned

    def thread_hook(args):
        excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    _installed["comm"] = comm


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
