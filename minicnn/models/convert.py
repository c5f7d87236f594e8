"""Convert PyTorch/torchvision ``.pth`` checkpoints to minicnn's pickle-free ``.npz``.

PyTorch is needed only here, only to read the ``.pth`` (``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects), and is imported inside the functions: minicnn itself never
imports it. The arrays keep torchvision's names (``num_batches_tracked`` included), so the
``.npz`` loads into the torchvision-compatible minicnn model with ``load_state_dict``:

    $ minicnn convert-weights resnet50-11ad3fa6.pth resnet50.npz
    >>> m = minicnn.models.resnet50()
    >>> m.load_state_dict(minicnn.io.load_npz("resnet50.npz"))

For alexnet and googlenet build ``variant="torchvision"``. torchvision's pretrained GoogLeNet file
keeps its (untrained) aux heads and expects ``transform_input=True``: ``load_torchvision_weights``
drops the aux keys when the model has none. torchvision's DenseNet files use legacy keys
(``denselayer1.norm.1.weight``) that its ``_load_state_dict`` renames while loading
(``denselayer1.norm1.weight``); ``read_pth`` renames them the same way (``rename_legacy_keys``).

Errors (no torch, an unreadable file, weights that do not load) raise :class:`ConversionError`;
``minicnn convert-weights`` prints it as one line and exits with 2, as every subcommand does.
"""

from __future__ import annotations

import inspect
import os
import re
from collections import OrderedDict
from collections.abc import Mapping

from ..io import load_npz, save_npz

__all__ = [
    "ConversionError",
    "convert_weights",
    "load_torchvision_weights",
    "main_convert",
    "read_pth",
    "rename_legacy_keys",
]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# torchvision.models.densenet._load_state_dict's pattern: "denselayer1.norm.1.weight" -> "norm1"
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class ConversionError(ValueError):
    """The weights cannot be converted or do not load (one line for the command line)."""


def rename_legacy_keys(state):
    """The state_dict with DenseNet's legacy ``….norm.1.weight`` keys renamed ``….norm1.weight``
    (torchvision's own renaming, applied to the keys in order; other keys are unchanged)."""
    out = OrderedDict()
    for key, value in state.items():
        match = _LEGACY_DENSENET.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "converting .pth weights needs PyTorch to read the file (pip install "
            "'minicnn[torch]' or torch); minicnn itself does not use it"
        ) from None
    return torch


def _find_state_dict(obj, torch, src):
    """The name -> tensor mapping in a checkpoint: the object itself, or under
    "state_dict"/"model"."""
    if isinstance(obj, Mapping):
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return obj
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _find_state_dict(obj[key], torch, src)
        bad = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not torch.is_tensor(v)][:5]
        raise ValueError(
            f"{src!r} is not a state_dict of tensors: non-tensor entries " + ", ".join(bad)
        )
    raise ValueError(f"{src!r} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")


def read_pth(src):
    """OrderedDict name -> NumPy array of the state_dict in ``src`` (half/bfloat16 become float32).

    A DataParallel "module." prefix on every key is removed.
    """
    torch = _import_torch()
    src = os.fspath(src)
    if not os.path.exists(src):
        raise FileNotFoundError(f"no such file: {src!r}")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError…)
        raise ValueError(
            f"cannot read {src!r} as a PyTorch checkpoint with weights_only=True "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    state = _find_state_dict(obj, torch, src)
    strip = all(k.startswith("module.") for k in state)
    out = OrderedDict()
    for key, t in state.items():
        t = t.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        out[key[len("module.") :] if strip else key] = t.numpy().copy()
    return rename_legacy_keys(out)


def convert_weights(src_pth, dst_npz, compress=False):
    """Read the ``.pth`` state_dict at ``src_pth`` and write it to ``dst_npz``; returns the
    arrays."""
    arrays = read_pth(src_pth)
    save_npz(dst_npz, arrays, compress=compress)
    return arrays


def _drop_missing_aux(model, state):
    """torchvision's pretrained GoogLeNet keeps aux heads; drop them for a model built without."""
    if getattr(model, "aux1", 0) is None:
        return OrderedDict((k, v) for k, v in state.items() if not k.startswith(("aux1.", "aux2.")))
    return state


def load_torchvision_weights(model, npz_path, strict=True):
    """Load a converted torchvision ``.npz`` into ``model`` (aux keys dropped if it has no aux
    heads)."""
    state = _drop_missing_aux(model, load_npz(npz_path))
    return model.load_state_dict(state, strict=strict)


def _torchvision_model(name, state):
    """Build registry model ``name`` in its torchvision-compatible form for checking ``state``."""
    from ._registry import get_model_builder

    builder = get_model_builder(name)
    params = inspect.signature(builder).parameters
    kwargs = {}
    if "variant" in params:
        kwargs["variant"] = "torchvision"
    if "aux_logits" in params:
        kwargs["aux_logits"] = any(k.startswith("aux1.") for k in state)
    return builder(**kwargs)


def main_convert(src, dst, model=None, compress=False):
    """``minicnn convert-weights SRC DST [--model NAME]``: convert, optionally check that the
    weights load into registry model NAME (torchvision form); print a one-line report. Raises
    :class:`ConversionError` (the command line's exit code 2) on any failure."""
    try:
        arrays = convert_weights(src, dst, compress=compress)
    except (ImportError, OSError, ValueError, TypeError) as e:
        raise ConversionError(str(e)) from None
    checked = ""
    if model is not None:
        try:
            load_torchvision_weights(_torchvision_model(model, arrays), dst, strict=True)
        except (KeyError, ValueError, RuntimeError) as e:
            first = " ".join(str(e).strip().splitlines()[:2])
            raise ConversionError(
                f"wrote {dst}, but it does not load into {model}: {first}"
            ) from None
        checked = f"; loads into {model} (strict)"
    values = sum(int(a.size) for a in arrays.values())
    mib = sum(a.nbytes for a in arrays.values()) / 2**20
    print(
        f"wrote {dst}: {len(arrays)} arrays, {values:,} values ({mib:.1f} MiB) from {src}{checked}"
    )
    return 0
