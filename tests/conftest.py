import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minicnn

# Small, fast, deterministic property tests: CI has 2 cores and a time budget.
settings.register_profile(
    "default",
    max_examples=int(os.environ.get("MINICNN_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _seed():
    minicnn.manual_seed(0)
    yield


def assert_close(actual, expected, dtype=np.float64, rtol=None, atol=None):
    """Compare arrays with a dtype-aware tolerance (float64 ~1e-10, float32 ~1e-4)."""
    actual = actual.numpy() if isinstance(actual, minicnn.Tensor) else np.asarray(actual)
    expected = expected.numpy() if isinstance(expected, minicnn.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if np.dtype(dtype) == np.float64:
        rtol, atol = rtol or 1e-10, atol or 1e-10
    else:
        rtol, atol = rtol or 1e-4, atol or 1e-5
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def pytest_terminal_summary(terminalreporter):
    """One line per distinct skip reason (with its count) instead of one per test location:
    without CuPy every "cuda" kernel test repeats the same install hint."""
    reasons = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = (
            str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        )
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason", sep="-")
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{count:4d} skipped: {reason}")


# ---- a stale extension fails the run loudly ------------------------------------------------------
_EXTENSION_SOURCES = {  # extension -> the csrc globs it is built from (setup.py)
    "_C_cpu": ["cpu/*", "geometry*.h"],
    "_C_emu": [
        "bindings.cpp",
        "emu_kernels.cpp",
        "kernels/*",
        "emu/*.h",
        "geometry*.h",
        "cuda_compat.h",
    ],
    "_C_cuda": ["bindings.cpp", "kernels/*", "geometry*.h", "cuda_compat.h"],
}


def stale_extensions(root):
    """(module, newest source) for each extension built in the source tree ``root`` that is older
    than a C++/CUDA file it is built from: the tests would run old code."""
    import glob

    stale = []
    for name, patterns in _EXTENSION_SOURCES.items():
        built = glob.glob(os.path.join(root, "minicnn", f"{name}.*.so"))
        sources = [f for p in patterns for f in glob.glob(os.path.join(root, "csrc", p))]
        if not built or not sources:
            continue
        newest = max(sources, key=os.path.getmtime)
        if os.path.getmtime(newest) > max(os.path.getmtime(b) for b in built):
            stale.append((name, os.path.relpath(newest, root)))
    return stale


def pytest_sessionstart(session):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stale = stale_extensions(root)
    if stale:
        lines = [f"minicnn.{name} is older than {source}" for name, source in stale]
        pytest.exit(
            "stale C++ extension(s): " + "; ".join(lines) + ". Rebuild first: "
            ".venv/bin/pip install -e . (or python setup.py build_ext --inplace)",
            returncode=2,
        )
