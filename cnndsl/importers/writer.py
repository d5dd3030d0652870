"""``cnndsl import``: other formats to readable ``.net`` text.

Three readers (Caffe prototxt, Darknet cfg, ONNX) produce one small
intermediate form, a :class:`Net` of :class:`Layer` records in topological
order, each naming the layers it reads. One writer turns it into ``.net`` text:

- chains become ``a -> b`` lines, one line per weighted or pooling layer with its
  normalisation and activation chained on, a comment giving the source's names;
- a merge (``add``/``concat``/``mul``) whose inputs are chains from a common fork
  becomes a combinator with one branch per chain (``_`` for the fork itself,
  ``@label`` for a value defined further back); an ``add`` of an identity or of
  the projection ``residual`` would make becomes ``residual { ... }``;
- combinators of the same structure become calls of one ``block`` whose
  parameters are the numbers that differ between them (ResNet's bottlenecks,
  GoogLeNet's inception modules), and runs of identical lines become
  ``* N`` or ``repeat N { ... }``.

    >>> net = Net("tiny", (1, 28, 28), [Layer("c1", "conv", [8, 3]), Layer("r1", "relu", inputs=["c1"])])
    >>> print(write_net(net).splitlines()[-2].strip())
    conv 8/3 -> relu                         # c1, r1
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cnndsl.errors import CnnError, Span

MERGES = ("add", "concat", "mul")
# Layers chained onto the line of the layer before them.
MINOR = {
    "bn",
    "relu",
    "relu6",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "scaled_tanh",
    "abs",
    "elu",
    "gelu",
    "silu",
    "hardswish",
    "prelu",
    "dropout",
    "softmax",
    "lrn",
    "flatten",
}
# Trailing positional values that equal the kind's default are left out ("S" = same as F).
TRAILING_DEFAULTS = {
    "conv": (None, None, 1, 0),
    "deconv": (None, None, 1, 0),
    "maxpool": (None, "F", 0),
    "avgpool": (None, "F", 0),
    "dropout": (0.5,),
    "leaky_relu": (0.01,),
    "upsample": (2,),
}
# Block parameter names after the field they fill: K/F/S/P of conv, F/S/P of pooling.
FIELD_HINTS = {"conv": "cfsp", "deconv": "cfsp", "maxpool": "fsp", "avgpool": "fsp", "fc": "n"}
BARE_FLAGS = {"ceil", "center", "count_pad"}  # written without =true
RESERVED = {"network", "block", "import", "table", "default", "input", "output", "repeat", "in", "true", "false"}


@dataclass
class Layer:
    """One layer of the intermediate form.

    ``kind`` is a layer kind of the language; ``args`` its positional fields and
    ``kw`` its keywords, as values (ints, floats, bools, words, tuples for
    dimension literals); ``inputs`` the names of the layers read (``"input"`` is
    the network input; empty means the layer before)."""

    name: str
    kind: str
    args: list = field(default_factory=list)
    kw: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    span: Span | None = None


@dataclass(frozen=True)
class Ref:
    """A keyword value naming another layer: written ``@label`` (``unpool of=@pool1``)."""

    name: str


@dataclass(frozen=True)
class Table:
    """A connection table (``table NAME = [[0,1,2], ...]``), used by ``conv ... table=NAME``."""

    name: str
    rows: list


@dataclass
class Net:
    name: str
    input: tuple
    layers: list
    outputs: list = field(default_factory=list)  # layer names; empty: the last layer
    notes: list = field(default_factory=list)  # comment lines for the file header
    tables: list = field(default_factory=list)
    output_names: dict = field(default_factory=dict)  # layer -> the source's name for that output


# --------------------------------------------------------------------------- entry point


def import_file(path, name: str | None = None) -> str:
    """The ``.net`` text of a .prototxt, .cfg or .onnx file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".prototxt", ".pbtxt"):
        from cnndsl.importers.from_caffe import read_caffe

        net = read_caffe(path)
    elif suffix == ".cfg":
        from cnndsl.importers.from_darknet import read_darknet

        net = read_darknet(path)
    elif suffix == ".onnx":
        from cnndsl.importers.from_onnx import read_onnx

        net = read_onnx(path)
    else:
        raise CnnError(
            f"cannot import {path}: expected a .prototxt (Caffe), .cfg (Darknet) or .onnx file; "
            f"received {suffix or 'no extension'}",
            code="E240",
        )
    if name is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in RESERVED:
            raise CnnError(f"--name {name}: expected a name like resnet50 (letters, digits, _)", code="E240")
        net.name = name
    net.name = identifier(net.name, set())
    return write_net(net, source=str(path))


def read_text(path: Path) -> str:
    from cnndsl.errors import remember_source

    try:
        if path.is_dir():
            raise CnnError(f"cannot read {path}: it is a directory", code="E240")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CnnError(f"cannot read {path}: no such file", code="E240") from None
    except OSError as err:
        raise CnnError(f"cannot read {path}: {err.strerror or err}", code="E240") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CnnError(f"cannot read {path}: not UTF-8 text (byte {err.start})", code="E240") from None
    remember_source(str(path), text)
    return text


# --------------------------------------------------------------------------- names and values


def identifier(name: str, taken: set) -> str:
    """A fresh .net name for a source name: ``conv1/7x7_s2`` -> ``conv1_7x7_s2``."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "layer"
    base = re.sub(r"_+", "_", base)
    if base[0].isdigit():
        base = "l" + base
    if base in RESERVED:
        base += "_"
    out, k = base, 1
    while out in taken:
        out = f"{base}_{k}"
        k += 1
    taken.add(out)
    return out


def fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v)}.0"
        text = repr(v)
        return text if re.fullmatch(r"-?([0-9]+\.[0-9]*([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)", text) else f"{v:.8g}"
    if isinstance(v, tuple):
        if len(set(v)) == 1:
            return str(v[0])
        return "x".join(str(int(x)) for x in v)
    return str(v)


def fmt_call(layer: Layer, slot=None) -> str:
    """``conv 64/3/1/1 groups=2``; ``slot(value)`` may stand in for an integer field (block templates)."""
    args = list(layer.args)
    defaults = TRAILING_DEFAULTS.get(layer.kind, ())
    # templates keep every field, so that units differing in a stride share one block
    while slot is None and args and len(args) <= len(defaults):
        d = defaults[len(args) - 1]
        if d == "F":
            d = args[0]
        if d is None or fmt_value(args[-1]) != fmt_value(d):
            break
        args.pop()
    hints = FIELD_HINTS.get(layer.kind, "n" * len(args))
    fields = [
        slot(a, hints[i] if i < len(hints) else "n")
        if slot and isinstance(a, int) and not isinstance(a, bool)
        else fmt_value(a)
        for i, a in enumerate(args)
    ]
    text = layer.kind + (" " + "/".join(fields) if fields else "")
    for k, v in layer.kw.items():
        if v is True and k in BARE_FLAGS:
            text += f" {k}"
        else:
            text += f" {k}={fmt_value(v)}"
    return text


# --------------------------------------------------------------------------- structure


class _Graph:
    def __init__(self, net: Net):
        self.net = net
        self.layers = {}
        prev = "input"
        for layer in net.layers:
            if not layer.inputs:
                layer.inputs = [prev]
            for i in layer.inputs:
                if i != "input" and i not in self.layers:
                    raise CnnError(
                        f"layer {layer.name} reads {i}, which is not defined before it", layer.span, code="E242"
                    )
            if layer.name in self.layers or layer.name == "input":
                raise CnnError(f"two layers are named {layer.name}", layer.span, code="E242")
            self.layers[layer.name] = layer
            prev = layer.name
        self.outputs = list(net.outputs) or [prev]
        # values named elsewhere (outputs, `of=@pool`) stay at the top level, where they can be labelled
        self.pinned = set(self.outputs) | {v.name for x in net.layers for v in x.kw.values() if isinstance(v, Ref)}
        self.consumers = {name: [] for name in ["input", *self.layers]}
        for layer in net.layers:
            for i in layer.inputs:
                self.consumers[i].append(layer.name)
        # merge name -> [(fork, [chain of layer names])]; owned: layer -> merge that holds it
        self.branches: dict[str, list] = {}
        self.owned: dict[str, str] = {}
        order = {layer.name: k for k, layer in enumerate(net.layers)}
        order["input"] = -1
        for layer in net.layers:
            if layer.kind in MERGES:
                branches = [self._chain_back(i) for i in layer.inputs]
                flat = [n for _, chain in branches for n in chain]
                if len({f for f, _ in branches}) > 1 or flat != sorted(flat, key=order.__getitem__):
                    # Branches from different places (U-Net's skip, YOLO's route), or written in another
                    # order than the combinator reads them: no nesting, and the branch computed last
                    # stays in the main flow, entering the combinator as `_` (the layer order is kept).
                    branches = [self._chain_back(i, nest=False) for i in layer.inputs]
                    started = [k for k, (_, chain) in enumerate(branches) if chain]
                    if started:
                        main = min(started, key=lambda k: order[branches[k][1][0]])
                        branches[main] = (layer.inputs[main], [])
                self.branches[layer.name] = branches
                for _, chain in self.branches[layer.name]:
                    for n in chain:
                        self.owned[n] = layer.name

    def fork_of(self, merge: str):
        forks = {f for f, _ in self.branches[merge]}
        return forks.pop() if len(forks) == 1 else None

    def _chain_back(self, v: str, nest: bool = True):
        chain = []
        while v != "input":
            if len(self.consumers[v]) != 1 or v in self.pinned or v in self.owned:
                break
            layer = self.layers[v]
            if layer.kind in MERGES:
                if not nest:
                    break
                fork = self.fork_of(v)
                if fork is None:
                    break
                chain.insert(0, v)
                v = fork
                continue
            chain.insert(0, v)
            v = layer.inputs[0]
        return v, chain


class Writer:
    def __init__(self, net: Net, source: str = ""):
        self.g = _Graph(net)
        self.net = net
        self.source = source
        # `default conv bias=false` when most convolutions have no bias (ResNet in Caffe, Darknet's
        # batch-normalised layers); the others then say `bias=true`
        biases = [x.kw.get("bias", True) for x in net.layers if x.kind == "conv"]
        self.no_bias = biases.count(False) > biases.count(True)
        self.labels: dict[str, str] = {}
        self.referenced: set[str] = set()

    # ---- one layer / branch / merge as text
    def call(self, layer: Layer, slot=None) -> str:
        from cnndsl.layers import CATALOGUE

        specs = CATALOGUE[layer.kind].keywords if layer.kind in CATALOGUE else {}
        kw = {
            k: (f"@{self.label(v.name)}" if isinstance(v, Ref) else v)
            for k, v in layer.kw.items()
            if not (k in specs and k != "bias" and specs[k].default == v)
        }  # defaults go without saying
        if layer.kind == "conv" and self.no_bias and kw.pop("bias", True):
            kw["bias"] = True  # under `default conv bias=false`
        return fmt_call(Layer(layer.name, layer.kind, layer.args, kw), slot)

    def _residual_body(self, merge: Layer):
        """(body chain, shortcut) when ``merge`` is what ``residual { body }`` makes, else None."""
        if merge.kind != "add" or len(merge.inputs) != 2:
            return None
        (f1, c1), (f2, c2) = self.g.branches[merge.name]
        if f1 != f2:
            return None
        for short, body in ((c1, c2), (c2, c1)):
            if not body or any(self.g.layers[n].kind in MERGES for n in short):
                continue
            if not short:
                return body, "auto"
            if len(short) == 1 and self.g.layers[short[0]].kind == "shortcut_pad":
                return body, "pad"
            if len(short) == 2:
                conv, bn = (self.g.layers[n] for n in short)
                bias = conv.kw.get("bias", True)
                if (
                    conv.kind == "conv"
                    and bn.kind == "bn"
                    and not bn.kw
                    and bn.args == []
                    and _int(conv.args[1]) == 1
                    and _int(conv.args[3] if len(conv.args) > 3 else 0) == 0
                    and set(conv.kw) <= {"bias"}
                    and bias == (not self.no_bias)
                ):
                    return body, "auto"
        return None

    def merge_text(self, merge: Layer, current: str | None, slot=None, indent: str = "    ") -> list[str]:
        """The combinator's lines (``current``: the value entering it)."""
        found = self._residual_body(merge)
        if found is not None:
            body, shortcut = found
            lines = self.chain_lines(body, slot)
            head = "residual {" if shortcut == "auto" else f"residual(shortcut={shortcut}) {{"
            return [head, *(indent + x for x in lines), "}"]
        lines = [f"{merge.kind} {{"]
        for fork, chain in self.g.branches[merge.name]:
            start = "" if fork == current else f"@{self.label(fork)}"
            if not chain:
                lines.append(indent + (start or "_"))
                continue
            inner = self.chain_lines(chain, slot)
            if start:
                inner[0] = f"{start} -> {inner[0]}"
            if len(inner) == 1:
                lines.append(indent + inner[0])
            else:
                lines.append(indent + "{ " + inner[0])
                lines += [indent + "  " + x for x in inner[1:]]
                lines[-1] += " }"
        return lines + ["}"]

    def chain_lines(self, names: list, slot=None) -> list[str]:
        """A chain of layers inside a branch (no references inside)."""
        lines: list[str] = []
        prev = None
        for n in names:
            layer = self.g.layers[n]
            if layer.kind in MERGES:
                sub = self.merge_text(layer, prev if prev else self.g.fork_of(n), slot, indent="    ")
                if lines and prev is not None:
                    lines.append(sub[0])
                    lines += ["    " + s for s in sub[1:-1]] + [sub[-1]]
                else:
                    lines += [sub[0], *("    " + s for s in sub[1:-1]), sub[-1]]
                prev = n
                continue
            text = self.call(layer, slot)
            if lines and layer.kind in MINOR and not lines[-1].endswith("{"):
                lines[-1] += " -> " + text
            else:
                lines.append(text)
            prev = n
        return lines

    def label(self, name: str) -> str:
        """The label of a referenced value (named when its statement is written)."""
        self.referenced.add(name)
        if name == "input" and name not in self.labels:  # written as `input_: _` after the input line
            self.labels[name] = identifier(self.net.output_names.get(name, "input_"), set(self.labels.values()))
        return self.labels.get(name, name)

    def name_label(self, end: str, first: str) -> str:
        self.labels[end] = identifier(self.net.output_names.get(end, first), set(self.labels.values()))
        return self.labels[end]


def _int(v):
    if isinstance(v, tuple):
        return v[0] if len(set(v)) == 1 else -1
    return v


def write_net(net: Net, source: str = "") -> str:
    """The ``.net`` text of an intermediate network (see the module doc)."""
    from cnndsl.importers.fold import render

    return render(Writer(net, source))
