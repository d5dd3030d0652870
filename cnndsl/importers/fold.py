"""The writer's second half: statements of the network body, folded into
``block`` definitions and ``repeat`` runs (see :mod:`cnndsl.importers.writer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cnndsl.importers.writer import MERGES, MINOR, identifier

# Parameter names of a block, after the field of the layer they fill.
WORDS = {"c": "filters", "f": "size", "s": "stride", "p": "pad", "n": "units"}
COMMENT_COLUMN = 40
# After a combinator only activations join its statement (DenseNet's transition starts a new line).
AFTER_MERGE_NEW_LINE = {"bn", "lrn", "dropout", "softmax", "flatten"}


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
    kinds: list = field(default_factory=list)  # parameter name hints for the template's slots
    label: str | None = None
    prefix: str = ""  # "@value -> " when a combinator starts from an earlier value


def render(w) -> str:
    g, net = w.g, w.net
    top = [x for x in net.layers if x.name not in g.owned]
    # pass 1: which values are referenced (they end a statement and get a label)
    current = "input"
    starts = {}
    for layer in top:
        if layer.kind in MERGES:
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
            if hasattr(v, "name") and type(v).__name__ == "Ref":
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
        if layer.kind in MERGES:
            # all branches from one earlier value: `@value -> concat { ... }` (GoogLeNet's 4b after aux1)
            fork = g.fork_of(layer.name)
            entry = fork if fork is not None and fork != "input" else current
            prefix = f"@{w.label(entry)} -> " if entry != current else ""
            lines = w.merge_text(layer, entry)
            lines[0] = prefix + lines[0]
            names = [n for _, chain in g.branches[layer.name] for n in chain] + [layer.name]
            unit = Unit(lines, names, layer.name, merge=True, start=entry if prefix else None, prefix=prefix)
            unit.template, unit.values, unit.kinds = _template(
                w, lambda s, layer=layer, entry=entry: w.merge_text(layer, entry, s)
            )
            units.append(unit)
        elif (
            layer.kind in MINOR
            and last is not None
            and last.end == current
            and layer.inputs[0] == current
            and current not in w.referenced
            and layer.name not in starts
            and not (last.merge and layer.kind in AFTER_MERGE_NEW_LINE)
        ):
            text = w.call(layer)
            last.lines[-1] += " -> " + text
            last.names.append(layer.name)
            last.end = layer.name
            if last.template is not None:
                t, v, k = _template(w, lambda s, layer=layer: [w.call(layer, s)])
                last.template += " -> " + t
                last.values += v
                last.kinds += k
        else:
            start = starts.get(layer.name)
            text = w.call(layer)
            if start:
                text = f"@{w.label(start)} -> {text}"
            unit = Unit([text], [layer.name], layer.name, start=start)
            if not start:
                unit.template, unit.values, unit.kinds = _template(w, lambda s, layer=layer: [w.call(layer, s)])
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
    if w.no_bias:
        out += ["default conv bias=false", ""]
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


def _template(w, make):
    """The text of a statement with its integer fields as slots, and the slot values."""
    values, kinds = [], []

    def slot(v, kind="n"):
        values.append(v)
        kinds.append(kind)
        return "\x00"

    lines = make(slot)
    return "\n".join(lines), values, kinds


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
    for template, members in groups.items():
        if len(members) < 2:
            continue
        kind = members[0].lines[0].split()[0]
        name = identifier(kind + "_unit", used_names)
        columns = list(zip(*(u.values for u in members)))
        varying = [i for i, col in enumerate(columns) if len(set(col)) > 1]
        hints = [members[0].kinds[i] for i in varying]
        names = {}
        for i, h in zip(varying, hints):
            if hints.count(h) == 1:
                names[i] = WORDS.get(h, h)
            else:
                names[i] = f"{h}{sum(1 for j in names if members[0].kinds[j] == h) + 1}"
        params = [names[i] for i in varying]
        pieces = template.split("\x00")
        text = pieces[0]
        for i, col in enumerate(columns):
            text += names[i] if i in names else str(col[0])
            text += pieces[i + 1]
        text = _trim_fields(text)
        args_of = {id(u): [str(u.values[i]) for i in varying] for u in members}
        header = f"block {name}({', '.join(params)}) {{"
        texts.append("\n".join([header, *("    " + line for line in text.split("\n")), "}"]))
        for u in members:
            call = f"{name}({', '.join(args_of[id(u)])})" if params else name
            u.lines = [u.prefix + call]
            u.template = "call:" + call
    return texts


def _trim_fields(text: str) -> str:
    """Leave out trailing default fields of the constant parts of a block body (conv 64/1/1/0 -> conv 64/1)."""
    import re

    text = re.sub(r"\b(conv|deconv) ([A-Za-z0-9_]+/[A-Za-z0-9_x]+)/1/0\b(?!/)", r"\1 \2", text)
    return re.sub(r"\b(conv|deconv) ([A-Za-z0-9_]+/[A-Za-z0-9_x]+/[A-Za-z0-9_]+)/0\b(?!/)", r"\1 \2", text)


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
