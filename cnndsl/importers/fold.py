"""The writer's second half: statements of the network body, folded into
``block`` definitions and ``repeat`` runs (see :mod:`cnndsl.importers.writer`).

Combinators of the same structure become calls of one ``block`` whose parameters
are the integer fields that differ between them, named after the field they fill
(ResNet's bottlenecks: ``block residual_unit(c1, c2, stride, c3)``); runs of
identical statements become ``* N`` or ``repeat N { ... }``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnndsl.importers.form import SourceRef, identifier
from cnndsl.importers.writer import LETTERS, chains, fmt_value, is_merge

COMMENT_COLUMN = 40


@dataclass
class Unit:
    """One statement of the network body: a chain or a combinator, with what it is made of."""

    lines: list
    names: list  # source layer names, in order
    end: str  # the layer whose value the statement ends with
    merge: bool = False
    start: str | None = None  # @reference it starts from
    template: str | None = None
    values: list = field(default_factory=list)
    fields: list = field(default_factory=list)  # the field each of the template's slots fills
    makes: list = field(default_factory=list)  # make(slot) -> lines, per part of the template
    label: str | None = None
    prefix: str = ""  # "@value -> " when a combinator starts from an earlier value


def write_body(w) -> str:
    """The ``.net`` text of the network that the Writer ``w`` holds: header, tables, ``default``
    lines, blocks and the network's statements."""
    g, net = w.g, w.net
    top = [x for x in net.layers if x.name not in g.owned]
    # pass 1: which values are referenced (they end a statement and get a label)
    current = "input"
    starts = {}
    for layer in top:
        if is_merge(layer):
            fork = g.fork_of(layer.name)
            for branch_fork, _ in g.branches[layer.name]:
                if branch_fork != current:
                    w.label(branch_fork if fork is None or fork == "input" else fork)
        elif layer.inputs[0] != current:
            starts[layer.name] = layer.inputs[0]
            w.label(layer.inputs[0])
        current = layer.name
    for layer in net.layers:
        for v in layer.kw.values():
            if isinstance(v, SourceRef):
                w.label(v.name)
    outputs = g.outputs
    if outputs != [current]:
        for o in outputs:
            w.label(o)
    # pass 2: statements
    units: list[Unit] = []
    current = "input"
    for layer in top:
        last = units[-1] if units else None
        if is_merge(layer):
            # all branches from one earlier value: `@value -> concat { ... }` (GoogLeNet's 4b after aux1)
            fork = g.fork_of(layer.name)
            entry = fork if fork is not None and fork != "input" else current
            prefix = f"@{w.label(entry)} -> " if entry != current else ""
            lines = w.merge_text(layer, entry)
            lines[0] = prefix + lines[0]
            names = [n for _, chain in g.branches[layer.name] for n in chain] + [layer.name]
            unit = Unit(lines, names, layer.name, merge=True, start=entry if prefix else None, prefix=prefix)
            _set_template(unit, lambda s, layer=layer, entry=entry: w.merge_text(layer, entry, s))
            units.append(unit)
        elif (
            chains(layer)
            and last is not None
            and last.end == current
            and layer.inputs[0] == current
            and current not in w.referenced
            and layer.name not in starts
            # after a combinator only what chains onto anything joins (DenseNet's transition starts a line)
            and not (last.merge and chains(layer) != "any")
        ):
            text = w.call(layer)
            last.lines[-1] += " -> " + text
            last.names.append(layer.name)
            last.end = layer.name
            if last.template is not None:
                _set_template(last, lambda s, layer=layer: [w.call(layer, s)])
        else:
            start = starts.get(layer.name)
            text = w.call(layer)
            if start:
                text = f"@{w.label(start)} -> {text}"
            unit = Unit([text], [layer.name], layer.name, start=start)
            if not start:
                _set_template(unit, lambda s, layer=layer: [w.call(layer, s)])
            units.append(unit)
        current = layer.name
        if current in w.referenced:
            units[-1].label = w.name_label(current, units[-1].names[0] if not units[-1].merge else current)
    blocks = _fold_blocks(units)
    body = _fold_repeats(units)
    out = [f"# Imported by cnndsl import from {w.source}" if w.source else "# Imported by cnndsl import"]
    out += [f"# {n}" for n in net.notes]
    out.append("")
    for t in net.tables:
        rows = ", ".join("[" + ", ".join(map(str, row)) + "]" for row in t.rows)
        out += [f"table {t.name} = [{rows}]", ""]
    for kind, kw in w.defaults.items():
        out += [f"default {kind} " + " ".join(f"{k}={fmt_value(v)}" for k, v in kw.items()), ""]
    for text in blocks:
        out += [text, ""]
    out.append(f"network {net.name} {{")
    out.append("    input " + "x".join(str(d) for d in net.input))
    named = "output " + ", ".join(w.label(o) for o in outputs) if outputs != [current] else None
    if "input" in w.labels:  # a later layer or an output reads the network input itself
        out.append(f"    {w.labels['input']}: _")
    out += ["    " + x for x in body]
    if named:
        out.append("    " + named)
    out.append("}")
    return "\n".join(out) + "\n"


def _set_template(unit: Unit, make) -> None:
    """Add ``make(slot)``'s text to the unit's template, its integer fields as slots (``\\x00``)
    with their values and the field each fills."""

    def slot(value, name):
        unit.values.append(value)
        unit.fields.append(name)
        return "\x00"

    text = "\n".join(make(slot))
    unit.template = text if not unit.makes else f"{unit.template} -> {text}"
    unit.makes.append(make)


def _block_body(unit: Unit, params: dict) -> str:
    """The unit's text with slot ``i`` written as ``params[i]``, the other slots as their values
    (trailing ones at their default then left out, as on any line)."""
    count = iter(range(len(unit.values)))

    def slot(value, name):
        return params.get(next(count))

    return " -> ".join("\n".join(make(slot)) for make in unit.makes)


def _comment(names: list) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]} .. {names[-1]}"


def _with_comment(line: str, comment: str) -> str:
    return f"{line:<{COMMENT_COLUMN}} # {comment}" if comment else line


def _fold_blocks(units: list) -> list[str]:
    """Combinators with the same structure (and any chain after them) become calls of one block."""
    groups: dict[str, list[Unit]] = {}
    for u in units:
        if u.merge and u.template is not None and "@" not in u.template:
            groups.setdefault(u.template, []).append(u)
    texts = []
    used_names: set = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        kind = members[0].lines[0].split()[0]
        name = identifier(kind + "_unit", used_names)
        columns = list(zip(*(u.values for u in members)))
        varying = [i for i, col in enumerate(columns) if len(set(col)) > 1]
        fields = [members[0].fields[i] for i in varying]
        names = {}
        for i, f in zip(varying, fields):
            if fields.count(f) == 1:
                names[i] = f
            else:
                letter = LETTERS.get(f, f[0])
                names[i] = f"{letter}{sum(1 for j in names if members[0].fields[j] == f) + 1}"
        params = [names[i] for i in varying]
        text = _block_body(members[0], names)
        args_of = {id(u): [str(u.values[i]) for i in varying] for u in members}
        header = f"block {name}({', '.join(params)}) {{"
        texts.append("\n".join([header, *("    " + line for line in text.split("\n")), "}"]))
        for u in members:
            call = f"{name}({', '.join(args_of[id(u)])})" if params else name
            u.lines = [u.prefix + call]
            u.template = "call:" + call
    return texts


def _fold_repeats(units: list) -> list[str]:
    """Runs of identical unlabelled statements become ``* N`` or ``repeat N { ... }``."""
    out: list[str] = []
    i = 0
    key = [None if (u.label or u.start) else "\n".join(u.lines) for u in units]
    while i < len(units):
        best = (1, 1)  # (period, count)
        for p in range(1, 5):
            if key[i] is None or i + p > len(units) or any(k is None for k in key[i : i + p]):
                break
            n = 1
            while key[i + n * p : i + (n + 1) * p] == key[i : i + p]:
                n += 1
            if n > 1 and n * p > best[0] * best[1]:
                best = (p, n)
        p, n = best
        if n > 1:
            group = units[i : i + p * n]
            comment = _comment([x for u in group for x in (u.names[-1:] if u.merge else u.names[:1])])
            lines = [x for u in units[i : i + p] for x in u.lines]
            if len(lines) == 1 and "->" not in lines[0] and "{" not in lines[0]:
                out.append(_with_comment(f"{lines[0]} * {n}", comment))
            else:
                out.append(_with_comment(f"repeat {n} {{", comment))
                out += ["    " + x for x in lines]
                out.append("}")
            i += p * n
            continue
        u = units[i]
        lines = list(u.lines)
        if u.label:
            lines[0] = f"{u.label}: {lines[0]}"
        comment = _comment(u.names if not u.merge else [u.end])
        lines[0] = _with_comment(lines[0], comment)
        out += lines
        i += 1
    return out
