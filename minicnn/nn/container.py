"""Containers: Sequential, ModuleList, ModuleDict (torch.nn) — children named "0", "1", … or by
key."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from itertools import islice

from .module import Module, _addindent

__all__ = ["ModuleDict", "ModuleList", "Sequential"]


def _abs_index(op, idx, size):
    """A non-negative index in [0, size) from ``idx`` in [-size, size), or IndexError."""
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"{op}: index {idx} is out of range for {size} modules")
    return idx % size


def _renumber(module):
    """After a deletion, rename the children "0", "1", … again (as torch does)."""
    module._modules = OrderedDict((str(i), m) for i, m in enumerate(module._modules.values()))


def _insert(container, index, module):
    """Insert ``module`` before position ``index`` (-n <= index <= n) and renumber the children."""
    n = len(container)
    if not isinstance(module, Module):
        raise TypeError(
            f"{container._get_name()}.insert: expected a Module, got {type(module).__name__}"
        )
    if not -n <= operator.index(index) <= n:
        raise IndexError(
            f"{container._get_name()}.insert: index {index} is out of range for {n} modules"
        )
    modules = list(container._modules.values())
    modules.insert(index, module)
    container._modules = OrderedDict((str(i), m) for i, m in enumerate(modules))


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: children named "0", "1", … in order."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Sequential(_ModuleSequence):
    """Calls its children in order: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    ``Sequential(OrderedDict([("conv", ...), ("relu", ...)]))`` names the children by key.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def _key(self, idx):
        keys = self._modules.keys()
        return next(islice(keys, _abs_index("Sequential", idx, len(self)), None))

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return self._modules[self._key(idx)]

    def __setitem__(self, idx, module):
        setattr(self, self._key(idx), module)

    def __delitem__(self, idx):
        keys = list(self._modules.keys())[idx] if isinstance(idx, slice) else [self._key(idx)]
        for key in keys:
            delattr(self, key)
        _renumber(self)

    def __add__(self, other):
        if not isinstance(other, Sequential):
            raise TypeError(
                f"Sequential: can only add another Sequential, got {type(other).__name__}"
            )
        return Sequential(*self, *other)

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        _insert(self, index, module)
        return self

    def forward(self, input):
        from .normalization import batch_norm_relu, fusable_bn_relu

        modules = list(self)
        i = 0
        while i < len(modules):
            pair = modules[i : i + 2]
            if len(pair) == 2 and pair[1] is not None and fusable_bn_relu(*pair):
                input = batch_norm_relu(modules[i], modules[i + 1], input)  # one fused op
                i += 2
            else:
                input = modules[i](input)
                i += 1
        return input


class ModuleList(_ModuleSequence):
    """A list of modules that registers them (so their parameters are found); no forward."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_abs_index("ModuleList", idx, len(self)))]

    def __setitem__(self, idx, module):
        setattr(self, str(_abs_index("ModuleList", idx, len(self))), module)

    def __delitem__(self, idx):
        if isinstance(idx, slice):
            for key in list(self._modules.keys())[idx]:
                delattr(self, key)
        else:
            delattr(self, str(_abs_index("ModuleList", idx, len(self))))
        _renumber(self)

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))

    def extend(self, modules):
        if not isinstance(modules, Iterable):
            raise TypeError(
                f"ModuleList.extend should be called with an iterable of modules, "
                f"got {type(modules).__name__}"
            )
        offset = len(self)
        for i, module in enumerate(modules):
            self.add_module(str(offset + i), module)
        return self

    def insert(self, index, module):
        _insert(self, index, module)

    def __repr__(self):
        """torch's compressed repr: a run of identical children prints once as "(0-2): 3 x
        ReLU()"."""
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        runs = []  # [start, end, repr]
        for i, r in enumerate(reprs):
            if runs and runs[-1][2] == r:
                runs[-1][1] = i
            else:
                runs.append([i, i, r])
        lines = [
            _addindent(f"({a}): {r}" if a == b else f"({a}-{b}): {b - a + 1} x {r}", 2)
            for a, b, r in runs
        ]
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """An ordered dict of named modules that registers them; no forward."""

    def __init__(self, modules=None):
        super().__init__()
        self.update({} if modules is None else modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def clear(self):
        self._modules.clear()

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def update(self, modules):
        """Add modules from a mapping or an iterable of (key, module) pairs."""
        if isinstance(modules, (Mapping, ModuleDict)):
            pairs = modules.items()
        elif isinstance(modules, Iterable):
            pairs = []
            for j, pair in enumerate(modules):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise ValueError(
                        f"ModuleDict.update: element #{j} should be a (key, module) pair, "
                        f"got {pair!r}"
                    )
                pairs.append(pair)
        else:
            raise TypeError(
                f"ModuleDict.update: expected a mapping or an iterable of pairs, "
                f"got {type(modules).__name__}"
            )
        for key, module in pairs:
            self[key] = module
