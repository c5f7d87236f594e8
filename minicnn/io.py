"""Save and load state dicts as ``.npz`` archives, without pickle.

An ``.npz`` is a zip of ``.npy`` files, one per key (NumPy's own format, readable by
``numpy.load(path, allow_pickle=False)`` anywhere). Only plain arrays go in: object arrays, which
NumPy could only store by pickling, are refused, and loading never unpickles, so a downloaded
checkpoint cannot run code. Writing is atomic: the archive is written to a temporary file next to
the target and moved over it with ``os.replace``, so a crash leaves the old file or the new one,
never half of one.

    >>> minicnn.io.save_npz("resnet18.npz", model.state_dict())
    >>> model.load_state_dict(minicnn.io.load_npz("resnet18.npz"))
"""
from __future__ import annotations

import os
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .tensor import Tensor

__all__ = ["load_npz", "save_npz"]


def _as_arrays(state):
    """OrderedDict key -> ndarray from a mapping of arrays/Tensors, or one error listing every bad entry."""
    if not isinstance(state, Mapping):
        raise TypeError(f"save_npz: expected a dict of arrays (e.g. model.state_dict()), "
                        f"got {type(state).__name__}")
    arrays, bad = OrderedDict(), []
    for key, value in state.items():
        if not isinstance(key, str) or not key:
            bad.append(f"key {key!r} is not a non-empty string")
            continue
        if isinstance(value, Tensor):
            value = value.numpy()
        if not isinstance(value, (np.ndarray, np.generic)):
            bad.append(f"{key!r} is a {type(value).__name__}, not a NumPy array or Tensor")
            continue
        value = np.asarray(value)
        if value.dtype.hasobject:
            bad.append(f"{key!r} has dtype {value.dtype}, which would need pickle")
            continue
        arrays[key] = value
    if bad:
        raise TypeError("save_npz: cannot store " + "; ".join(bad))
    return arrays


def save_npz(path, state, compress=False):
    """Write ``state`` (name -> array or Tensor, e.g. ``model.state_dict()``) to ``path`` atomically.

    Keys keep their order; ``compress=True`` deflates the members (smaller, slower). The file is
    written as given (no ".npz" is appended).
    """
    arrays = _as_arrays(state)
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; created with the umask's permissions
            with zipfile.ZipFile(f, "w", compression=method, allowZip64=True) as zf:
                for key, value in arrays.items():
                    with zf.open(key + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, value, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path):
    """Read an ``.npz`` written by ``save_npz`` (or ``numpy.savez``): OrderedDict name -> ndarray.

    Raises FileNotFoundError for a missing file and ValueError naming the file (and the key, when
    one member is bad) for anything that is not a readable, pickle-free ``.npz`` archive.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_npz: no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_npz: {path!r} is a directory, not an .npz file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(f"load_npz: {path!r} holds a single .npy array, not an .npz archive of named arrays")
    if not magic.startswith(b"PK"):
        raise ValueError(f"load_npz: {path!r} is not an .npz archive (it does not start with a zip header"
                         + (": it is empty)" if not magic else ")"))
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"load_npz: {path!r} is not a readable .npz archive ({e})") from None
    out = OrderedDict()
    with archive:
        for key in archive.files:
            try:
                out[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
                raise ValueError(f"load_npz: entry {key!r} of {path!r} is unreadable ({e})") from None
    return out
