"""The cpu thread pool's parallel_for runs every index exactly once, also under contention: many
tiny chunks (one index each), far more threads than cores, thousands of calls. A non-atomic chunk
claim hands a chunk out twice or skips one, which shows as a count other than the number of calls.

How often such a race fires depends on how the OS schedules the threads: one round of the contention
case caught a planted non-atomic claim about half the time on a loaded 2-core machine, so the test
runs rounds for a few seconds (the odds of missing it fall by half with each round)."""

import time

import numpy as np
import pytest

_C_cpu = pytest.importorskip("minicnn._C_cpu")


def check_counts(n, threads, repeats, spin):
    counts = _C_cpu._parallel_for_counts(n, 1, threads, repeats, spin)
    bad = np.flatnonzero(counts != repeats)
    assert bad.size == 0, (
        f"{bad.size} of {n} indices ran a wrong number of times, e.g. index {bad[0]}: "
        f"{counts[bad[0]]} times in {repeats} calls of parallel_for"
    )


def test_every_index_runs_exactly_once_under_contention():
    started, rounds = time.monotonic(), 0
    while rounds < 12 and (rounds < 3 or time.monotonic() - started < 3.0):
        check_counts(256, 64, 3000, 20)  # 256 chunks of one index each, 64 threads
        rounds += 1


@pytest.mark.parametrize("n,threads", [(1, 4), (3, 16), (1000, 7), (100003, 32)])
def test_every_index_runs_exactly_once(n, threads):
    check_counts(n, threads, 20, 0)


def test_the_thread_count_is_restored():
    before = _C_cpu.get_num_threads()
    _C_cpu._parallel_for_counts(100, 1, 9, 1)
    assert _C_cpu.get_num_threads() == before


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="_parallel_for_counts"):
        _C_cpu._parallel_for_counts(0, 1, 2, 1)
