"""Helpers shared by the model families: the input-size check and the weight-init loops."""

from __future__ import annotations

from .. import nn
from ..tensor import Tensor

__all__ = ["check_input", "check_variant"]


def check_input(model, x, min_size, why=""):
    """Raise a ValueError naming ``model.arch`` when ``x`` is not (N, C, H, W) or H/W <
    ``min_size``.

    ``min_size`` is the smallest side for which every pooling/strided layer still has an output
    (derived per family in its docstring; tests check that it is tight).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{model.arch}: input must be a minicnn Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{model.arch}: expected a (N, C, H, W) input, got shape {x.shape}")
    h, w = x.shape[2:]
    if h < min_size or w < min_size:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"{model.arch}: input of {h}x{w} pixels is too small; this architecture needs "
            f"at least {min_size}x{min_size}{reason}"
        )


def check_variant(arch, variant, allowed):
    """``variant`` if it is one of ``allowed``, else a ValueError listing them."""
    if variant not in allowed:
        raise ValueError(
            f"{arch}: unknown variant {variant!r}; expected one of "
            + ", ".join(repr(v) for v in allowed)
        )
    return variant


def init_bn_(module):
    """BatchNorm weight 1, bias 0 (every torchvision family does this)."""
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)) and module.weight is not None:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
