"""The model registry: builders by name (torchvision's ``get_model`` / ``list_models`` API).

Each family file decorates its builders with ``@register_model(family)``; ``minicnn.models``
imports every family, so the registry is complete once the package is imported.
"""
from __future__ import annotations

import difflib
import re
from collections import OrderedDict

__all__ = ["get_model", "get_model_builder", "list_models", "model_family", "register_model"]

_BUILDERS = OrderedDict()   # name -> builder function
_FAMILIES = {}              # name -> family ("alexnet", "vgg", "googlenet", "resnet", "densenet")


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
        raise ValueError(f"list_models: unknown family {family!r}; expected one of "
                         f"{sorted(set(_FAMILIES.values()))}")
    names = [n for n in _BUILDERS if family is None or _FAMILIES[n] == family]
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def get_model_builder(name):
    """The builder function registered as ``name``; a KeyError suggests close names."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _BUILDERS:
        close = difflib.get_close_matches(str(name), list(_BUILDERS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"Unknown model {name!r}{hint} (list_models() gives all {len(_BUILDERS)} names)")
    return _BUILDERS[key]


def get_model(name, **kwargs):
    """Build the model registered as ``name``: ``get_model("resnet50", num_classes=10)``."""
    return get_model_builder(name)(**kwargs)


def model_family(name):
    """The family ("alexnet", "vgg", "googlenet", "resnet", "densenet") of a registered builder."""
    get_model_builder(name)
    return _FAMILIES[name.lower()]
