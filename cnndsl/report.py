"""Figures of an elaborated network: the per-layer table, totals and JSON.

Counting conventions (printed in the report header):
- figures are per sample (batch 1);
- MACs count only weight multiply-accumulates of conv, deconv, fc and rbf
  (biases, normalisation, activations, pooling and adds excluded: the
  torchvision ``_ops`` convention); FLOPs = 2 × MACs (the Darknet convention);
  transpose convolutions are counted over input positions, grouped
  convolutions divide by the groups;
- params = trainable + non-trainable (Keras); BN running statistics and fixed
  RBF centres are the non-trainable ones;
- connections in LeNet's sense: Σ over output units of fan-in plus bias, for
  conv, deconv, fc, subsample and rbf;
- peak activation memory: the largest total size of the tensors alive at once
  when the layers run in order (input included, pooling indices excluded).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .errors import Diagnostic
from .ir import Graph
from .layers.arith import fmt_shape, prod

DTYPE_BYTES = {"float32": 4, "float16": 2, "float64": 8}

CONVENTION = (
    "Per sample (batch 1). MACs: weight multiply-accumulates of conv, deconv, fc\n"
    "and rbf (torchvision convention); FLOPs = 2 x MACs (Darknet). Params =\n"
    "trainable + non-trainable (BN running statistics, fixed RBF centres).\n"
    "RF: receptive field on the main path, in input pixels."
)


@dataclass(frozen=True)
class Layer:
    """One row of the layer table."""

    name: str
    kind: str
    line: int
    output: tuple
    params: int
    trainable_params: int
    macs: int
    connections: int
    receptive_field: tuple
    jump: tuple
    activation: int  # elements of the output


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int
    flops: int
    connections: int
    param_bytes: int
    activation_bytes: int


def _num(v):
    if isinstance(v, Fraction):
        return int(v) if v.denominator == 1 else float(v)
    return v


class Model:
    """What :func:`cnndsl.load` returns: the IR plus the layer table and totals."""

    def __init__(self, graph: Graph, dtype: str = "float32"):
        self.graph = graph
        self.dtype = dtype
        self.layers = [
            Layer(
                n.name,
                n.kind,
                n.span.line if n.span else 0,
                n.shape,
                n.params,
                n.trainable,
                n.macs,
                n.connections,
                tuple(_num(r) for r in n.rf),
                tuple(_num(j) for j in n.jump),
                prod(n.shape),
            )
            for n in graph.nodes[1:]
        ]
        size = DTYPE_BYTES[dtype]
        trainable = sum(n.trainable for n in graph.nodes)
        fixed = sum(n.fixed for n in graph.nodes)
        macs = sum(n.macs for n in graph.nodes)
        self.totals = Totals(
            trainable + fixed,
            trainable,
            fixed,
            macs,
            2 * macs,
            sum(n.connections for n in graph.nodes),
            (trainable + fixed) * size,
            peak_activation_elements(graph) * size,
        )

    @property
    def name(self) -> str:
        return self.graph.network

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return self.graph.warnings

    @property
    def outputs(self) -> list[tuple[str, tuple]]:
        return [(name, self.graph.nodes[i].shape) for name, i in self.graph.outputs]

    def layer(self, name: str) -> Layer:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_json(self) -> dict:
        g = self.graph
        return {
            "network": g.network,
            "file": g.file,
            "input": list(g.input_shape),
            "defines": {k: _jsonable(v) for k, v in g.defines.items()},
            "outputs": [{"name": n, "shape": list(s)} for n, s in self.outputs],
            "layers": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "line": r.line,
                    "output": list(r.output),
                    "params": r.params,
                    "trainable_params": r.trainable_params,
                    "macs": r.macs,
                    "connections": r.connections,
                    "receptive_field": list(r.receptive_field),
                    "jump": list(r.jump),
                    "activation": r.activation,
                }
                for r in self.layers
            ],
            "totals": dict(self.totals.__dict__),
            "conventions": CONVENTION.replace("\n", " "),
            "warnings": [
                {"line": w.span.line if w.span else None, "column": w.span.column if w.span else None, "message": w.message}
                for w in g.warnings
            ],
        }


def _jsonable(v):
    if isinstance(v, (int, float, bool, str)) or v is None:
        return v
    if isinstance(v, tuple):
        return list(v)
    return str(getattr(v, "name", v))


def peak_activation_elements(graph: Graph) -> int:
    """Largest number of activation elements alive at once, running in node order."""
    nodes = graph.nodes
    end = len(nodes)
    last_use = list(range(end))
    for node in nodes:
        for j in node.inputs:
            if node.id > last_use[j]:
                last_use[j] = node.id
    for _, o in graph.outputs:
        last_use[o] = end
    frees: dict[int, list[int]] = {}
    for i, last in enumerate(last_use):
        frees.setdefault(last, []).append(i)
    live = peak = 0
    sizes = [prod(n.shape) for n in nodes]
    for node in nodes:
        live += sizes[node.id]
        if live > peak:
            peak = live
        for j in frees.get(node.id, ()):
            live -= sizes[j]
    return peak


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
