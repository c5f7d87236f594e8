"""The ``minicnn`` command line (also ``python -m minicnn``)."""
from __future__ import annotations

import argparse
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


def build_parser():
    parser = argparse.ArgumentParser(prog="minicnn", description="minicnn: a from-scratch CNN engine")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("gradcheck", help="finite-difference check of every op's backward (float64)")
    p.add_argument("--op", action="append", help="check only this op (repeatable)")
    p.add_argument("--tol", type=float, default=1e-5, help="largest relative error that passes")
    p.set_defaults(func=_cmd_gradcheck)
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
