"""The C++ helpers of the "cpu" device (minicnn._C_cpu), looked up by name and dtype.

Each NumPy kernel module keeps its own ``_C`` (the extension, or None when it is not built) and
asks :func:`cpp_kernel` for ``<name>_f32`` / ``<name>_f64``; tests set a module's ``_C`` to None
to run its NumPy fallback.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, Optional

import numpy as np


def load_cpu_extension() -> Optional[ModuleType]:
    """minicnn._C_cpu, or None when it is not built (NumPy then does everything)."""
    try:
        from .. import _C_cpu
    except ImportError:
        return None
    return _C_cpu


def cpp_kernel(C: Optional[ModuleType], name: str, dtype) -> Optional[Callable]:
    """The kernel ``name`` of extension ``C`` for a float32/float64 ``dtype``; None without the
    extension or for another dtype."""
    if C is None or dtype not in (np.float32, np.float64):
        return None
    return getattr(C, f"{name}_{'f32' if dtype == np.float32 else 'f64'}")
