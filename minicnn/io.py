"""Save and load state dicts as ``.npz`` archives, without pickle.

An ``.npz`` is a zip of ``.npy`` files, one per key (NumPy's own format, readable by
``numpy.load(path, allow_pickle=False)`` anywhere). Only plain arrays go in: object arrays, which
NumPy could only store by pickling, are refused, and loading never unpickles, so a downloaded
checkpoint cannot run code. Writing is atomic: the archive is written to a temporary file next to
the target and moved over it with ``os.replace``, so a crash leaves the old file or the new one,
never half of one.

bfloat16 (``ml_dtypes``) has no ``.npy`` type code: such a member holds the array's bits as
uint16 (what ``numpy.load`` elsewhere returns) and the zip entry's comment says
``minicnn-dtype=bfloat16``, from which ``load_npz`` restores the dtype.

    >>> minicnn.io.save_npz("resnet18.npz", model.state_dict())
    >>> model.load_state_dict(minicnn.io.load_npz("resnet18.npz"))
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .dtypes import bfloat16
from .tensor import Tensor

__all__ = ["is_temp_file", "load_npz", "save_npz", "write_atomic"]

# Deflate cannot shrink data more than about 1032:1; a member that claims more is lying.
MAX_INFLATE_RATIO = 1100


def _as_arrays(state):
    """OrderedDict key -> ndarray from a mapping of arrays/Tensors, or one error listing all bad."""
    if not isinstance(state, Mapping):
        raise TypeError(
            f"save_npz: expected a dict of arrays (e.g. model.state_dict()), "
            f"got {type(state).__name__}"
        )
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


def write_atomic(path, write):
    """Write ``path`` atomically: ``write(f)`` fills a new temporary file (binary) beside it,
    which is flushed, fsynced and moved over ``path`` with ``os.replace``.

    A failure or a kill at any instant leaves the old file (or none) and never half of the new one;
    on an exception the temporary file is removed and the exception propagates. Temporary names
    are ``.<name>.<12 hex digits>.tmp`` (see ``is_temp_file``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; created with the umask's permissions
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make a rename in ``directory`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{12}\.tmp$")


def is_temp_file(name, targets=None):
    """Whether ``name`` is a temporary file left by a killed ``write_atomic`` (of one of
    ``targets``, the final names, when given)."""
    m = _TEMP_NAME.match(name)
    return bool(m) and (targets is None or m["target"] in targets)


def save_npz(path, state, compress=False):
    """Write ``state`` (name -> array/Tensor, e.g. ``model.state_dict()``) to ``path`` atomically.

    Keys keep their order; ``compress=True`` deflates the members (smaller, slower). The file is
    written as given (no ".npz" is appended).
    """
    arrays = _as_arrays(state)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED

    def write(f):
        with zipfile.ZipFile(f, "w", compression=method, allowZip64=True) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=time.localtime()[:6])
                info.compress_type = method
                if value.dtype == bfloat16:
                    info.comment, value = _BFLOAT16_TAG, value.view(np.uint16)
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)

    write_atomic(path, write)


def _check_container(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_npz: no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_npz: {path!r} is a directory, not an .npz file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"load_npz: {path!r} holds a single .npy array, not an .npz archive of named arrays"
        )
    if not magic.startswith(b"PK"):
        raise ValueError(
            f"load_npz: {path!r} is not an .npz archive (it does not start with a zip header"
            + (": it is empty)" if not magic else ")")
        )


def _read_header(member):
    """(shape, dtype) from the header of an open ``.npy`` member (reads a few hundred bytes)."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(member)
    elif version == (3, 0):  # utf-8 field names; NumPy has no public reader for its header
        from numpy.lib import _format_impl

        shape, _, dtype = _format_impl._read_array_header(member, version)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    return shape, dtype


def _member_header(zf, info):
    """(key, shape, dtype) of one member, its declared size checked against the archive's."""
    if not info.filename.endswith(".npy") or info.is_dir():
        raise ValueError("it is not a .npy array")
    key = info.filename[: -len(".npy")]
    with zf.open(info) as member:
        shape, dtype = _read_header(member)
    if dtype.hasobject:
        raise ValueError(f"dtype {dtype} would need pickle (allow_pickle=False)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise ValueError(
            f"it declares {shape} {dtype} ({nbytes} bytes) but the archive holds "
            f"{info.file_size} bytes for it"
        )
    if info.file_size > info.compress_size * MAX_INFLATE_RATIO + 4096:
        raise ValueError(
            f"it would inflate {info.compress_size} bytes to {info.file_size} "
            f"(more than {MAX_INFLATE_RATIO}:1, not a real deflate stream)"
        )
    return key, shape, dtype


def load_npz(path, check=None, max_bytes=None, keys=None):
    """Read an ``.npz`` written by ``save_npz`` (or ``numpy.savez``): OrderedDict name -> ndarray.

    Raises FileNotFoundError for a missing file and ValueError naming the file (and the key, when
    one member is bad) for anything that is not a readable, pickle-free ``.npz`` archive. Every
    member must be a ``.npy`` whose declared size fits the bytes the archive holds for it (and
    their compression ratio a real one); ``check(key, shape, dtype)`` may refuse a member by
    raising ValueError, and ``max_bytes`` bounds the total. All of this is checked from the headers,
    before any array is inflated. ``keys``: read only these members (all are checked).
    """
    path = os.fspath(path)
    _check_container(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = _checked_members(zf, path, check, max_bytes)
            return OrderedDict(
                (key, _read_member(zf, info, key, path))
                for key, info in infos
                if keys is None or key in keys
            )
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise ValueError(f"load_npz: {path!r} is not a readable .npz archive ({e})") from None


def _checked_members(zf, path, check, max_bytes):
    infos, total = [], 0
    for info in zf.infolist():
        try:
            key, shape, dtype = _member_header(zf, info)
            if check is not None:
                check(key, shape, dtype)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            name = info.filename.removesuffix(".npy")
            raise ValueError(f"load_npz: entry {name!r} of {path!r} is unreadable ({e})") from None
        if any(key == k for k, _ in infos):
            raise ValueError(f"load_npz: {path!r} holds {key!r} twice")
        total += math.prod(shape) * dtype.itemsize
        if max_bytes is not None and total > max_bytes:
            raise ValueError(f"load_npz: {path!r} holds more than {max_bytes} bytes of arrays")
        infos.append((key, info))
    return infos


_BFLOAT16_TAG = b"minicnn-dtype=bfloat16"


def _read_member(zf, info, key, path):
    try:
        with zf.open(info) as member:
            a = np.lib.format.read_array(member, allow_pickle=False)
        if info.comment == _BFLOAT16_TAG and a.dtype == np.uint16:
            a = a.view(bfloat16)
        return a
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"load_npz: entry {key!r} of {path!r} is unreadable ({e})") from None
