"""The run folder: which folders ``--out`` may use, the marker that says a folder is a minicnn run,
and what a run may delete there (only temporary files of its own writes).

A run writes ``.minicnn-run`` first, before anything else; a folder that is not empty and has no
marker belongs to the user and is refused. Every problem with the path (a file, no permission, a
read-only filesystem) is found here, before the dataset and the model are built.
"""

from __future__ import annotations

import json
import os

from ..io import is_temp_file, write_atomic
from .config import ConfigError

__all__ = ["MARKER", "RUN_FILES", "RunFolderError", "check_run_folder", "open_run_folder"]

MARKER = ".minicnn-run"
RUN_FILES = ("config.json", "metrics.csv", "curves.png", "last.npz", "best.npz", MARKER)


class RunFolderError(ConfigError):
    """A run folder that cannot be used or written: one line, exit code 2 in the CLI."""


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_writable(folder, out):
    if not os.path.isdir(folder):
        raise RunFolderError(f"cannot create the run folder {out!r}: {folder!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "read-only filesystem" if _read_only_fs(folder) else "permission denied"
        raise RunFolderError(f"cannot write into {folder!r} ({why}); choose another --out")


def _read_only_fs(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_run_folder(out, resume=False):
    """RunFolderError unless ``out`` can hold this run: new, empty, or a minicnn run (with
    ``resume``, the run to continue)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise RunFolderError(f"--out {out!r} is a file, not a folder")
    if not os.path.isdir(out):
        _check_writable(_nearest_existing(out), out)
        return
    entries = set(os.listdir(out))
    if not resume and "last.npz" in entries:
        raise RunFolderError(
            f"{out!r} already holds a run (last.npz); continue it with --resume {out} "
            f"or choose another --out"
        )
    if not resume and entries and MARKER not in entries:
        shown = ", ".join(sorted(entries)[:3]) + (", …" if len(entries) > 3 else "")
        raise RunFolderError(
            f"--out {out!r} is not empty ({shown}) and is not a minicnn run folder "
            f"(no {MARKER}); choose a new or empty folder"
        )
    _check_writable(out, out)


def open_run_folder(out, config_json):
    """Create the folder, mark it as a run, drop the temporary files of our own killed writes, write
    config.json. OSError becomes RunFolderError."""
    try:
        os.makedirs(out, exist_ok=True)
        if not os.path.exists(os.path.join(out, MARKER)):
            marker = json.dumps({"format": "minicnn-run", "version": 1}).encode()
            write_atomic(os.path.join(out, MARKER), lambda f: f.write(marker))
        for name in os.listdir(out):
            if is_temp_file(name, RUN_FILES):
                os.unlink(os.path.join(out, name))
        text = json.dumps(config_json, indent=2).encode()
        write_atomic(os.path.join(out, "config.json"), lambda f: f.write(text))
    except OSError as e:
        raise RunFolderError(f"cannot write the run folder {out!r}: {e.strerror or e}") from None
