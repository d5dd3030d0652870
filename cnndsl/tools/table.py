"""The layer table and totals as text (plain; :mod:`cnndsl.tools.richtable` colours the same lines).

A figure is never cut. When the table is wider than the terminal, in this order:

1. names are shortened from the left, keeping their most specific end
   (``...bottleneck_1.conv``), down to 16 characters; the ``inputs`` column wraps
   (one name or more a line, down to 12 characters);
2. with the default columns only: ``kind``, then ``RF``, then ``output`` are left out;
3. if it still does not fit (or columns chosen with ``--columns`` do not fit), each
   layer becomes a paragraph of its own: its name, then ``column value`` pairs
   wrapped at the width.

One line under the header says which was done. Lines are ASCII (piped output).
"""

from __future__ import annotations

from collections.abc import Callable

from cnndsl.ir.model import DEPTH_CONVENTION, MEMORY_CONVENTION, LayerInfo, Model, convention
from cnndsl.layers.arith import fmt_shape
from cnndsl.records import record

_WHOLE_WORDS = {"break_long_words": False, "break_on_hyphens": False}


def _wrap(text: str, width: int, **options) -> list[str]:
    """``textwrap.wrap(text, width, **options)``, without importing textwrap (3 ms of start-up) for
    a line that fits, or words between single spaces wrapped whole (the header's paragraphs)."""
    if text.isprintable() and text == text.strip():  # the only whitespace: spaces inside
        if len(text) <= width:
            return [text] if text else []  # what textwrap.wrap gives for a line that fits
        if options == _WHOLE_WORDS and "  " not in text:
            lines, line = [], ""
            for word in text.split(" "):  # textwrap's greedy fill; a word wider than the line alone
                if not line:
                    line = word
                elif len(line) + 1 + len(word) <= width:
                    line += " " + word
                else:
                    lines.append(line)
                    line = word
            return [*lines, line]
    import textwrap  # only for the rest (start-up)

    return textwrap.wrap(text, width, **options)


MIN_WIDTH = {"layer": 16, "inputs": 12}  # the narrowest a shortened name (or wrapped inputs) gets
GAP = 2  # spaces between columns


# ---------------------------------------------------------------------- cells
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


def _flag(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[value]


@record(frozen=True)
class Column:
    header: str
    right: bool  # right-aligned (figures)
    cell: Callable[[LayerInfo, int | None], str]  # (row, batch) -> text


# the columns of `cnndsl info --columns` (docs/info.md describes each)
COLUMNS = {
    "kind": Column("kind", False, lambda r, b: r.kind),
    "line": Column("line", True, lambda r, b: str(r.line)),
    "output": Column("output", False, lambda r, b: fmt_shape(r.output if b is None else (b, *r.output))),
    "params": Column("params", True, lambda r, b: f"{r.params:,}"),
    "trainable": Column("trainable", False, lambda r, b: _flag(r.trainable)),
    "macs": Column("MACs", True, lambda r, b: f"{r.macs:,}"),
    "connections": Column("connections", True, lambda r, b: f"{r.connections:,}"),
    "rf": Column("RF", True, lambda r, b: _rf(r.receptive_field)),
    "inputs": Column("inputs", False, lambda r, b: ", ".join(r.inputs)),
}
DEFAULT_COLUMNS = ("kind", "output", "params", "macs", "rf")
DROP_ORDER = ("kind", "rf", "output")  # left out first to last when the default table is too wide
_SHRINKABLE = tuple(MIN_WIDTH)


# ---------------------------------------------------------------------- fitting
def _shorten(name: str, width: int) -> str:
    """Keep the most specific end of a long hierarchical name."""
    return name if len(name) <= width else "..." + name[-(width - 3) :]


def _wrap_inputs(text: str, width: int) -> list[str]:
    """``a, b, c`` over lines of at most ``width`` characters (``a, b,`` then ``c``), names shortened if need be."""
    names = text.split(", ") if text else [""]
    if len(text) <= width:
        return [text]
    lines: list[str] = []
    for name in (_shorten(n, width - 1) for n in names):
        if lines and len(lines[-1]) + 1 + len(name) + 1 <= width:
            lines[-1] += " " + name + ","
        else:
            lines.append(name + ",")
    lines[-1] = lines[-1][:-1]
    return lines


@record(frozen=True)
class Fit:
    keys: tuple[str, ...]  # "layer" first
    widths: tuple[int, ...]  # empty: the paragraph layout
    note: str  # "" when the full table fits


def fit(keys: tuple[str, ...], cells: list[dict[str, str]], width: int, chosen: bool) -> Fit:
    """Which columns at which widths fit ``width``; ``chosen``: the user named the columns (none is dropped)."""
    left_out: list[str] = []
    keys = ("layer", *keys)
    while True:
        natural = [max([len(_header(k))] + [len(c[k]) for c in cells]) for k in keys]
        widths = list(natural)
        excess = sum(widths) + GAP * (len(widths) - 1) - width
        for k in _SHRINKABLE:
            if excess > 0 and k in keys:
                i = keys.index(k)
                cut = min(excess, max(0, widths[i] - MIN_WIDTH[k]))
                widths[i] -= cut
                excess -= cut
        if excess <= 0:
            break
        drop = next((k for k in DROP_ORDER if k in keys), None) if not chosen else None
        if drop is None or len(keys) <= 3:  # the paragraphs show every column
            return Fit(keys, (), f"{width} columns: too narrow for the table; one layer per paragraph")
        left_out.append(drop)
        keys = tuple(k for k in keys if k != drop)
    parts = []
    if widths[0] < natural[0]:
        parts.append("names shortened from the left")
    if "inputs" in keys and widths[keys.index("inputs")] < natural[keys.index("inputs")]:
        parts.append("inputs wrapped")
    if left_out:
        parts.append(", ".join(COLUMNS[k].header for k in left_out) + " left out (--columns chooses, --json has all)")
    note = f"fit to {width} columns: " + "; ".join(parts) if parts else ""
    return Fit(keys, tuple(widths), note)


def _header(key: str) -> str:
    return "layer" if key == "layer" else COLUMNS[key].header


# ---------------------------------------------------------------------- the text
Segment = tuple[str, str]  # (text, style): "" plain, "title", "dim", "note", "head", "key"
Line = list[Segment]


def _wrapped(text: str, width: int, style: str) -> list[Line]:
    return [[(ln, style)] for ln in _wrap(text, width, break_long_words=False, break_on_hyphens=False)]


def header_lines(model: Model, width: int = 80, depth: int | None = None, batch: int | None = None) -> list[Line]:
    g = model.graph
    lines = _wrapped(f"network {g.network} ({g.file}), input {fmt_shape(g.input_shape)}", width, "title")
    text = convention(batch)
    mem = MEMORY_CONVENTION.format(dtype=model.dtype, batch=batch or 1)
    for para in (text, mem) + ((DEPTH_CONVENTION.format(depth=depth),) if depth is not None else ()):
        lines += _wrapped(para.replace("\n", " "), min(width, 80), "dim")
    return lines


def totals_lines(model: Model, width: int = 80, batch: int | None = None) -> list[Line]:
    t = model.totals
    mem = model.memory(batch or 1)
    per = "per sample" if batch is None else f"for batch {batch}"
    outs = ", ".join(f"{n} {fmt_shape(s)}" for n, s in model.outputs)
    rows = [
        ("params", f"{t.params:,}", f"{_mib(t.param_bytes)} as {model.dtype}"),
        ("  trainable", f"{t.trainable_params:,}", ""),
        ("  non-trainable", f"{t.non_trainable_params:,}", ""),
        ("MACs", f"{t.macs:,}", _si(t.macs)),
        ("FLOPs", f"{t.flops:,}", _si(t.flops)),
        ("connections", f"{t.connections:,}", ""),
        ("peak activations", f"{mem.peak_inference:,} B", f"{_mib(mem.peak_inference)} {per}"),
        ("training memory", f"{mem.total:,} B", f"{_mib(mem.total)} {per}"),
        ("  activations", f"{mem.activations:,} B", ""),
        ("  params", f"{mem.params:,} B", ""),
        ("  gradients", f"{mem.gradients:,} B", ""),
        ("  SGD momentum", f"{mem.momentum:,} B", ""),
    ]
    kw = max(len(k) for k, _, _ in rows)
    vw = max(len(v) for _, v, _ in rows)
    lines: list[Line] = []
    for k, v, note in rows:
        line = [(k.ljust(kw), "key"), ("  " + v.rjust(vw), "")]
        if note and kw + 2 + vw + 4 + len(note) <= width:
            line.append((f"  ({note})", "dim"))
        lines.append(line)
        if note and kw + 2 + vw + 4 + len(note) > width:
            indent = max(2, min(kw + 2, width - len(note) - 2))  # under the value, or as far right as fits
            lines.append([(" " * indent + f"({note})", "dim")])
    pad = " " * (kw + 2)
    wrapped = _wrap(outs, max(width - kw - 2, 20), break_long_words=False, break_on_hyphens=False) or [""]
    lines.append([("outputs".ljust(kw), "key"), ("  " + wrapped[0], "")])
    lines += [[(pad + ln, "")] for ln in wrapped[1:]]
    return lines


def table_lines(
    model: Model,
    width: int = 80,
    depth: int | None = None,
    batch: int | None = None,
    columns: tuple[str, ...] | None = None,
) -> list[Line]:
    """The whole report as styled lines: header, table (fit to ``width``), totals."""
    keys = tuple(columns) if columns is not None else DEFAULT_COLUMNS
    unknown = [k for k in keys if k not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; choose from {', '.join(COLUMNS)}")
    width = max(width, 20)  # narrower still: the lines of a 20-column layout, whole
    rows = model.rows(depth)
    cells = [{"layer": r.name, **{k: COLUMNS[k].cell(r, batch) for k in keys}} for r in rows]
    f = fit(keys, cells, width, columns is not None)
    lines = header_lines(model, width, depth, batch)
    if f.note:
        lines += _wrapped(f.note, width, "note")
    lines.append([])
    lines += _grid(f, cells) if f.widths else _paragraphs(keys, cells, width)
    lines.append([])
    return lines + totals_lines(model, width, batch)


def _grid(f: Fit, cells: list[dict[str, str]]) -> list[Line]:
    right = [k != "layer" and COLUMNS[k].right for k in f.keys]

    def line(texts) -> str:
        out = [t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, f.widths, right)]
        return (" " * GAP).join(out).rstrip()

    lines: list[Line] = [
        [(line([_header(k) for k in f.keys]), "head")],
        [(line(["-" * w for w in f.widths]), "")],
    ]
    wrapped = "inputs" in f.keys  # the one column whose cells may take several lines
    for c in cells:
        if not wrapped:  # one line a layer
            lines.append([(line([_shorten(c[k], w) if k == "layer" else c[k] for k, w in zip(f.keys, f.widths)]), "")])
            continue
        stacks = []
        for k, w in zip(f.keys, f.widths):
            if k == "inputs":
                stacks.append(_wrap_inputs(c[k], w))
            elif k == "layer":
                stacks.append([_shorten(c[k], w)])
            else:
                stacks.append([c[k]])
        for i in range(max(len(s) for s in stacks)):
            lines.append([(line([s[i] if i < len(s) else "" for s in stacks]), "")])
    return lines


def _paragraphs(keys: tuple[str, ...], cells: list[dict[str, str]], width: int) -> list[Line]:
    """Each layer: its name, then ``column value`` pairs wrapped at ``width`` (never inside a pair's value)."""
    lines: list[Line] = []
    glue = "\x00"  # keeps a header with its value while wrapping
    for c in cells:
        lines.append([(c["layer"], "key")])
        pairs = [f"{COLUMNS[k].header}{glue}{c[k] if k == 'inputs' else c[k].replace(' ', glue)}" for k in keys]
        text = "  ".join(pairs)
        for ln in _wrap(
            text, width, initial_indent="  ", subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
        ):
            lines.append([(ln.replace(glue, " "), "")])
    return lines


def format_plain(
    model: Model,
    width: int = 80,
    depth: int | None = None,
    batch: int | None = None,
    columns: tuple[str, ...] | None = None,
) -> str:
    """The report as plain text (what ``cnndsl info`` prints when piped: width 80)."""
    return "\n".join("".join(t for t, _ in line) for line in table_lines(model, width, depth, batch, columns))
