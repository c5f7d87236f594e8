"""Settings of the CUDA emulator behind the "emu" device: schedules, block workers, race checker.

The emulator (csrc/emu) runs each CUDA thread as a fiber and each block on one of several OS
threads.
A correct kernel gives the same result under every schedule; an ordering bug (a missing
``__syncthreads``, two blocks writing one element, a block waiting for block 0) shows under some:

    import minicnn.emu
    minicnn.emu.set_schedule(threads="random", blocks="random", seed=3)  # from now on, this process
    with minicnn.emu.schedule(threads="reverse"):                         # or for a while
        ...
    minicnn.emu.set_num_threads(2)                                        # OS threads for blocks

The environment sets the starting values: ``MINICNN_EMU_SCHEDULE="threads=random blocks=random
seed=3"`` and ``MINICNN_EMU_THREADS=2`` (default: all cores). ``threads`` orders the threads of a
block within each barrier interval, ``blocks`` the blocks of a grid; both are forward, reverse or
random (seeded by ``seed``).

The race checker is a separate build of the extension (``MINICNN_EMU_CHECK=1``, see
scripts/emu_check.sh); with it every launch raises RuntimeError when it finds a race or a read of
uninitialised shared memory, naming kernel, block, thread, address and both source lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib

_ORDERS = ("forward", "reverse", "random")
_lib = None


def _extension():
    """The loaded minicnn._C_emu module (MINICNN_EMU_EXTENSION honoured by the backend)."""
    from .backends import emu_backend

    module = getattr(emu_backend, "_C", None)
    if module is None:
        reason = getattr(emu_backend, "unavailable_reason", lambda: None)()
        if reason:
            raise RuntimeError(f"minicnn.emu: {reason}")
        module = importlib.import_module("minicnn._C_emu")
    return module


def _c():
    """ctypes handle on the extension's C interface (csrc/emu/capi.h)."""
    global _lib
    if _lib is None:
        path = _extension().__file__
        lib = ctypes.CDLL(path)
        try:
            lib.minicnn_emu_set_schedule.argtypes = [
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_size_t,
            ]
        except AttributeError:
            raise RuntimeError(
                f"minicnn.emu: {path} has no emulator settings interface (built from an "
                f"older source? rebuild with `python setup.py build_ext --inplace`)"
            ) from None
        lib.minicnn_emu_get_schedule.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.minicnn_emu_selftest.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.minicnn_emu_report.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        _lib = lib
    return _lib


def _text_call(fn, *args, size=1 << 16):
    buf = ctypes.create_string_buffer(size)
    rc = fn(*args, buf, size)
    return rc, buf.value.decode()


def get_schedule():
    """The current schedule: dict(threads=..., blocks=..., seed=..., workers=...)."""
    _, text = _text_call(_c().minicnn_emu_get_schedule, size=256)
    items = dict(item.split("=", 1) for item in text.split())
    return dict(
        threads=items["threads"],
        blocks=items["blocks"],
        seed=int(items["seed"]),
        workers=int(items["workers"]),
    )


def set_schedule(threads=None, blocks=None, seed=None, workers=None):
    """Change the schedule of the next launches; arguments left None keep their value."""
    spec = []
    for key, value in (("threads", threads), ("blocks", blocks)):
        if value is not None:
            if value not in _ORDERS:
                raise ValueError(
                    f"set_schedule: {key} must be one of {', '.join(_ORDERS)}, got {value!r}"
                )
            spec.append(f"{key}={value}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"set_schedule: seed must be an integer >= 0, got {seed!r}")
        spec.append(f"seed={seed}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"set_schedule: workers must be an integer >= 1, got {workers!r}")
    rc, error = _text_call(
        _c().minicnn_emu_set_schedule, " ".join(spec).encode(), workers or 0, size=1024
    )
    if rc != 0:
        raise ValueError(error)


@contextlib.contextmanager
def schedule(threads=None, blocks=None, seed=None, workers=None):
    """``with schedule(threads="random", seed=1): ...`` sets the schedule for the block only."""
    saved = get_schedule()
    set_schedule(threads, blocks, seed, workers)
    try:
        yield
    finally:
        set_schedule(**saved)


def set_num_threads(n):
    """OS threads that run the blocks of a launch concurrently (the "workers" of the schedule)."""
    set_schedule(workers=n)


def get_num_threads():
    return get_schedule()["workers"]


def race_checker():
    """True when the loaded extension was built with the race checker (MINICNN_EMU_CHECK=1)."""
    return bool(_c().minicnn_emu_race_checker())


def require_race_checker():
    """Raise RuntimeError, saying why, unless the race checker is loaded."""
    if not race_checker():
        raise RuntimeError(
            f"minicnn.emu: {_extension().__file__} was built without the race checker; build "
            f"one with MINICNN_EMU_CHECK=1 (scripts/emu_check.sh does) and load it with "
            f"MINICNN_EMU_EXTENSION=/path/to/_C_emu….so"
        )


def reports():
    """The race checker's reports so far, one string per launch that had findings."""
    lib = _c()
    out = []
    for i in range(lib.minicnn_emu_report_count()):
        _, text = _text_call(lib.minicnn_emu_report, i)
        out.append(text)
    return out


def selftest(name):
    """Run one of the emulator's self-test kernels (csrc/emu/selftest.h); RuntimeError on a find."""
    rc, error = _text_call(_c().minicnn_emu_selftest, name.encode())
    if rc != 0:
        raise (ValueError if error.startswith("no emulator selftest") else RuntimeError)(error)
