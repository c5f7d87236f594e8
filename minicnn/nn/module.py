"""Module: the base class of every layer and model (torch.nn.Module).

A Module owns three ordered registries, filled by plain attribute assignment:

    self.weight = Parameter(...)          -> _parameters   (learnable; parameters(), state_dict())
    self.register_buffer("running_mean", t) -> _buffers    (state, not learnable; state_dict())
    self.conv1 = Conv2d(...)              -> _modules      (children; names nest: "conv1.weight")

``state_dict()`` walks them depth-first — each module's parameters, then its persistent buffers,
then its children, in registration order — exactly like torch, so the keys of a model written here
match the keys of the same model written with torch.nn (and converted torchvision weights load
unchanged).
"""

from __future__ import annotations

import itertools
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..autograd import no_grad
from ..backends import canonical_device, get_backend
from ..tensor import _DTYPE_NAMES, FLOAT_DTYPES, Tensor, as_dtype
from ._module_support import RemovableHandle, _IncompatibleKeys, _plan_copies, _quoted
from .parameter import Parameter

__all__ = ["Module"]


def _addindent(text, spaces):
    """Indent every line but the first (torch's helper for nested reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    rest = [(" " * spaces + line) if line.strip() else "" for line in lines[1:]]
    return "\n".join([lines[0]] + rest)


def _is_device(arg):
    """A device argument of ``to``: a device string, or an object with a string ``.type``."""
    if isinstance(arg, str):
        return arg not in _DTYPE_NAMES
    return isinstance(getattr(arg, "type", None), str)


def _move(t, device=None, dtype=None):
    """Move/cast Tensor ``t`` in place (its identity is kept, so optimizers still hold it)."""
    if dtype is not None and t.dtype in FLOAT_DTYPES and t.dtype != dtype:
        t._data = t._data.astype(dtype)
    if device is not None and t.device != device:
        host = get_backend(t.device).to_numpy(t._data)
        t._data = get_backend(device).from_numpy(host)
        t.device = device


def _assign_none(registry, name, value, kind, expected):
    """``registry[name] = None``: a registered parameter or child can be replaced only by None."""
    if value is not None:
        raise TypeError(
            f"cannot assign '{type(value).__name__}' as {kind} '{name}' "
            f"({expected} or None expected)"
        )
    registry[name] = None


class Module:
    """Base class of layers and models; subclasses set attributes in ``__init__`` and define
    ``forward``."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ---- calling ---------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{self._get_name()}] is missing the required "forward" function'
        )

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            new_args = hook(self, args)
            if new_args is not None:
                args = new_args if isinstance(new_args, tuple) else (new_args,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new_out = hook(self, args, out)
            if new_out is not None:
                out = new_out
        return out

    def register_forward_pre_hook(self, hook):
        """``hook(module, args) -> None or new args``, run before ``forward``."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output) -> None or new output``, run after ``forward``."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ---- registration ----------------------------------------------------------------------------
    def _check_new_name(self, kind, name, registry):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f'{kind} name can\'t be empty or contain ".", got {name!r}')
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name, param):
        """Add ``param`` (a Parameter, or None for an absent one like ``bias=False``) as
        ``name``."""
        self._check_new_name("parameter", name, self.__dict__.get("_parameters", {}))
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                "(minicnn.nn.Parameter or None required)"
            )
        if param is not None and not param.is_leaf:
            raise ValueError(f"cannot assign a non-leaf Tensor to parameter '{name}'")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a non-learnable Tensor (e.g. BN's running_mean); ``persistent`` puts it in
        state_dict."""
        self._check_new_name("buffer", name, self.__dict__.get("_buffers", {}))
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                "(Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Add a child module as ``name`` (``self.name = module`` does the same)."""
        self._check_new_name("module", name, self.__dict__.get("_modules", {}))
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def _drop(self, name, *registries):
        for reg in registries:
            reg.pop(name, None)
        self.__dict__.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __setattr__(self, name, value):
        d = self.__dict__
        params, buffers, modules = d.get("_parameters"), d.get("_buffers"), d.get("_modules")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._drop(name, buffers, modules)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            _assign_none(params, name, value, "parameter", "minicnn.nn.Parameter")
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._drop(name, params, buffers)
            modules[name] = value
        elif modules is not None and name in modules:
            _assign_none(modules, name, value, "child module", "minicnn.nn.Module")
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                    "(Tensor or None expected)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails; read __dict__ directly so that copy/pickle of a
        # half-built object (no _parameters yet) does not recurse.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = (
            list(super().__dir__())
            + list(self._parameters)
            + list(self._buffers)
            + list(self._modules)
        )
        return sorted(k for k in set(keys) if not k[:1].isdigit())

    # ---- traversal -------------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for self ("" or prefix) and every descendant, depth-first, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, registry, prefix, recurse, remove_duplicate):
        seen = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter), a shared Parameter only once (under its first name)."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return (b for _, b in self.named_buffers(recurse=recurse))

    def get_submodule(self, target):
        """The module at dotted path ``target`` ("" is self), or AttributeError naming the step."""
        module = self
        for item in target.split(".") if target else []:
            child = module._modules.get(item)
            if child is None:
                raise AttributeError(
                    f"{module._get_name()} has no submodule `{item}` (path {target!r})"
                )
            module = child
        return module

    # ---- state -----------------------------------------------------------------------------------
    def _state_tensors(self):
        """This module's own entries of state_dict: parameters, then persistent buffers."""
        for name, p in self._parameters.items():
            if p is not None:
                yield name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                yield name, b

    def _state_items(self, prefix=""):
        """(key, Tensor) of the whole state, torch's order: own entries, then each child's."""
        for name, t in self._state_tensors():
            yield prefix + name, t
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(prefix + name + ".")

    def _optional_state(self):
        """Names of own state entries a checkpoint may lack (they then keep their value)."""
        return ()

    def state_dict(self, *, destination=None, prefix="", keep_vars=False):
        """OrderedDict name -> NumPy array copy (or the Tensors themselves with
        ``keep_vars=True``)."""
        out = OrderedDict() if destination is None else destination
        for key, t in self._state_items(prefix):
            out[key] = t if keep_vars else np.array(t.numpy(), copy=True)
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict`` values (arrays or Tensors) into the parameters and buffers, in place.

        Everything is checked before anything is copied: a size mismatch, a value that is not an
        array, or (with ``strict``) a missing or unexpected key raises one RuntimeError listing all
        of them, and the module is left unchanged. Values are cast to each tensor's dtype. Returns
        ``(missing_keys, unexpected_keys)``. A missing BatchNorm ``num_batches_tracked`` is not an
        error (old torchvision checkpoints lack it; torch tolerates it in a plain dict too).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                "load_state_dict: expected state_dict to be dict-like, "
                f"got {type(state_dict).__name__}"
            )
        own = OrderedDict(self._state_items())
        optional = {
            name + ("." if name else "") + key
            for name, m in self.named_modules(remove_duplicate=False)
            for key in m._optional_state()
        }
        missing = [k for k in own if k not in state_dict and k not in optional]
        unexpected = [k for k in state_dict if k not in own]
        plan, errors = _plan_copies(own, state_dict)
        if strict and unexpected:
            errors.insert(0, f"Unexpected key(s) in state_dict: {_quoted(unexpected)}. ")
        if strict and missing:
            errors.insert(0, f"Missing key(s) in state_dict: {_quoted(missing)}. ")
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(
                    type(self).__name__, "\n\t".join(errors)
                )
            )
        with no_grad():
            for t, value in plan:
                t._data[...] = get_backend(t.device).from_numpy(value.astype(t.dtype))
        return _IncompatibleKeys(missing, unexpected)

    # ---- modes, devices, dtypes ------------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode on this module and every descendant (Dropout, BatchNorm depend on
        it)."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Drop (or zero in place, with ``set_to_none=False``) every parameter's ``.grad``."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def _tensors_to(self, device=None, dtype=None):
        tensors = {
            id(t): t
            for m in self.modules()
            for t in itertools.chain(m._parameters.values(), m._buffers.values())
            if t is not None
        }
        for t in tensors.values():
            _move(t, device, dtype)
            if t.grad is not None:
                _move(t.grad, device, dtype)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False):
        """``m.to("cpu")``, ``m.to(minicnn.float64)``, ``m.to(device, dtype)``, ``m.to(tensor)``.

        Moves every parameter and buffer (and their grads) in place and returns self; a dtype casts
        only the floating-point ones (num_batches_tracked stays int64), as torch does.
        """
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif _is_device(a):
                device = a
            else:
                dtype = a
        if device is not None:
            device = canonical_device(device)
            get_backend(device)  # raises now, before anything moved, if the device is not built
        if dtype is not None:
            dtype = as_dtype(dtype)
            if dtype not in FLOAT_DTYPES:
                raise TypeError(f"Module.to only accepts floating point dtypes, got dtype {dtype}")
        return self._tensors_to(device, dtype)

    def float(self):
        return self._tensors_to(dtype=FLOAT_DTYPES[0])

    def double(self):
        return self._tensors_to(dtype=FLOAT_DTYPES[1])

    def half(self):
        """Every floating-point parameter and buffer to float16 (torch's ``Module.half``)."""
        return self._tensors_to(dtype=as_dtype("float16"))

    def bfloat16(self):
        """Every floating-point parameter and buffer to bfloat16."""
        return self._tensors_to(dtype=as_dtype("bfloat16"))

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(
            "cuda"
            if device is None
            else f"cuda:{device}"
            if isinstance(device, numbers.Integral)
            else device
        )

    # ---- printing --------------------------------------------------------------------------------
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (layers override it)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(m), 2) for name, m in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                body = extra_lines[0]
            else:
                body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"
