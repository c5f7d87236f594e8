"""DataLoader: batches of a dataset, shuffled under a seed, decoded ahead by worker processes.

    loader = DataLoader(ImageFolder("train", transform), batch_size=128, shuffle=True, num_workers=4,
                        seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels in loader:        # (N, C, H, W) float32 and (N,) int64 NumPy arrays
            …

Reproducibility: the order of epoch e is a permutation drawn from (seed, e), and the random
transforms of batch b draw from a generator seeded with (seed, e, b), so the batches are the same
with 0, 1 or 8 workers and a run resumed at epoch e sees what an uninterrupted one saw.

Workers (``num_workers > 0``) are processes started on the first iteration and kept for the
loader's life (``close()`` or garbage collection stops them). Each takes a batch's indices from a
task queue, loads and collates the samples and sends the batch back; the loader keeps
``prefetch_factor`` batches per worker in flight and yields them in order. A worker's exception is
raised in the main process with the worker's traceback; a worker that dies is an error too.
Samples whose image cannot be decoded (``UnreadableImage``) are left out of their batch; the loader
warns once, at the end of the epoch, with the number of files skipped.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import numbers
import os
import queue
import signal
import traceback
import warnings
import weakref

import numpy as np

from .. import random as _random
from .folder import UnreadableImage
from .transforms import sample_generator

__all__ = ["DataLoader", "UnreadableImageWarning", "default_collate"]


class UnreadableImageWarning(UserWarning):
    """Some image files could not be decoded and were skipped."""


def default_collate(samples):
    """A list of samples -> one batch: arrays and numbers stacked, tuples collated field by field."""
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


def _worker_loop(dataset, collate_fn, tasks, results):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    while True:
        task = tasks.get()
        if task is None:
            return
        key, indices, seed_words = task
        try:
            batch, skipped = _load_batch(dataset, indices, seed_words, collate_fn)
            results.put((key, batch, skipped, None))
        except Exception:  # noqa: BLE001 - reported in the main process with the traceback
            results.put((key, None, [], traceback.format_exc()))


def _stop_workers(workers, tasks):
    for _ in workers:
        try:
            tasks.put(None)
        except (OSError, ValueError):
            pass
    for w in workers:
        w.join(timeout=2)
        if w.is_alive():
            w.terminate()
            w.join(timeout=2)


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, num_workers=0, seed=None,
                 collate_fn=default_collate, prefetch_factor=2, timeout=120.0, sampler=None):
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("prefetch_factor", prefetch_factor, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"DataLoader: {name} must be an integer >= {low}, got {value!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, int(batch_size), shuffle, drop_last
        self.num_workers, self.prefetch_factor, self.timeout = int(num_workers), prefetch_factor, timeout
        self.collate_fn = collate_fn
        if sampler is not None and shuffle:  # the sampler decides the order (torch's rule)
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle=True")
        self.sampler = sampler
        self.seed = int(_random.generator().integers(2 ** 63)) if seed is None else int(seed)
        self.epoch = 0
        self._workers, self._tasks, self._results, self._finalizer = [], None, None, None
        self._iterations = itertools.count()
        self._reported = set()  # unreadable files already warned about

    def __len__(self):
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        """Make the next iteration epoch ``epoch`` (its order and augmentation); iterating advances it."""
        self.epoch = int(epoch)

    def batch_indices(self, epoch):
        """The list of index arrays of epoch ``epoch``."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.sampler is not None:  # e.g. DistributedSampler: told the epoch, gives the order
            getattr(self.sampler, "set_epoch", lambda e: None)(epoch)
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
            n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        batches = self.batch_indices(epoch)
        rank = (getattr(self.sampler, "rank", 0),) if self.sampler is not None else ()
        seeds = [(self.seed, epoch, b) + rank for b in range(len(batches))]  # per-rank augmentation
        if self.num_workers == 0:
            return self._iter_here(batches, seeds)
        return self._iter_workers(batches, seeds)

    def _iter_here(self, batches, seeds):
        skipped = []
        for indices, seed_words in zip(batches, seeds):
            batch, bad = _load_batch(self.dataset, indices, seed_words, self.collate_fn)
            skipped += bad
            if batch is not None:
                yield batch
        self._report(skipped)

    # ---- worker processes -----------------------------------------------------------------------
    def _start_workers(self):
        if self._workers and all(w.is_alive() for w in self._workers):
            return
        self.close()
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() and os.name == "posix"
                             and not _is_macos() else "spawn")
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        self._workers = [ctx.Process(target=_worker_loop, daemon=True, name=f"minicnn-loader-{i}",
                                     args=(self.dataset, self.collate_fn, self._tasks, self._results))
                         for i in range(self.num_workers)]
        for w in self._workers:
            w.start()
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers, self._tasks)

    def close(self):
        """Stop the worker processes (they restart on the next iteration)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._workers = []

    def _iter_workers(self, batches, seeds):
        self._start_workers()
        run = next(self._iterations)  # results of an abandoned earlier iteration are dropped
        limit = self.num_workers * self.prefetch_factor
        sent = done = 0
        ready, skipped = {}, []
        while done < len(batches):
            while sent < len(batches) and sent - done < limit:
                self._tasks.put(((run, sent), batches[sent], seeds[sent]))
                sent += 1
            while done not in ready:
                (r, b), batch, bad, error = self._receive()
                if error is not None:
                    raise RuntimeError(f"DataLoader worker failed on batch {b}:\n{error}")
                if r == run:
                    ready[b] = (batch, bad)
            batch, bad = ready.pop(done)
            batch = _canonical_dtypes(batch)
            done += 1
            skipped += bad
            if batch is not None:
                yield batch
        self._report(skipped)

    def _receive(self):
        waited = 0.0
        while True:
            try:
                return self._results.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
            dead = [w for w in self._workers if not w.is_alive()]
            if dead:
                self.close()
                raise RuntimeError(f"DataLoader worker (pid {dead[0].pid}) exited unexpectedly with "
                                   f"code {dead[0].exitcode}")
            if self.timeout and waited >= self.timeout:
                raise RuntimeError(f"DataLoader: no batch from the workers in {self.timeout:.0f} s")

    def _report(self, skipped):
        new = [(p, r) for p, r in skipped if p not in self._reported]
        if not new:
            return
        self._reported.update(p for p, _ in new)
        path, reason = new[0]
        warnings.warn(f"skipped {len(new)} unreadable image file(s) (first: {path}: {reason})",
                      UnreadableImageWarning, stacklevel=3)


def _is_macos():
    return os.uname().sysname == "Darwin" if hasattr(os, "uname") else False
