"""DataLoader: batches of a dataset, shuffled under a seed, decoded ahead by worker processes.

    loader = DataLoader(ImageFolder("train", transform), batch_size=128, shuffle=True,
    num_workers=4,
                        seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:        # (N, C, H, W) float32 and (N,) int64 NumPy arrays
            …

Reproducibility: the order of epoch e is a permutation drawn from (seed, e), and the random
transforms of batch b draw from a generator seeded with (seed, e, b), so the batches are the same
with 0, 1 or 8 workers and a run resumed at epoch e sees what an uninterrupted one saw.

Workers (``num_workers > 0``) are processes started on the first iteration and kept for the loader's
life (``close()`` or garbage collection stops them). Each takes a batch's indices from a task queue,
loads and collates the samples and sends the batch back; the loader keeps ``prefetch_factor``
batches per worker in flight and yields them in order. A worker's exception is raised in the main
process with the worker's traceback; a worker that dies is an error naming its pid and the batch it
was loading. Results come back through one pipe per worker as length-prefixed messages that the main
process reads without blocking, so a worker killed in the middle of a message is noticed instead of
hanging the read. Workers die with the main process (PR_SET_PDEATHSIG on Linux, and a watchdog on
the parent's pid). An epoch in which every sample was unreadable raises ``UnreadableDataset``.
Samples whose image cannot be decoded (``UnreadableImage``) are left out of their batch; the loader
warns once, at the end of the epoch, with the number of files skipped.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import multiprocessing as mp
import numbers
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
import time
import traceback
import warnings
import weakref
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from .. import random as _random
from .folder import UnreadableDataset, UnreadableImage
from .transforms import sample_generator

__all__ = ["DataLoader", "DataLoaderError", "UnreadableImageWarning", "default_collate"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_FRAME = struct.Struct("<Q")  # a result message: its length, then the pickle


class UnreadableImageWarning(UserWarning):
    """Some image files could not be decoded and were skipped."""


def default_collate(samples):
    """A list of samples -> one batch: arrays and numbers stacked, tuples collated field by
    field."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, np.ndarray):
        return np.stack(samples)
    if isinstance(first, (numbers.Number, np.generic)):
        return np.asarray(samples)
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}")


def _load_batch(dataset, indices, seed_words, collate_fn):
    """(collated batch or None if every sample was unreadable, [(path, reason) skipped])."""
    samples, skipped = [], []
    with sample_generator(np.random.default_rng(seed_words)):
        for i in indices:
            try:
                samples.append(dataset[int(i)])
            except UnreadableImage as e:
                skipped.append((e.path, e.reason))
    return (collate_fn(samples) if samples else None), skipped


def _canonical_dtypes(batch):
    """The batch with each array's dtype replaced by NumPy's own instance of it (a view, no copy).

    Unpickled arrays carry a fresh, equal dtype object; native code that checks the dtype by
    identity (pybind11's ``dtype().is``) would reject them.
    """
    if isinstance(batch, np.ndarray):
        return batch.view(np.dtype(batch.dtype.str)) if batch.dtype.fields is None else batch
    if isinstance(batch, tuple):
        return tuple(_canonical_dtypes(b) for b in batch)
    if isinstance(batch, list):
        return [_canonical_dtypes(b) for b in batch]
    if isinstance(batch, dict):
        return {k: _canonical_dtypes(v) for k, v in batch.items()}
    return batch


def _die_with_parent(parent_pid, use_pdeathsig):
    """Exit when the main process dies: PR_SET_PDEATHSIG on Linux, and a watchdog thread
    anywhere."""
    if use_pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="minicnn-parent-watchdog").start()


def _send_frame(fd, obj):
    """Write one length-prefixed pickle to the raw pipe ``fd`` (blocking until it is all
    written)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _worker_loop(dataset, collate_fn, tasks, results, parent_pid, use_pdeathsig):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    _die_with_parent(parent_pid, use_pdeathsig)
    fd = results.fileno()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        key, indices, seed_words = task
        try:
            batch, skipped = _load_batch(dataset, indices, seed_words, collate_fn)
            message = (key, batch, skipped, None)
            pickle.dumps(
                message, protocol=pickle.HIGHEST_PROTOCOL
            )  # an unpicklable batch is an error
        except Exception:  # noqa: BLE001 - reported in the main process with the traceback
            message = (key, None, [], traceback.format_exc())
        _send_frame(fd, message)


class _Worker:
    """A worker process, its task pipe, its result pipe (read without blocking) and what it owes."""

    def __init__(self, ctx, index, dataset, collate_fn):
        task_recv, self.tasks = ctx.Pipe(duplex=False)
        self.results, result_send = ctx.Pipe(duplex=False)
        pdeathsig = threading.current_thread() is threading.main_thread()
        self.process = ctx.Process(
            target=_worker_loop,
            daemon=True,
            name=f"minicnn-loader-{index}",
            args=(dataset, collate_fn, task_recv, result_send, os.getpid(), pdeathsig),
        )
        self.process.start()
        task_recv.close()
        result_send.close()
        os.set_blocking(self.results.fileno(), False)
        self.index, self.buffer, self.pending = index, bytearray(), collections.deque()

    def drain(self):
        """Read what the pipe holds now: [complete messages]. Never blocks on a partial message."""
        while True:
            try:
                chunk = os.read(self.results.fileno(), 1 << 20)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.buffer += chunk
        messages = []
        while len(self.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self.buffer)
            if len(self.buffer) < _FRAME.size + size:
                break
            messages.append(pickle.loads(self.buffer[_FRAME.size : _FRAME.size + size]))
            del self.buffer[: _FRAME.size + size]
        for _ in messages:
            self.pending.popleft()
        return messages

    def death(self):
        """Why this worker is gone (its pid, how it ended and the batch it owed), or None if
        alive."""
        if self.process.is_alive() or not self.pending:
            return None
        code = self.process.exitcode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        run, batch = self.pending[0]
        worker = f"DataLoader worker {self.index} (pid {self.process.pid})"
        return f"{worker} {how} while loading batch {batch}"


def _stop_workers(workers):
    for w in workers:
        try:
            w.tasks.send(None)
        except (OSError, ValueError):
            pass
    for w in workers:
        w.process.join(timeout=2)
        if w.process.is_alive():
            w.process.terminate()
            w.process.join(timeout=2)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=2)
        for conn in (w.tasks, w.results):
            conn.close()


class DataLoaderError(RuntimeError):
    """A worker died, failed, or sent nothing within the timeout."""


class DataLoader:
    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int = 0,
        seed: Optional[int] = None,
        collate_fn: Callable[[Sequence[Any]], Any] = default_collate,
        prefetch_factor: int = 2,
        timeout: float = 120.0,
        sampler: Optional[Any] = None,
    ) -> None:
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("prefetch_factor", prefetch_factor, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"DataLoader: {name} must be an integer >= {low}, got {value!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = (
            dataset,
            int(batch_size),
            shuffle,
            drop_last,
        )
        self.num_workers, self.prefetch_factor, self.timeout = (
            int(num_workers),
            prefetch_factor,
            timeout,
        )
        self.collate_fn = collate_fn
        if sampler is not None and shuffle:  # the sampler decides the order (torch's rule)
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle=True")
        self.sampler = sampler
        self.seed = int(_random.generator().integers(2**63)) if seed is None else int(seed)
        self.epoch = 0
        self._workers, self._selector, self._finalizer = [], None, None
        self._inbox = collections.deque()
        self._iterations = itertools.count()
        self._reported = set()  # unreadable files already warned about

    def __len__(self) -> int:
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and augmentation); iterating advances
        it."""
        self.epoch = int(epoch)

    def batch_indices(self, epoch):
        """The list of index arrays of epoch ``epoch``."""
        n = len(self.dataset)
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(n)
            if self.shuffle
            else np.arange(n)
        )
        if self.sampler is not None:  # e.g. DistributedSampler: told the epoch, gives the order
            getattr(self.sampler, "set_epoch", lambda e: None)(epoch)
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
            n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[Any]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        batches = self.batch_indices(epoch)
        rank = (getattr(self.sampler, "rank", 0),) if self.sampler is not None else ()
        seeds = [(self.seed, epoch, b) + rank for b in range(len(batches))]  # per-rank augmentation
        if self.num_workers == 0:
            return self._iter_here(batches, seeds)
        return self._iter_workers(batches, seeds)

    def _iter_here(self, batches, seeds):
        skipped, yielded = [], 0
        for indices, seed_words in zip(batches, seeds):
            batch, bad = _load_batch(self.dataset, indices, seed_words, self.collate_fn)
            skipped += bad
            if batch is not None:
                yielded += 1
                yield batch
        self._report(skipped, yielded)

    # ---- worker processes -----------------------------------------------------------------------
    def _start_workers(self):
        if self._workers and all(w.process.is_alive() for w in self._workers):
            return
        self.close()
        ctx = mp.get_context(
            "fork"
            if "fork" in mp.get_all_start_methods() and os.name == "posix" and not _is_macos()
            else "spawn"
        )
        self._workers = [
            _Worker(ctx, i, self.dataset, self.collate_fn) for i in range(self.num_workers)
        ]
        self._selector = selectors.DefaultSelector()
        for w in self._workers:
            self._selector.register(w.results.fileno(), selectors.EVENT_READ, w)
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers)

    def close(self):
        """Stop the worker processes (they restart on the next iteration)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._workers, self._inbox = [], collections.deque()

    def _iter_workers(self, batches, seeds):
        self._start_workers()
        run = next(self._iterations)  # results of an abandoned earlier iteration are dropped
        limit = self.num_workers * self.prefetch_factor
        sent = done = 0
        ready, skipped, yielded = {}, [], 0
        while done < len(batches):
            while sent < len(batches) and sent - done < limit:
                self._send(sent % self.num_workers, (run, sent), batches[sent], seeds[sent])
                sent += 1
            while done not in ready:
                (r, b), batch, bad, error = self._receive()
                if error is not None:
                    self.close()
                    raise DataLoaderError(f"DataLoader worker failed on batch {b}:\n{error}")
                if r == run:
                    ready[b] = (batch, bad)
            batch, bad = ready.pop(done)
            done += 1
            skipped += bad
            if batch is not None:
                yielded += 1
                yield _canonical_dtypes(batch)
        self._report(skipped, yielded)

    def _send(self, i, key, indices, seed_words):
        worker = self._workers[i]
        worker.pending.append(key)
        try:
            worker.tasks.send((key, indices, seed_words))
        except OSError:
            self._check_workers()
            raise

    def _receive(self):
        """The next result message; DataLoaderError if a worker died or the timeout passed."""
        started = time.monotonic()
        while not self._inbox:
            for key, _ in self._selector.select(timeout=0.5):
                self._inbox.extend(key.data.drain())
            if self._inbox:
                break
            self._check_workers()
            if self.timeout and time.monotonic() - started >= self.timeout:
                busy = ", ".join(
                    f"pid {w.process.pid} on batch {w.pending[0][1]}"
                    for w in self._workers
                    if w.pending
                )
                self.close()
                raise DataLoaderError(
                    f"DataLoader: no batch from the workers in {self.timeout:.0f} s "
                    f"({busy or 'none busy'})"
                )
        return self._inbox.popleft()

    def _check_workers(self):
        for w in self._workers:
            self._inbox.extend(w.drain())  # what a worker sent before it died still counts
            why = w.death()
            if why is not None:
                self.close()
                raise DataLoaderError(why)

    def _report(self, skipped, yielded):
        if skipped and not yielded:
            path, reason = skipped[0]
            where = getattr(self.dataset, "root", type(self.dataset).__name__)
            raise UnreadableDataset(
                f"every image of {where} was unreadable ({len(skipped)} files; "
                f"first: {path}: {reason})"
            )
        new = [(p, r) for p, r in skipped if p not in self._reported]
        if not new:
            return
        self._reported.update(p for p, _ in new)
        path, reason = new[0]
        warnings.warn(
            f"skipped {len(new)} unreadable image file(s) (first: {path}: {reason})",
            UnreadableImageWarning,
            stacklevel=3,
        )


def _is_macos():
    return os.uname().sysname == "Darwin" if hasattr(os, "uname") else False
