"""``cnndsl graph``: a diagram of a network, from the IR (shapes are not re-derived).

Every IR node becomes a box labelled with its name, its kind and fields
(``conv 64/7/2/3``: K/F/S/P) and its output shape; every input of a node becomes
an edge, so residual shortcuts, concat and add branches and ``@label``
references all show; each network output gets a box of its own. With
``depth=N`` the block instances nested deeper than N calls are drawn as one box
each (the block call as written, its output shape, its total parameters).

    >>> from cnndsl import load
    >>> d = diagram(load("network n { input 3x8x8\\n conv 4/3 -> relu }"))
    >>> [(b.op, b.shape) for b in d.boxes]
    [('input', '3x8x8'), ('conv 4/3/1/0', '4x6x6'), ('relu', '4x6x6'), ('output', '4x6x6')]
    >>> d.edges
    (('n0', 'n1'), ('n1', 'n2'), ('n2', 'out:output'))

Layout and drawing live in :mod:`cnndsl.graph_layout` and :mod:`cnndsl.graph_draw`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnndsl.errors import CnnError, source_text
from cnndsl.files import refuse_overwrite
from cnndsl.ir.compile import net_sources
from cnndsl.layers import CATALOGUE
from cnndsl.layers.arith import fmt_shape

FORMATS = (".svg", ".png", ".dot")


@dataclass(frozen=True)
class Box:
    """One drawn node: a layer, a collapsed block instance, the input or an output."""

    id: str  # "n12" (IR node 12), "b:layer1_1" (a block instance), "out:main"
    role: str  # "layer", "block", "input" or "output"
    name: str  # the layer's or instance's full name
    op: str  # "conv 64/7/2/3", "bottleneck(64)", "input", "output"
    shape: str  # "64x112x112" (several outputs of a block: "64x56x56, 10")
    params: int
    layers: int  # IR nodes inside (1 for a layer, 0 for an output box)

    @property
    def lines(self) -> tuple[str, ...]:
        """The text in the box, top to bottom."""
        size = f"{self.shape} · {_short(self.params)} params" if self.params else self.shape
        return (self.name, self.op, size)

    @property
    def tooltip(self) -> str:
        extra = f", {self.layers} layers" if self.role == "block" else ""
        return f"{self.name}: {self.op} -> {self.shape}, {self.params:,} parameters{extra}"


@dataclass(frozen=True)
class Diagram:
    network: str
    file: str
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str], ...]  # (from box id, to box id), no repeats
    total_params: int
    depth: int | None  # None: every block expanded

    @property
    def caption(self) -> str:
        biggest = max((b.params for b in self.boxes), default=0)
        share = f"{biggest / self.total_params:.1%}" if self.total_params else "0%"
        return (
            f"network {self.network} ({self.file}): {self.total_params:,} parameters. "
            f"Fill shade = share of the parameters (white: none; darkest: {biggest:,}, {share}); "
            "thick border = a collapsed block instance."
        )


def _short(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _field(value) -> str:
    if isinstance(value, tuple):
        return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def layer_op(kind: str, attrs) -> str:
    """``conv 64/7/2/3`` from a node's canonical arguments (fields in the catalogue's order)."""
    spec = CATALOGUE.get(kind)
    if spec is None:
        return kind
    fields = []
    for name, _ in spec.positional:
        value = attrs.get(name)
        if value is None:
            break
        fields.append(_field(value))
    text = kind + (" " + "/".join(fields) if fields else "")
    for name in spec.shown_keywords:
        value, default = attrs.get(name), spec.keywords.get(name)
        if value is None or default is None or value is False:
            continue
        if value is True:
            text += f" {name}"
        elif _field(value) != _field(default.default):
            text += f" {name}={_field(value)}"
    return text


def diagram(model, depth: int | None = None) -> Diagram:
    """Boxes and edges of a compiled network; ``depth``: collapse blocks nested deeper."""
    g = model.graph
    nodes = g.nodes
    owner: list[str] = []  # box id of each IR node
    members: dict[str, list] = {}
    order: list[str] = []
    calls: dict[str, tuple] = {}
    for n in nodes:
        if depth is not None and len(n.scopes) > depth:
            key = "b:" + n.scopes[depth]
            calls.setdefault(key, (n.scopes[depth], n.calls[depth]))
        else:
            key = f"n{n.id}"
        if key not in members:
            members[key] = []
            order.append(key)
        members[key].append(n)
        owner.append(key)
    edges: dict[tuple[str, str], None] = {}
    leaving: dict[str, dict[int, None]] = {}  # block -> IR nodes read from outside it
    for n in nodes:
        for i in n.inputs:
            a, b = owner[i], owner[n.id]
            if a != b:
                edges[(a, b)] = None
                leaving.setdefault(a, {})[i] = None
    outputs = []
    for name, i in g.outputs:
        edges[(owner[i], f"out:{name}")] = None
        leaving.setdefault(owner[i], {})[i] = None
        outputs.append(Box(f"out:{name}", "output", name, "output", fmt_shape(nodes[i].shape), 0, 0))
    boxes = []
    for key in order:
        group = members[key]
        if key.startswith("b:"):
            instance, (block, span) = calls[key]
            produced = list(leaving.get(key, {})) or [group[-1].id]
            shape = ", ".join(dict.fromkeys(fmt_shape(nodes[i].shape) for i in produced))
            op = source_text(span) or f"{block}(...)"
            boxes.append(Box(key, "block", instance, op, shape, sum(n.params for n in group), len(group)))
        else:
            n = group[0]
            role = "input" if n.kind == "input" and n.id == 0 else "layer"
            op = "input" if role == "input" else layer_op(n.kind, n.attrs)
            boxes.append(Box(key, role, n.name, op, fmt_shape(n.shape), n.params, 1))
    total = sum(n.params for n in nodes)
    return Diagram(g.network, g.file, tuple(boxes + outputs), tuple(edges), total, depth)


def output_path(out: str | None, network: str, source: str) -> Path:
    """The destination: ``-o`` or ``NETWORK.svg`` here; refuses the input file itself."""
    path = Path(out) if out else Path(f"{network}.svg")
    src = Path(source)
    refuse_overwrite("-o", path, src, imports=lambda: net_sources(src))
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CnnError(f"cannot write {path}: directory {directory} does not exist", code="E083")
    return path


def render_diagram(d: Diagram, fmt: str) -> bytes:
    """The diagram as ``.svg``, ``.png`` or ``.dot`` bytes."""
    from cnndsl.tools import diagram_draw as graph_draw

    if fmt == ".dot":
        return graph_draw.to_dot(d).encode()
    from cnndsl.tools.diagram_layout import layout

    placed = layout(d)
    if fmt == ".svg":
        return graph_draw.to_svg(d, placed).encode()
    return graph_draw.to_png(d, placed)
