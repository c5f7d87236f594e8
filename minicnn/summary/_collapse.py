"""``summary(..., depth=N)``: collapse rows below nesting depth N into their ancestor's row.

As torchinfo's ``depth``: a row named ``layer1.0.conv1`` has depth 3; with depth 1 every
consecutive row under ``layer1`` becomes one ``layer1`` row (type: the module's class) that sums
params, buffers, MACs and memory, and shows the output shape and receptive field of the group's
last row (what the module returns). Rows at depth <= N are kept as they are.
"""

from __future__ import annotations

from dataclasses import replace

from ._trace import Row, _unique

__all__ = ["collapse_rows"]


def _key(name, depth):
    parts = name.split(".")
    return ".".join(parts[:depth]) if len(parts) > depth else None


def _merge(name, type_, group):
    last = group[-1]
    row = Row(
        name, type_, "module", last.output_shape, rf=last.rf, jump=last.jump, start=last.start
    )
    for field in ("params_trainable", "params_non_trainable", "buffers", "macs", "memory_bytes"):
        setattr(row, field, sum(getattr(r, field) for r in group))
    return row


def collapse_rows(rows, depth, types):
    """``rows`` with every run of rows under one depth-``depth`` module merged into one row.

    ``types`` maps module paths to class names (``{name: m._get_name()}``).
    """
    if depth is None:
        return list(rows)
    out, seen, group, key = [], set(), [], None

    def flush():
        if group:
            out.append(_merge(_unique(key, seen), types.get(key, "?"), group))
            group.clear()

    for r in rows:
        k = _key(r.name, depth)
        if k is None or k != key:
            flush()
            key = k
        if k is None:
            out.append(replace(r, name=_unique(r.name, seen)))
        else:
            group.append(r)
    flush()
    return out
