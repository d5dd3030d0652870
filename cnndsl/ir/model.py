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
  when the layers run in order (input included, pooling indices excluded);
- training memory (:meth:`Model.memory`): every layer's output kept for the
  backward pass (the input included) for the batch, plus the parameters, one
  gradient and one SGD momentum buffer per trainable parameter, at the model's
  dtype; activation gradients, workspace and the runtime's own memory are not
  counted;
- a collapsed block instance (:meth:`Model.rows` with ``depth``): params, MACs
  and connections summed over its layers; output, receptive field and jump of
  its last layer; its inputs are the rows outside it that its layers read.
"""

from __future__ import annotations

import sys

from cnndsl.errors import Diagnostic
from cnndsl.ir.graph import Graph
from cnndsl.layers.arith import prod
from cnndsl.records import record

DTYPE_BYTES = {"float32": 4, "float16": 2, "float64": 8}

CONVENTION = (
    "Per sample (batch 1). MACs: weight multiply-accumulates of conv, deconv, fc\n"
    "and rbf (torchvision convention); FLOPs = 2 x MACs (Darknet). Params =\n"
    "trainable + non-trainable (BN running statistics, fixed RBF centres).\n"
    "RF: receptive field on the main path, in input pixels."
)


def convention(batch: int | None = None) -> str:
    """The counting convention; with ``batch``, shapes and memory are for that batch."""
    if batch is None:
        return CONVENTION
    return CONVENTION.replace(
        "Per sample (batch 1).", f"Shapes and memory for batch {batch}, other figures per sample."
    )


MEMORY_CONVENTION = (
    "Training memory: every layer output kept for backward (input included), the\n"
    "params, their gradients and SGD momentum, {dtype}, batch {batch}; activation\n"
    "gradients and workspace not counted."
)

DEPTH_CONVENTION = (
    "Below depth {depth} each block instance is one row: kind = the block; params,\n"
    "MACs summed over its layers; output and RF of its last layer."
)


@record(frozen=True)
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
    inputs: tuple[str, ...] = ()  # the rows this one reads ("input": the network input)
    layers: int = 1  # IR layers in this row (more than 1: a collapsed block instance)
    block: bool = False  # a collapsed block instance (``kind`` is the block's name)

    @property
    def trainable(self) -> bool | None:
        """Has trainable parameters (True), only fixed ones (False), or none at all (None)."""
        if self.trainable_params:
            return True
        return False if self.params else None


@record(frozen=True)
class Memory:
    """Training-step memory estimate in bytes (the convention in :data:`MEMORY_CONVENTION`)."""

    batch: int
    dtype: str
    activations: int  # every layer output kept for backward, the input included, for the batch
    params: int
    gradients: int
    momentum: int
    peak_inference: int  # peak activations of a forward pass, for the batch

    @property
    def total(self) -> int:
        return self.activations + self.params + self.gradients + self.momentum


@record(frozen=True)
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
    if type(v) is int:
        return v
    fractions = sys.modules.get("fractions")  # a Fraction is made only after importing it (layers.base.fraction)
    if fractions is not None and type(v) is fractions.Fraction:  # not isinstance: the ABC check is slow
        return int(v) if v.denominator == 1 else float(v)
    return v


def _nums(values) -> tuple:
    """``tuple(map(_num, values))``; the tuple itself when it holds only ints (the common case)."""
    if type(values) is tuple:
        for v in values:
            if type(v) is not int:
                return tuple(map(_num, values))
        return values
    return tuple(map(_num, values))


class Model:
    """What :func:`cnndsl.load` returns: the IR plus the layer table and totals."""

    def __init__(self, graph: Graph, dtype: str = "float32"):
        self.graph = graph
        self.dtype = dtype
        names = [n.name for n in graph.nodes]
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
                _nums(n.rf),
                _nums(n.jump),
                prod(n.shape),
                tuple([names[i] for i in n.inputs]),
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

    def rows(self, depth: int | None = None) -> list[LayerInfo]:
        """The layer table's rows; ``depth``: block instances nested deeper than ``depth`` calls
        become one row each (the rule of ``cnndsl graph --depth``), their figures summed.

            >>> m = load("block b() { conv 4/3 -> relu }\\nnetwork n { input 1x8x8\\n b() -> fc 2 }")
            >>> [(r.name, r.kind, r.params, r.layers) for r in m.rows(depth=0)]
            [('b', 'b', 40, 2), ('fc', 'fc', 290, 1)]
        """
        if depth is None:
            return list(self.layers)
        nodes = self.graph.nodes
        owner = ["input"]  # the row name of each IR node
        groups: dict[str, list] = {}
        for n in nodes[1:]:
            key = n.scopes[depth] if len(n.scopes) > depth else n.name
            owner.append(key)
            groups.setdefault(key, []).append(n)
        by_name = {r.name: r for r in self.layers}
        rows = []
        for key, group in groups.items():
            if len(group) == 1 and len(group[0].scopes) <= depth:
                row = by_name[key]
                rows.append(LayerInfo(**{**row.__dict__, "inputs": tuple(owner[i] for i in group[0].inputs)}))
                continue
            last = by_name[group[-1].name]
            block, span = group[0].calls[depth]
            inside = {n.id for n in group}
            feeds = dict.fromkeys(owner[i] for n in group for i in n.inputs if i not in inside)
            rows.append(
                LayerInfo(
                    key,
                    block,
                    span.line if span else 0,
                    last.output,
                    sum(n.params for n in group),
                    sum(n.trainable for n in group),
                    sum(n.macs for n in group),
                    sum(n.connections for n in group),
                    last.receptive_field,
                    last.jump,
                    last.activation,
                    tuple(feeds),
                    len(group),
                    True,
                )
            )
        return rows

    def memory(self, batch: int = 1) -> Memory:
        """The training-step memory estimate for ``batch`` samples (:data:`MEMORY_CONVENTION`)."""
        size = DTYPE_BYTES[self.dtype]
        kept = sum(prod(n.shape) for n in self.graph.nodes)
        t = self.totals
        return Memory(
            batch,
            self.dtype,
            kept * batch * size,
            t.param_bytes,
            t.trainable_params * size,
            t.trainable_params * size,
            t.activation_bytes * batch,
        )

    def to_json(self, depth: int | None = None, batch: int = 1, columns=None) -> dict:
        """The figures as JSON; ``depth`` as :meth:`rows`, ``batch`` for the memory figures,
        ``columns`` (names of :data:`JSON_KEYS`) keeps only those keys of each row."""
        g = self.graph
        unknown = [c for c in columns or () if c not in JSON_KEYS]
        if unknown:
            raise ValueError(f"unknown column {unknown[0]!r}; choose from {', '.join(JSON_KEYS)}")
        keys = None if columns is None else ["name"] + [k for c in columns for k in JSON_KEYS[c]]
        layers = []
        for r in self.rows(depth):
            row = {
                "name": r.name,
                "kind": r.kind,
                "line": r.line,
                "output": list(r.output),
                "params": r.params,
                "trainable_params": r.trainable_params,
                "trainable": r.trainable,
                "macs": r.macs,
                "connections": r.connections,
                "receptive_field": list(r.receptive_field),
                "jump": list(r.jump),
                "activation": r.activation,
                "inputs": list(r.inputs),
                "layers": r.layers,
                "block": r.block,
            }
            layers.append(row if keys is None else {k: row[k] for k in dict.fromkeys(keys)})
        mem = self.memory(batch)
        return {
            "network": g.network,
            "file": g.file,
            "input": list(g.input_shape),
            "batch": batch,
            "depth": depth,
            "defines": {k: _jsonable(v) for k, v in g.defines.items()},
            "outputs": [{"name": n, "shape": list(s)} for n, s in self.outputs],
            "layers": layers,
            "totals": dict(self.totals.__dict__),
            "memory": {
                "batch": batch,
                "dtype": mem.dtype,
                "activations_kept_bytes": mem.activations,
                "param_bytes": mem.params,
                "gradient_bytes": mem.gradients,
                "momentum_bytes": mem.momentum,
                "training_bytes": mem.total,
                "peak_inference_bytes": mem.peak_inference,
                "convention": MEMORY_CONVENTION.format(dtype=mem.dtype, batch=batch).replace("\n", " "),
            },
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


# the JSON keys of a row that each table column (``cnndsl info --columns``) stands for
JSON_KEYS = {
    "kind": ("kind", "layers", "block"),
    "line": ("line",),
    "output": ("output",),
    "params": ("params", "trainable_params"),
    "trainable": ("trainable",),
    "macs": ("macs",),
    "connections": ("connections",),
    "rf": ("receptive_field", "jump"),
    "inputs": ("inputs",),
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
