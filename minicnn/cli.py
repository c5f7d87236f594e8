"""The ``minicnn`` command line (also ``python -m minicnn``)."""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import sys


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _cmd_gradcheck(args):
    from . import gradcheck_suite

    known = {c.op for c in gradcheck_suite.cases()}
    unknown = sorted(set(args.op or ()) - known)
    if unknown:
        raise UsageError(f"gradcheck: unknown op(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    header = f"{'op':<22}{'case':<30}{'inputs':>7}{'worst rel. error':>18}{'time':>8}  result"
    print(header)
    print("-" * len(header))
    failed = total = 0
    for case in gradcheck_suite.cases():
        if args.op and case.op not in args.op:
            continue
        result, seconds = gradcheck_suite.check(case, tol=args.tol)
        total += 1
        failed += not result.passed
        print(f"{case.op:<22}{case.case:<30}{len(result.inputs):>7}{result.worst_error:>18.2e}"
              f"{seconds:>7.2f}s  {'pass' if result.passed else 'FAIL'}", flush=True)
    print("-" * len(header))
    print(f"{total - failed} passed, {failed} failed (float64 central differences, tolerance {args.tol:.0e})")
    return 1 if failed else 0


def _parse_input(text):
    """'3x224x224' (or '224', meaning 3x224x224) -> (3, 224, 224)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise UsageError(f"summary: --input must look like 3x224x224 (positive integers joined by "
                         f"'x'), got {text!r}")
    return (3, dims[0], dims[0]) if len(dims) == 1 else dims


def _build_model(name, args):
    """The model NAME or NAME:VARIANT, built without drawing random weights."""
    from . import models
    from .summary import skip_init

    name, _, variant = name.partition(":")
    if name.lower() not in models.list_models():
        close = difflib.get_close_matches(name.lower(), models.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"summary: unknown model {name!r}{hint}; choose from "
                         f"{', '.join(models.list_models())}")
    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if variant or args.variant is not None:
        kwargs["variant"] = variant or args.variant
    try:
        with skip_init():  # a summary needs shapes, not values: skip drawing random weights
            return models.get_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise UsageError(f"summary: cannot build {name} with {kwargs}: {e}") from None


def _summarise(name, size, args):
    from .summary import SummaryError, summary

    model = _build_model(name, args)
    try:
        return summary(model, size, name=name)
    except SummaryError as e:
        raise UsageError(f"summary: {e}") from None


def _cmd_summary(args):
    if bool(args.name) == bool(args.compare):
        raise UsageError("summary: give one model NAME, or --compare NAME [NAME ...]")
    if args.plot and not args.compare:
        raise UsageError("summary: --plot goes with --compare")
    if args.num_classes is not None and args.num_classes < 1:
        raise UsageError(f"summary: --num-classes must be positive, got {args.num_classes}")
    if args.plot:
        _check_plot_target(args.plot)
    size = _parse_input(args.input) if args.input else None
    if args.name:
        s = _summarise(args.name, size, args)
        print(s.to_json() if args.json else s)
        return 0
    from .summary import compare_rows, compare_table, plot_compare

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


def _cmd_convert_weights(args):
    if not os.path.isfile(args.src):
        raise UsageError(f"convert-weights: no such file {args.src!r}")
    directory = os.path.dirname(os.path.abspath(args.dst))
    if not os.path.isdir(directory):
        raise UsageError(f"convert-weights: cannot write {args.dst!r}: no directory {directory!r}")
    if args.model is not None:
        from .models import list_models

        if args.model.lower() not in list_models():
            raise UsageError(f"convert-weights: unknown model {args.model!r}; choose from "
                             f"{', '.join(list_models())}")
    from .models.convert import main_convert

    return main_convert(args.src, args.dst, model=args.model, compress=args.compress)


def build_parser():
    parser = argparse.ArgumentParser(prog="minicnn", description="minicnn: a from-scratch CNN engine")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gradcheck", help="finite-difference check of every op's backward (float64)")
    p.add_argument("--op", action="append", help="check only this op (repeatable)")
    p.add_argument("--tol", type=float, default=1e-5, help="largest relative error that passes")
    p.set_defaults(func=_cmd_gradcheck)
    p = sub.add_parser("summary",
                       help="per-layer table of a model: params, MACs, memory, receptive field")
    p.add_argument("name", nargs="?",
                   help="a model name from minicnn.models.list_models() (NAME:VARIANT also works)")
    p.add_argument("--compare", nargs="+", metavar="NAME",
                   help="side-by-side table of these models (NAME or NAME:VARIANT)")
    p.add_argument("--input", metavar="CxHxW",
                   help="input size, e.g. 3x224x224 or 224 (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--num-classes", type=int, help="build the model(s) with this many classes")
    p.add_argument("--variant", help="build the model(s) with this variant (paper, torchvision)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="with --compare: bar charts of params and MACs")
    p.set_defaults(func=_cmd_summary)
    p = sub.add_parser("convert-weights",
                       help="convert a PyTorch state_dict (.pth) to a NumPy .npz")
    p.add_argument("src", help="the .pth file (torch.save of a state_dict; needs PyTorch)")
    p.add_argument("dst", help="the .npz file to write")
    p.add_argument("--model", metavar="NAME",
                   help="also check that the weights load into this model (torchvision form)")
    p.add_argument("--compress", action="store_true", help="write a compressed .npz")
    p.set_defaults(func=_cmd_convert_weights)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"minicnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
