"""``minicnn models``: every registered builder and variant with its parameters, MACs at its
default input size and its minimum input size, computed by building each model (without drawing
random weights) and running it once (``minicnn.models.model_table``)."""

from __future__ import annotations

import json

__all__ = ["add_parser", "format_model_table", "run"]


def format_model_table(rows):
    """The text table of ``model_table`` rows."""
    from ..summary._format import human

    header = ["Model", "Variant", "Family", "Params", "MACs", "Input", "Min input"]
    lines = [
        [
            r["name"],
            r["variant"] or "-",
            r["family"],
            f"{r['params']:,}",
            human(r["macs"]),
            "x".join(map(str, r["default_input_size"])),
            f"{r['min_input_size']}x{r['min_input_size']}",
        ]
        for r in rows
    ]
    aligns = ["<", "<", "<", ">", ">", ">", ">"]
    widths = [max(len(c) for c in col) for col in zip(header, *lines)]

    def fmt(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths)).rstrip()

    rule = "-" * len(fmt(header))
    note = (
        "MACs: multiply-accumulates of one image at the default input size, all ops; min "
        "input: the smallest H = W the forward pass accepts. Build one with "
        "minicnn.models.get_model(NAME, variant=...) or `minicnn summary NAME:VARIANT`."
    )
    return "\n".join([fmt(header), rule] + [fmt(c) for c in lines] + [rule, note])


def run(args):
    from . import UsageError
    from ..models import list_models, model_family, model_table

    families = sorted({model_family(n) for n in list_models()})
    if args.family is not None and args.family not in families:
        raise UsageError(
            f"models: unknown --family {args.family!r}; choose from {', '.join(families)}"
        )
    rows = model_table(list_models(args.family))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_model_table(rows))
    return 0


def add_parser(sub):
    p = sub.add_parser(
        "models",
        help="every model builder and variant: params, MACs, input sizes",
        description="List every model of minicnn.models with each variant, its "
        "parameter count, MACs at its default input size and its "
        "minimum input size (all computed: about 10 s).",
    )
    p.add_argument("--family", help="only this family (alexnet, vgg, googlenet, resnet, densenet)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=run)
