"""The layer table and totals as text (plain; :mod:`cnndsl.tools.richtable` colours it)."""

from __future__ import annotations

from cnndsl.ir.model import CONVENTION, Model
from cnndsl.layers.arith import fmt_shape


# ---------------------------------------------------------------------- text
def _rf(values) -> str:
    vals = [str(v) if not isinstance(v, float) else f"{v:g}" for v in values]
    if not vals:
        return "-"
    return vals[0] if len(set(vals)) == 1 else "x".join(vals)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _si(n: int) -> str:
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


HEADERS = ("layer", "kind", "output", "params", "MACs", "RF")


def table_rows(model: Model) -> list[tuple[str, ...]]:
    return [
        (r.name, r.kind, fmt_shape(r.output), f"{r.params:,}", f"{r.macs:,}", _rf(r.receptive_field))
        for r in model.layers
    ]


def _fit_name(name: str, width: int) -> str:
    """Keep the most specific end of a long hierarchical name (ASCII: piped output)."""
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def header_lines(model: Model) -> list[str]:
    g = model.graph
    return [f"network {g.network} ({g.file}), input {fmt_shape(g.input_shape)}", *CONVENTION.split("\n")]


def totals_lines(model: Model) -> list[tuple[str, str, str]]:
    t = model.totals
    outs = ", ".join(f"{n} {fmt_shape(s)}" for n, s in model.outputs)
    return [
        ("params", f"{t.params:,}", f"{_mib(t.param_bytes)} as {model.dtype}"),
        ("  trainable", f"{t.trainable_params:,}", ""),
        ("  non-trainable", f"{t.non_trainable_params:,}", ""),
        ("MACs", f"{t.macs:,}", _si(t.macs)),
        ("FLOPs", f"{t.flops:,}", _si(t.flops)),
        ("connections", f"{t.connections:,}", ""),
        ("peak activations", f"{t.activation_bytes:,} B", f"{_mib(t.activation_bytes)} per sample"),
        ("outputs", outs, ""),
    ]


def format_plain(model: Model, width: int = 80) -> str:
    rows = table_rows(model)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    rest = sum(widths[1:]) + 2 * (len(HEADERS) - 1)
    widths[0] = max(16, min(widths[0], width - rest))
    right = (False, False, False, True, True, True)

    def line(cells):
        out = []
        for cell, w, r in zip(cells, widths, right):
            out.append(cell.rjust(w) if r else cell.ljust(w))
        return "  ".join(out).rstrip()

    lines = header_lines(model) + [""]
    lines.append(line(HEADERS))
    lines.append(line(tuple("-" * w for w in widths)))
    for r in rows:
        lines.append(line((_fit_name(r[0], widths[0]),) + r[1:]))
    lines.append("")
    tl = totals_lines(model)
    kw = max(len(k) for k, _, _ in tl)
    vw = max(len(v) for k, v, _ in tl if k != "outputs")
    for k, v, note in tl:
        if k == "outputs":
            lines.append(f"{k.ljust(kw)}  {v}")
        else:
            lines.append(f"{k.ljust(kw)}  {v.rjust(vw)}" + (f"  ({note})" if note else ""))
    return "\n".join(lines)
