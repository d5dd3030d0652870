"""The lines of an imported network: one layer, one chain, one combinator as ``.net`` text.

The intermediate form (:mod:`cnndsl.importers.form`) is read as a graph: chains
become ``a -> b`` lines, a layer chained onto the line before it when its kind
says so (``Kind.chains``: normalisation and activations); a merge (a combinator
kind) whose inputs are chains from a common fork becomes a combinator with one
branch per chain (``_`` for the fork itself, ``@label`` for a value defined
further back), or the combinator written in its place (``Kind.sugar_for``) when
that kind recognises the branches (``residual { ... }``). Keywords at their
default go without saying; trailing fields at their default too (``Spec``
defaults, ``same_as`` another field); keywords most layers of a kind set alike
are stated once (``Kind.stated_defaults``). :mod:`cnndsl.importers.fold` puts
the statements together.
"""

from __future__ import annotations

import re
from collections import Counter

from cnndsl.errors import CnnError
from cnndsl.importers.form import SourceLayer, SourceNet, SourceRef, identifier
from cnndsl.layers import CATALOGUE
from cnndsl.layers.base import REQUIRED

# Block parameters are named after the field they fill (filters, size, stride); where one block
# has several of a field, after its letter in the language's notation (conv K/F/S/P: c1, c2; f1 ..).
LETTERS = {"filters": "c", "size": "f", "units": "n"}
FREE_FIELD = "units"  # a field of a kind that does not declare it (cannot happen for known kinds)


def is_merge(layer: SourceLayer) -> bool:
    """A layer that reads several values: written as a combinator with branches."""
    kind = CATALOGUE.get(layer.kind)
    return kind is not None and kind.combinator


def chains(layer: SourceLayer) -> str:
    """How the layer joins the line before it (Kind.chains): "", "layer" or "any"."""
    kind = CATALOGUE.get(layer.kind)
    return kind.chains if kind is not None else ""


def field_names(kind_name: str, count: int) -> list[str]:
    """The names of a kind's first ``count`` positional fields."""
    kind = CATALOGUE.get(kind_name)
    names = [name for name, _ in kind.positional] if kind is not None else []
    return (names + [FREE_FIELD] * count)[:count]


def _default_text(kind_name: str, index: int, texts: list[str]) -> str | None:
    """The text of field ``index``'s default (``same_as``: the other field's text), or None."""
    kind = CATALOGUE.get(kind_name)
    if kind is None or index >= len(kind.positional):
        return None
    spec = kind.positional[index][1]
    if spec.same_as is not None:
        names = [name for name, _ in kind.positional]
        return texts[names.index(spec.same_as)]
    if spec.default is REQUIRED or spec.default is None:
        return None
    return fmt_value(spec.default)


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


def fmt_call(layer: SourceLayer, slot=None) -> str:
    """``conv 64/3/1/1 groups=2``, trailing fields at their default left out.

    ``slot(value, field)`` may stand in for an integer field (block templates): it returns the
    text of a block parameter, or None to keep the value (which may then be left out too)."""
    args = list(layer.args)
    names = field_names(layer.kind, len(args))
    texts, kept = [], []
    for a, name in zip(args, names):
        text = slot(a, name) if slot and isinstance(a, int) and not isinstance(a, bool) else None
        kept.append(text is not None)
        texts.append(fmt_value(a) if text is None else text)
    while texts and not kept[-1] and texts[-1] == _default_text(layer.kind, len(texts) - 1, texts):
        texts.pop()
        kept.pop()
    text = layer.kind + (" " + "/".join(texts) if texts else "")
    kind = CATALOGUE.get(layer.kind)
    for k, v in layer.kw.items():
        spec = kind.keywords.get(k) if kind is not None else None
        if v is True and spec is not None and spec.type == "bool" and spec.default is False:
            text += f" {k}"  # a flag that is off unless said: `ceil`, `center`
        else:
            text += f" {k}={fmt_value(v)}"
    return text


# --------------------------------------------------------------------------- structure


class _Graph:
    def __init__(self, net: SourceNet):
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
        self.pinned = set(self.outputs) | {
            v.name for x in net.layers for v in x.kw.values() if isinstance(v, SourceRef)
        }
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
            if is_merge(layer):
                branches = [self._chain_back(i, reader=layer.name) for i in layer.inputs]
                flat = [n for _, chain in branches for n in chain]
                if len({f for f, _ in branches}) > 1 or flat != sorted(flat, key=order.__getitem__):
                    # Branches from different places (U-Net's skip, YOLO's route), or written in another
                    # order than the combinator reads them: no nesting, and the branch computed last
                    # stays in the main flow, entering the combinator as `_` (the layer order is kept).
                    branches = [self._chain_back(i, nest=False, reader=layer.name) for i in layer.inputs]
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

    def _chain_back(self, v: str, nest: bool = True, reader: str | None = None):
        """The chain that ends in ``v``, walked back to its fork; ``reader``: the layer reading ``v``
        (a nested combinator reads its fork through its branches too: squeeze-excitation's gap)."""
        chain, nested = [], False
        while v != "input":
            readers = self.consumers[v]
            if nested:  # only the combinator just passed, directly or through its branches
                alone = all(c == reader or self.owned.get(c) == reader for c in readers)
            else:
                alone = readers == [reader]
            if not alone or v in self.pinned or v in self.owned:
                break
            layer = self.layers[v]
            if is_merge(layer):
                if not nest:
                    break
                fork = self.fork_of(v)
                if fork is None:
                    break
                chain.insert(0, v)
                v, reader, nested = fork, v, True
                continue
            chain.insert(0, v)
            v, reader, nested = layer.inputs[0], v, False
        return v, chain


class Writer:
    def __init__(self, net: SourceNet, source: str = ""):
        self.g = _Graph(net)
        self.net = net
        self.source = source
        self.defaults = stated_defaults(net.layers)
        self.labels: dict[str, str] = {}
        self.referenced: set[str] = set()

    # ---- one layer / branch / merge as text
    def call(self, layer: SourceLayer, slot=None) -> str:
        """A layer's call, keywords at their default left out (or under the ``default`` lines)."""
        kind = CATALOGUE.get(layer.kind)
        specs = kind.keywords if kind is not None else {}
        stated = self.defaults.get(layer.kind, {})
        kw = {
            k: (f"@{self.label(v.name)}" if isinstance(v, SourceRef) else v)
            for k, v in layer.kw.items()
            if k in stated or not (k in specs and specs[k].default == v)
        }
        for k, v in stated.items():  # said once by `default KIND k=v`; a layer that differs says so
            value = kw.pop(k, specs[k].default)
            if value != v:
                kw[k] = value
        return fmt_call(SourceLayer(layer.name, layer.kind, layer.args, kw), slot)

    def _sugar(self, merge: SourceLayer):
        """(kind, body chain, keywords) when a combinator written in place of ``merge``
        (Kind.sugar_for: ``residual { body }`` for an add) recognises one branch as its own
        shortcut (Kind.import_shortcut), else None."""
        sugars = [k for k in CATALOGUE.values() if k.sugar_for == merge.kind]
        if not sugars or len(merge.inputs) != 2 or merge.kw:
            return None
        (f1, c1), (f2, c2) = self.g.branches[merge.name]
        if f1 != f2:
            return None
        for short, body in ((c1, c2), (c2, c1)):
            if not body or any(is_merge(self.g.layers[n]) for n in short):
                continue
            for kind in sugars:
                mode = kind.import_shortcut([self.g.layers[n] for n in short], self.defaults)
                if mode is not None:
                    return kind, body, {"shortcut": mode}
        return None

    def merge_text(self, merge: SourceLayer, current: str | None, slot=None, indent: str = "    ") -> list[str]:
        """The combinator's lines (``current``: the value entering it)."""
        found = self._sugar(merge)
        if found is not None:
            kind, body, kw = found
            lines = self.chain_lines(body, slot)
            return [combinator_head(kind, kw), *(indent + x for x in lines), "}"]
        lines = [combinator_head(CATALOGUE[merge.kind], merge.kw)]
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
            if is_merge(layer):
                sub = self.merge_text(layer, prev if prev else self.g.fork_of(n), slot, indent="    ")
                if lines and prev is not None:
                    lines.append(sub[0])
                    lines += ["    " + s for s in sub[1:-1]] + [sub[-1]]
                else:
                    lines += [sub[0], *("    " + s for s in sub[1:-1]), sub[-1]]
                prev = n
                continue
            text = self.call(layer, slot)
            if lines and chains(layer) and not lines[-1].endswith("{"):
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


def combinator_head(kind, kw: dict) -> str:
    """``residual {``, or with keywords off their default ``residual(shortcut=pad) {``."""
    said = {k: v for k, v in kw.items() if kind.keywords[k].default != v}
    args = ", ".join(f"{k}={fmt_value(v)}" for k, v in said.items())
    return f"{kind.name}({args}) {{" if args else f"{kind.name} {{"


def stated_defaults(layers: list) -> dict[str, dict]:
    """Per kind, the keywords (Kind.stated_defaults) that most of its layers set to one value other
    than the default: stated once by a ``default`` line (``default conv bias=false``)."""
    out: dict[str, dict] = {}
    for name, kind in CATALOGUE.items():
        for k in kind.stated_defaults:
            default = kind.keywords[k].default
            values = Counter(x.kw.get(k, default) for x in layers if x.kind == name)
            if values:
                value, count = values.most_common(1)[0]
                if value != default and count > values[default]:
                    out.setdefault(name, {})[k] = value
    return out
