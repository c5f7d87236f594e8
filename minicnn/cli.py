"""The ``minicnn`` command line (also ``python -m minicnn``): it assembles the subcommands of
``minicnn/commands/`` (one module each: its options in ``add_parser``, its work in ``run``)."""

from __future__ import annotations

import argparse
import sys

from .commands import UsageError

__all__ = ["UsageError", "build_parser", "main"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minicnn", description="minicnn: a from-scratch CNN engine"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from .commands import convert, evaluate, gradcheck, models_table, summary, train, visualize

    for command in (gradcheck, models_table, visualize, summary, convert, train, evaluate):
        command.add_parser(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"minicnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
