"""Mixed precision: ``autocast`` (ops choose float16/bfloat16 or float32, autocast.py) and
``GradScaler`` (loss scaling for float16, grad_scaler.py), as ``torch.amp``."""

from .autocast import autocast, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler

__all__ = ["GradScaler", "autocast", "get_autocast_dtype", "is_autocast_enabled"]
