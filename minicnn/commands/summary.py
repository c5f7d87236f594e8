"""``minicnn summary``: the per-layer table of one model, or ``--compare`` several side by side
(``minicnn.summary``), with an optional bar chart of their parameters and MACs."""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys

from . import UsageError

__all__ = ["add_parser", "run"]


def _parse_input(text):
    """'3x224x224' (or '224', meaning 3x224x224) -> (3, 224, 224)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise UsageError(
            f"summary: --input must look like 3x224x224 (positive integers joined by "
            f"'x'), got {text!r}"
        )
    return (3, dims[0], dims[0]) if len(dims) == 1 else dims


def _build_model(name, args):
    """The model NAME or NAME:VARIANT, built without drawing random weights."""
    from .. import models
    from ..summary import skip_init

    name, _, variant = name.partition(":")
    if name.lower() not in models.list_models():
        close = difflib.get_close_matches(name.lower(), models.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"summary: unknown model {name!r}{hint}; choose from {', '.join(models.list_models())}"
        )
    kwargs = {}
    if variant or args.variant is not None:
        try:
            kwargs = models.variant_kwargs(name.lower(), variant or args.variant)
        except ValueError as e:
            raise UsageError(f"summary: --variant: {e}") from None
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    try:
        with skip_init():  # a summary needs shapes, not values: skip drawing random weights
            return models.get_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"summary: cannot build {name} with {kwargs}: {e}") from None


def _summarise(name, size, args):
    from ..summary import SummaryError, summary

    model = _build_model(name, args)
    try:
        return summary(model, size, name=name, depth=args.depth)
    except SummaryError as e:
        raise UsageError(f"summary: {e}") from None


def run(args):
    if bool(args.name) == bool(args.compare):
        raise UsageError("summary: give one model NAME, or --compare NAME [NAME ...]")
    if args.plot and not args.compare:
        raise UsageError("summary: --plot goes with --compare")
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"summary: --depth must be positive, got {args.depth}")
    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(f"summary: --num-classes must be positive, got {args.num_classes}")
    if args.plot:
        _check_plot_target(args.plot)
    size = _parse_input(args.input) if args.input else None
    if args.name:
        s = _summarise(args.name, size, args)
        print(s.to_json() if args.json else s)
        return 0
    from ..summary import compare_rows, compare_table, plot_compare

    summaries = [_summarise(name, size, args) for name in args.compare]
    print(json.dumps(compare_rows(summaries), indent=2) if args.json else compare_table(summaries))
    if args.plot:
        plot_compare(summaries, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _check_plot_target(path):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"summary: cannot write the plot {path!r}: no directory {directory!r}")
    if not path.lower().endswith(".png"):
        raise UsageError(f"summary: --plot writes a PNG; give a FILE.png, got {path!r}")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("summary: --plot needs matplotlib (pip install matplotlib)")


def add_parser(sub):
    p = sub.add_parser(
        "summary", help="per-layer table of a model: params, MACs, memory, receptive field"
    )
    p.add_argument(
        "name",
        nargs="?",
        help="a model name from minicnn.models.list_models() (NAME:VARIANT also works)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME",
        help="side-by-side table of these models (NAME or NAME:VARIANT)",
    )
    p.add_argument(
        "--input",
        metavar="CxHxW",
        help="input size, e.g. 3x224x224 or 224 (default: the model's own)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--num-classes", type=int, help="build the model(s) with this many classes")
    p.add_argument("--variant", help="build the model(s) with this variant (paper, torchvision)")
    p.add_argument(
        "--plot", metavar="FILE.png", help="with --compare: bar charts of params and MACs"
    )
    p.add_argument(
        "--depth",
        type=int,
        metavar="N",
        help="collapse modules nested deeper than N into one row each (as torchinfo)",
    )
    p.set_defaults(func=run)
