"""minicnn keeps freed array memory in glibc's heap (backends/_malloc.py, issue 16): a loop that
allocates, fills and frees the same large array faults its pages in once, not every time; and
MINICNN_KEEP_FREED_MEMORY=0 leaves malloc alone."""

import os
import subprocess
import sys

import pytest

_LOOP = """
import resource
import numpy as np
import minicnn
minicnn.zeros(1)  # the cpu backend is loaded
from minicnn.backends import _malloc
a = np.ones(1 << 22, np.float32)  # 16 MiB: above glibc's default mmap threshold
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones(1 << 22, np.float32)
    del a
print(_malloc.KEPT, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep):
    env = dict(os.environ, MINICNN_KEEP_FREED_MEMORY=keep)
    out = subprocess.run(
        [sys.executable, "-c", _LOOP], env=env, capture_output=True, text=True, check=True
    )
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_arrays_are_reused_without_page_faults():
    kept, faults = _faults("1")
    off, faults_off = _faults("0")
    assert kept and not off
    assert faults_off >= 20  # every new array faulted in again (at least one fault each)
    assert faults * 10 < faults_off
