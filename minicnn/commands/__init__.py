"""Subcommands of the ``minicnn`` command line (``cli.py`` only assembles them): each module has
an ``add_parser(sub)`` that registers its arguments and its ``run(args)``; errors a user can fix
raise :class:`UsageError` (one line, exit code 2)."""

from __future__ import annotations

import contextlib
import sys
import warnings


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


@contextlib.contextmanager
def plain_warnings():
    """Show warnings as 'minicnn: warning: …' lines (e.g. the loader's count of unreadable
    images)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"minicnn: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
