"""The model registry: builders by name (torchvision's ``get_model`` / ``list_models`` API).

Each family file decorates its builders with ``@register_model(family)``; ``minicnn.models``
imports every family, so the registry is complete once the package is imported.
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict

__all__ = [
    "get_model",
    "get_model_builder",
    "list_models",
    "model_family",
    "model_table",
    "model_variants",
    "register_model",
    "search_min_input_size",
    "variant_kwargs",
]

_BUILDERS = OrderedDict()  # name -> builder function
_FAMILIES = {}  # name -> family ("alexnet", "vgg", "googlenet", "resnet", "densenet")


def register_model(family, name=None):
    """Decorator: record a builder under ``name`` (default: the function's name)."""

    def wrap(fn):
        key = name or fn.__name__
        if key in _BUILDERS:
            raise ValueError(f"register_model: a model named {key!r} is already registered")
        _BUILDERS[key] = fn
        _FAMILIES[key] = family
        return fn

    return wrap


def list_models(family=None):
    """Names of the registered builders (of one ``family`` when given), numbers in numeric order."""
    if family is not None and family not in set(_FAMILIES.values()):
        raise ValueError(
            f"list_models: unknown family {family!r}; expected one of "
            f"{sorted(set(_FAMILIES.values()))}"
        )
    names = [n for n in _BUILDERS if family is None or _FAMILIES[n] == family]
    return sorted(
        names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
    )


def get_model_builder(name):
    """The builder function registered as ``name``; a KeyError suggests close names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _BUILDERS:
        close = difflib.get_close_matches(str(name), list(_BUILDERS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"Unknown model {name!r}{hint} (list_models() gives all {len(_BUILDERS)} names)"
        )
    return _BUILDERS[key]


def get_model(name, **kwargs):
    """Build the model registered as ``name``: ``get_model("resnet50", num_classes=10)``."""
    return get_model_builder(name)(**kwargs)


def model_family(name):
    """The family ("alexnet", "vgg", "googlenet", "resnet", "densenet") of a registered builder."""
    get_model_builder(name)
    return _FAMILIES[name.lower()]


# ---- variants and the model table (``minicnn models``) -----------------------------------------
def model_variants(name):
    """Variant label -> builder kwargs of registered model ``name``, default first.

    A builder with a ``variant`` argument has its family's ``VARIANTS`` ("paper", "torchvision");
    the CIFAR ResNets have ``shortcut`` "A" / "B"; the others one variant, labelled "" ({}).
    """
    import inspect
    import sys

    builder = get_model_builder(name)
    params = inspect.signature(builder).parameters
    family = sys.modules[builder.__module__]
    for kwarg, choices in (("variant", "VARIANTS"), ("shortcut", "SHORTCUTS")):
        if kwarg in params:
            default = params[kwarg].default
            values = sorted(getattr(family, choices), key=lambda v: v != default)
            return OrderedDict((v, {kwarg: v}) for v in values)
    return OrderedDict([("", {})])


def variant_kwargs(name, variant):
    """The builder kwargs of ``name``'s ``variant`` (a ValueError lists the valid variants)."""
    variants = model_variants(name)
    if variant in variants:
        return dict(variants[variant])
    if list(variants) == [""]:
        raise ValueError(f"{name} has no variants (got {variant!r})")
    kind = next(iter(variants[next(iter(variants))]))
    raise ValueError(
        f"{name} has no variant {variant!r}; its variants ({kind}=) are {', '.join(variants)}"
    )


def search_min_input_size(model, upper):
    """The smallest side H (= W) in 1..``upper`` on which ``model`` runs in evaluation mode,
    found by bisection with the model's own size checks switched off: what the engine's layer
    geometry allows (every pool and strided conv keeps an output), computed, not looked up."""
    from .. import no_grad, zeros

    saved = {
        k: getattr(model, k) for k in ("min_input_size", "min_input_size_aux") if hasattr(model, k)
    }
    channels = getattr(model, "default_input_size", (3,))[0]
    training = [(m, m.training) for m in model.modules()]
    model.eval()

    def runs(h):
        try:
            with no_grad():
                model(zeros(1, channels, h, h))
            return True
        except ValueError:
            return False

    try:
        for k in saved:
            setattr(model, k, 1)
        lo, hi = 0, upper  # runs(lo) is False (or lo = 0), runs(hi) is True
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if runs(mid) else (mid, hi)
        return hi
    finally:
        for k, v in saved.items():
            setattr(model, k, v)
        for m, mode in training:
            m.training = mode


def model_table(names=None):
    """One dict per (builder, variant): name, variant, family, params, MACs (all ops) at the
    default input size, default_input_size and min_input_size (searched). Models are built
    without drawing random weights (``summary.skip_init``): the numbers need shapes only."""
    import numpy as np

    from ..summary import skip_init, summary

    rows = []
    for name in names or list_models():
        for label, kwargs in model_variants(name).items():
            with skip_init():
                model = get_model(name, **kwargs)
            with np.errstate(all="ignore"):
                s = summary(model)
                size = model.default_input_size
                rows.append(
                    {
                        "name": name,
                        "variant": label,
                        "family": model_family(name),
                        "params": s.params,
                        "macs": s.macs,
                        "macs_conv_linear": s.macs_conv_linear,
                        "default_input_size": tuple(size),
                        "min_input_size": search_min_input_size(model, size[1]),
                    }
                )
    return rows
