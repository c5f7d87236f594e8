"""Every copy of a device array's values between host and device passes here, counted.

On "cuda" a device→host read (``Tensor.item``/``numpy``/``float``/``bool``/``tolist``/``repr``,
``np.asarray(tensor)``, a backend's ``to_numpy``) waits for all queued work: a hidden host
round-trip in a training step stalls the GPU. "emu" makes the same calls (its arrays are host
memory, but the code paths are the same), so a test can count them on a machine without a GPU:

    with count_transfers() as c:
        train_step()
    assert c.reads == 0           # no device→host read inside the step
    c.uploads                     # host→device copies (the batch; the optimizer's pointer tables)

``to_host`` and ``to_device`` are the one place that records a transfer; the emu and cuda backends
call them from ``to_numpy`` / ``from_numpy``. ``record_upload`` notes a copy made elsewhere (a
kernel's pointer table, copied by the binding).

Deferred checks. A check whose outcome lives on the device (cross-entropy's target range) is not
read at once: ``defer(flags, raise_fn)`` keeps the small device array ``flags``, and the next
device→host read first reads every pending one (in one copy) and calls ``raise_fn(values)`` for
each, which raises if the check failed. The error thus surfaces at the next sync the caller
makes (``loss.item()``, the training loop's metrics read), not inside the op.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from typing import Any, Callable, List

_counters: List["TransferCounter"] = []
_pending: List[tuple] = []  # (backend, flags array, raise_fn) of deferred checks
_MAX_PENDING = 256  # more unread: read them now (bounded memory in a loop that never syncs)
_lock = threading.Lock()
_flushing = False  # set while flush_checks reads: its read is recorded as "deferred checks"


class TransferCounter:
    """What ``count_transfers`` saw: ``reads`` (device→host), ``uploads`` (host→device), each
    event as (direction, what, device, shape, where) in ``events``; ``what`` is "array" (a
    backend's to_numpy / from_numpy) or what ``record_upload`` was told (e.g. "pointer table")."""

    def __init__(self, devices):
        self.devices = devices
        self.events = []

    @property
    def reads(self) -> int:
        return sum(1 for e in self.events if e[0] == "read")

    def reads_of(self, what: str) -> int:
        return sum(1 for e in self.events if e[0] == "read" and e[1] == what)

    @property
    def uploads(self) -> int:
        return sum(1 for e in self.events if e[0] == "upload")

    def describe(self) -> str:
        return "\n".join(f"{d} of {what} {s} on {dev} at {w}" for d, what, dev, s, w in self.events)

    def uploads_of(self, what: str) -> int:
        return sum(1 for e in self.events if e[0] == "upload" and e[1] == what)


@contextlib.contextmanager
def count_transfers(devices=("emu", "cuda")):
    """Count the transfers of arrays of ``devices`` made inside the ``with`` block."""
    counter = TransferCounter(tuple(devices))
    _counters.append(counter)
    try:
        yield counter
    finally:
        _counters.remove(counter)


def _record(direction, what, device, a):
    if not _counters:
        return
    frames = traceback.extract_stack(limit=8)[:-3]
    where = " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in frames)
    for counter in _counters:
        if device in counter.devices:
            counter.events.append((direction, what, device, tuple(getattr(a, "shape", ())), where))


def to_host(device: str, a: Any, read: Callable[[Any], Any]) -> Any:
    """``read(a)``: the host copy (or view) of the device array ``a``, after pending checks."""
    if _pending:
        flush_checks()
    _record("read", "deferred checks" if _flushing else "array", device, a)
    return read(a)


def to_device(device: str, a: Any, write: Callable[[Any], Any]) -> Any:
    """``write(a)``: the device copy of the host array ``a``."""
    _record("upload", "array", device, a)
    return write(a)


def record_upload(device: str, what: str, a: Any) -> None:
    """Count a host→device copy of ``what`` made outside ``to_device`` (e.g. by a binding)."""
    _record("upload", what, device, a)


def defer(backend, flags, raise_fn: Callable[[Any], None]) -> None:
    """Check ``flags`` (a small device array) at the next device→host read: ``raise_fn(host
    copy of flags)`` raises if the check failed."""
    with _lock:
        _pending.append((backend, flags, raise_fn))
        full = len(_pending) >= _MAX_PENDING
    if full:
        flush_checks()


def flush_checks() -> None:
    """Read every pending check, in one copy per backend, and raise the first failure."""
    with _lock:
        pending, _pending[:] = list(_pending), []
    by_backend = {}
    for backend, flags, raise_fn in pending:
        by_backend.setdefault(id(backend), (backend, []))[1].append((flags, raise_fn))
    for backend, checks in by_backend.values():
        xp = backend.xp
        stacked = xp.concatenate([xp.ravel(f).astype(xp.int64) for f, _ in checks])
        host = _read_checks(backend, stacked)
        start = 0
        for flags, raise_fn in checks:
            raise_fn(host[start : start + flags.size])
            start += flags.size


def _read_checks(backend, stacked):
    global _flushing
    _flushing = True
    try:
        return backend.to_numpy(stacked)  # counted; the pending list is empty by now
    finally:
        _flushing = False
