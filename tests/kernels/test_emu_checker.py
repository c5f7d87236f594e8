"""The emulator's schedules and race checker from Python (minicnn.emu; csrc/emu/schedule.h,
check.h).

The checker itself needs its own build (scripts/emu_check.sh); here: the schedule API and its
errors, results that don't depend on the schedule, a partial barrier reported with the schedule, and
what a build without the checker says.
"""

import numpy as np
import pytest

import minicnn
import minicnn.emu as emu
from minicnn import functional as F
from tests.kernel_devices import unavailable

pytestmark = pytest.mark.skipif(unavailable("emu") is not None, reason=str(unavailable("emu")))


def test_set_and_restore_schedule():
    before = emu.get_schedule()
    with emu.schedule(threads="random", blocks="reverse", seed=7, workers=3):
        assert emu.get_schedule() == dict(threads="random", blocks="reverse", seed=7, workers=3)
        assert emu.get_num_threads() == 3
    assert emu.get_schedule() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(threads="sideways"),
            "threads must be one of forward, reverse, random, got 'sideways'",
        ),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(workers=0), "workers must be an integer >= 1, got 0"),
    ],
)
def test_bad_schedule_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        emu.set_schedule(**kwargs)


SCHEDULES = [
    dict(threads=t, blocks=b, seed=s, workers=w)
    for t, b, s, w in [
        ("forward", "forward", 0, 1),
        ("reverse", "reverse", 0, 2),
        ("random", "random", 1, 2),
        ("random", "random", 2, 3),
    ]
]


def test_conv_and_batchnorm_do_not_depend_on_the_schedule():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 9, 9))
    w = rng.standard_normal((7, 5, 3, 3))
    results = []
    for s in SCHEDULES:
        with emu.schedule(**s):
            xt = minicnn.tensor(x, device="emu", requires_grad=True)
            wt = minicnn.tensor(w, device="emu", requires_grad=True)
            y = F.conv2d(xt, wt, padding=1)
            z = F.batch_norm(y, None, None, None, None, training=True)
            (z * z).sum().backward()
            results.append((z.numpy(), xt.grad.numpy(), wt.grad.numpy()))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)  # blocks write disjoint outputs: same bits


def test_partial_barrier_is_reported_with_the_schedule():
    with emu.schedule(threads="random", seed=5, workers=2):
        with pytest.raises(
            RuntimeError,
            match=r"kernel partial_barrier: .*divergent barrier.*thread \(5,0,0\)"
            r".*\[schedule threads=random blocks=\w+ seed=5 workers=2\]",
        ):
            emu.selftest("partial_barrier")


def test_unknown_selftest():
    with pytest.raises(ValueError, match="no emulator selftest named 'nope'"):
        emu.selftest("nope")


def test_checker_findings_or_why_not():
    if not emu.race_checker():
        with pytest.raises(
            RuntimeError,
            match="was built without the race checker; build one with MINICNN_EMU_CHECK=1",
        ):
            emu.require_race_checker()
        emu.selftest("neighbour_exchange_race")  # the plain build runs it without a word
        return
    with pytest.raises(
        RuntimeError,
        match=r"(?s)kernel blocks_write_same: race checker: .*write by block \(\d,0,0\) "
        r"thread \(0,0,0\) at csrc/emu/selftest.h:\d+ .*different blocks",
    ):
        emu.selftest("blocks_write_same")
    assert any("blocks_write_same" in r for r in emu.reports())
    emu.selftest("neighbour_exchange")  # clean
