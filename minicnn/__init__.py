"""minicnn: a from-scratch CNN engine — autograd on NumPy/CuPy arrays, our own CUDA kernels."""

from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .dtypes import bfloat16, bool_, float16, float32, float64, int32, int64
from .ops import activation as _activation  # noqa: F401  these four attach Tensor's op methods
from .ops import arith as _arith  # noqa: F401
from .ops import reduce as _reduce  # noqa: F401
from .ops import shape as _shape  # noqa: F401
from .ops.shape import cat
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor, empty, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .gradcheck import gradcheck
from . import functional, nn
from . import amp
from .amp import autocast
from .summary import Summary, summary

__version__ = "0.1.0"

# ---- lazy subpackages: ``import minicnn; minicnn.models.resnet18()`` imports them on first use
_LAZY_SUBMODULES = ("data", "io", "models", "optim", "train", "viz")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'minicnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
