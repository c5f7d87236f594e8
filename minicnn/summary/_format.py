"""Text tables for one summary and for a side-by-side comparison, and the comparison plot."""

from __future__ import annotations

from ._rules import op_label

__all__ = ["compare_rows", "compare_table", "format_table", "human", "human_bytes", "plot_compare"]


def human(n, unit=""):
    """1234567 -> '1.23M' (K, M, G, T: powers of 1000)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{prefix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n):
    """Bytes in KiB/MiB/GiB (powers of 1024)."""
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {prefix}"
    return f"{n} B"


def _pair(values):
    """(h, w) -> 'h' when equal, 'hxw' otherwise; None -> '-'."""
    if values is None or values[0] is None:
        return "-"
    h, w = (f"{round(v, 2):g}" if isinstance(v, float) else str(v) for v in values)
    return h if h == w else f"{h}x{w}"


def _shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


_COLUMNS = [
    ("Layer", "<"),
    ("Type", "<"),
    ("Output shape", "<"),
    ("Params", ">"),
    ("MACs", ">"),
    ("Memory", ">"),
    ("RF", ">"),
    ("Jump", ">"),
    ("Start", ">"),
]


def _cells(row):
    return [
        row.name,
        op_label(row.type) + "()" if row.kind == "op" else row.type,
        _shape(row.output_shape),
        f"{row.params:,}",
        human(row.macs),
        human_bytes(row.memory_bytes),
        _pair(row.rf),
        _pair(row.jump),
        _pair(row.start),
    ]


def _grid(header, lines, aligns):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]

    def fmt(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths)).rstrip()

    rule = "-" * len(fmt(header))
    return [fmt(header), rule] + [fmt(c) for c in lines] + [rule]


def format_table(s):
    """The per-layer table with the totals below it (``str(summary)``)."""
    header = [c for c, _ in _COLUMNS]
    out = [f"{s.model}: input {_shape(s.input_shape)} {s.dtype}, evaluation mode"]
    out += _grid(header, [_cells(r) for r in s.rows], [a for _, a in _COLUMNS])
    frozen = f", non-trainable {s.params_non_trainable:,}" if s.params_non_trainable else ""
    unused = f"; {s.params_unused:,} not used by this forward pass" if s.params_unused else ""
    out.append(
        f"Params: {s.params:,} (trainable {s.params_trainable:,}{frozen}){unused}; "
        f"buffers {s.buffers:,} (BN running statistics; not params)"
    )
    out.append(
        f"MACs: {human(s.macs)} over all ops; {human(s.macs_conv_linear)} in conv and "
        f'linear layers (torchvision\'s "GFLOPS" count these)'
    )
    out.append(
        f"FLOPs: forward ~{human(s.flops_forward)} (2 x MACs), backward ~"
        f"{human(s.flops_backward)} (2 x forward)"
    )
    out.append(
        f"Memory: activations {human_bytes(s.activation_bytes)} (all layer outputs at batch "
        f"{s.input_shape[0]}), parameters and buffers {human_bytes(s.state_bytes)}"
    )
    out.append(
        f"Depth: {s.depth} weight layers on the longest path ({s.weight_layers} conv/linear "
        f"layers run)"
    )
    big = s.largest_layer
    if big is not None:
        out.append(
            f"Largest layer: {big['name']} ({big['type']}), {big['params']:,} params "
            f"({100 * big['fraction']:.1f}% of the params used)"
        )
    if s.output_rf is not None:
        out.append(f"Output receptive field: {_pair(s.output_rf)} input pixels")
    return "\n".join(out)


def compare_rows(summaries):
    """One dict per model: what the comparison table and its JSON show."""
    rows = []
    for s in summaries:
        big = s.largest_layer or {"name": "-", "type": "-", "params": 0, "fraction": 0.0}
        rows.append(
            {
                "model": s.model,
                "input_shape": list(s.input_shape),
                "params": s.params,
                "params_used": s.params - s.params_unused,
                "macs": s.macs,
                "macs_conv_linear": s.macs_conv_linear,
                "depth": s.depth,
                "feature_rf": list(s.feature_rf) if s.feature_rf else None,
                "largest_layer": big,
            }
        )
    return rows


def compare_table(summaries):
    """Side by side: params, MACs, depth and largest layer of each model."""
    header = [
        "Model",
        "Input",
        "Params",
        "MACs (all ops)",
        "MACs (conv+linear)",
        "Depth",
        "RF",
        "Largest layer",
        "Its params",
    ]
    lines, notes = [], []
    for r in compare_rows(summaries):
        big = r["largest_layer"]
        if r["params_used"] != r["params"]:
            notes.append(
                f"{r['model']}: {human(r['params'])} params in all; "
                f"{human(r['params'] - r['params_used'])} of them (training-only heads) "
                f"do not run in evaluation and are not in the table"
            )
        lines.append(
            [
                r["model"],
                "x".join(map(str, r["input_shape"][1:])),
                human(r["params_used"]),
                human(r["macs"]),
                human(r["macs_conv_linear"]),
                str(r["depth"]),
                _pair(r["feature_rf"]),
                f"{big['name']} ({big['type']})",
                f"{human(big['params'])} ({100 * big['fraction']:.0f}%)",
            ]
        )
    aligns = ["<", "<", ">", ">", ">", ">", ">", "<", ">"]
    note = (
        "Depth counts conv/linear layers on the longest path; RF is the receptive field (input "
        "pixels) of one position of the last feature map larger than 1x1; MACs are "
        "multiply-accumulates (FLOPs ~ 2 x MACs)."
    )
    return "\n".join(_grid(header, lines, aligns) + notes + [note])


def plot_compare(summaries, path):
    """Bar charts of params (millions) and GMACs by model, written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = [f"{s.model}\ndepth {s.depth}" for s in summaries]
    fig = Figure(figsize=(max(6.0, 2.0 * len(labels) + 2), 4.2), layout="constrained")
    ax_p, ax_m = fig.subplots(1, 2)
    bars = [
        (
            ax_p,
            [(s.params - s.params_unused) / 1e6 for s in summaries],
            "parameters used in evaluation (millions)",
            "tab:blue",
        ),
        (
            ax_m,
            [s.macs / 1e9 for s in summaries],
            "multiply-accumulates (G, all ops)",
            "tab:orange",
        ),
    ]
    for ax, values, title, color in bars:
        rects = ax.bar(range(len(values)), values, color=color)
        ax.bar_label(rects, labels=[f"{v:.3g}" for v in values], fontsize=8)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        ax.set_title(title)
        ax.margins(y=0.12)
    fig.suptitle("Parameters, compute and depth (conv/linear layers on the longest path)")
    from ..viz import _save  # lazy: viz imports nn

    _save(fig, path)
