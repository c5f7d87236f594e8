"""``minicnn gradcheck [--op OP] [--device cpu|emu|cuda] [--dtype float64|float32]``: every op's
backward against float64 central differences, with the ops run on the chosen device (our CUDA
kernels on ``emu`` and ``cuda``); ``--dtype float32`` also compares the float32 backward there
with the float64 one. Exit code 1 when a case fails, 2 on a usage error."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def _check_args(args):
    from .. import gradcheck_suite
    from ..backends import is_available
    from . import UsageError

    known = {c.op for c in gradcheck_suite.cases()}
    unknown = sorted(set(args.op or ()) - known)
    if unknown:
        raise UsageError(
            f"gradcheck: unknown op(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
        )
    if not is_available(args.device):
        raise UsageError(
            f"gradcheck: --device {args.device} is not available here (cuda needs "
            f"an NVIDIA GPU, CuPy and the _C_cuda extension)"
        )
    for name in ("tol", "tol32"):
        value = getattr(args, name)
        if not value > 0:
            raise UsageError(f"gradcheck: --{name} must be positive, got {value}")


def run(args):
    from .. import gradcheck_suite

    _check_args(args)
    f32 = args.dtype == "float32"
    last = "float32 vs 64" if f32 else "worst rel. error"
    header = f"{'op':<22}{'case':<30}{'inputs':>7}{last:>18}{'time':>8}  result"
    print(f"device {args.device}, {args.dtype}")
    print(header)
    print("-" * len(header))
    failed = total = 0
    for case in gradcheck_suite.cases():
        if args.op and case.op not in args.op:
            continue
        result, seconds = gradcheck_suite.check(
            case, tol=args.tol, device=args.device, dtype=args.dtype, tol32=args.tol32
        )
        total += 1
        failed += not result.passed
        error = result.float32_error if f32 else result.worst_error
        print(
            f"{case.op:<22}{case.case:<30}{len(result.inputs):>7}{error:>18.2e}"
            f"{seconds:>7.2f}s  {'pass' if result.passed else 'FAIL'}",
            flush=True,
        )
    print("-" * len(header))
    how = f"float64 central differences, tolerance {args.tol:.0e}"
    if f32:
        how += f"; float32 gradients within {args.tol32:.0e} of float64"
    print(f"{total - failed} passed, {failed} failed ({how})")
    return 1 if failed else 0


def add_parser(sub):
    p = sub.add_parser(
        "gradcheck",
        help="finite-difference check of every op's backward",
        description="Check every op's backward against float64 central "
        "differences, with the ops run on --device.",
    )
    p.add_argument("--op", action="append", help="check only this op (repeatable)")
    p.add_argument(
        "--device",
        choices=("cpu", "emu", "cuda"),
        default="cpu",
        help="where the ops run: cpu (NumPy), emu (our CUDA kernels, emulated), cuda",
    )
    p.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="float32: also compare the float32 backward with the float64 one",
    )
    p.add_argument(
        "--tol",
        type=float,
        default=1e-5,
        help="largest relative error against finite differences that passes",
    )
    p.add_argument(
        "--tol32",
        type=float,
        default=1e-4,
        help="largest float32-vs-float64 gradient error that passes (relative to "
        "the largest gradient)",
    )
    p.set_defaults(func=run)
