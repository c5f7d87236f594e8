"""``minicnn convert-weights``: a PyTorch state_dict (.pth) to a NumPy .npz
(``minicnn.models.convert``), optionally checked against a model."""

from __future__ import annotations

import os

from . import UsageError

__all__ = ["add_parser", "run"]


def run(args):
    if not os.path.isfile(args.src):
        raise UsageError(f"convert-weights: no such file {args.src!r}")
    directory = os.path.dirname(os.path.abspath(args.dst))
    if not os.path.isdir(directory):
        raise UsageError(f"convert-weights: cannot write {args.dst!r}: no directory {directory!r}")
    if args.model is not None:
        from ..models import list_models

        if args.model.lower() not in list_models():
            raise UsageError(
                f"convert-weights: unknown model {args.model!r}; choose from "
                f"{', '.join(list_models())}"
            )
    from ..models.convert import ConversionError, main_convert

    try:
        return main_convert(args.src, args.dst, model=args.model, compress=args.compress)
    except ConversionError as e:
        raise UsageError(f"convert-weights: {e}") from None


def add_parser(sub):
    p = sub.add_parser(
        "convert-weights", help="convert a PyTorch state_dict (.pth) to a NumPy .npz"
    )
    p.add_argument("src", help="the .pth file (torch.save of a state_dict; needs PyTorch)")
    p.add_argument("dst", help="the .npz file to write")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="also check that the weights load into this model (torchvision form)",
    )
    p.add_argument("--compress", action="store_true", help="write a compressed .npz")
    p.set_defaults(func=run)
