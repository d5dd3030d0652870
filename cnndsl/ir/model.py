"""Figures of an elaborated network: per-layer rows, totals and JSON (the text table is in
:mod:`cnndsl.tools.table`).

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

from cnndsl.errors import Diagnostic
from cnndsl.ir.graph import Graph
from cnndsl.layers.arith import prod

DTYPE_BYTES = {"float32": 4, "float16": 2, "float64": 8}

CONVENTION = (
    "Per sample (batch 1). MACs: weight multiply-accumulates of conv, deconv, fc\n"
    "and rbf (torchvision convention); FLOPs = 2 x MACs (Darknet). Params =\n"
    "trainable + non-trainable (BN running statistics, fixed RBF centres).\n"
    "RF: receptive field on the main path, in input pixels."
)


@dataclass(frozen=True)
class LayerInfo:
    """One layer's figures (a row of the layer table)."""

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
            LayerInfo(
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

    def __repr__(self) -> str:
        g = self.graph
        outs = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in self.outputs)
        return (
            f"<Model {g.network} ({g.file}): input {'x'.join(map(str, g.input_shape))}, {len(self.layers):,} layers, "
            f"{self.totals.params:,} parameters, {self.totals.macs:,} MACs, output {outs}>"
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

    def layer(self, name: str) -> LayerInfo:
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
                {
                    "line": w.span.line if w.span else None,
                    "column": w.span.column if w.span else None,
                    "message": w.message,
                }
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
