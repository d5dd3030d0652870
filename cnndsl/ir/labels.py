"""Labels of the elaboration pass: ``name:`` binds a value in its block instance, ``@name``
reads it, ``output`` lists some of them; unused labels are warned about."""

from __future__ import annotations

from cnndsl.errors import CnnError, Diagnostic, Span, did_you_mean
from cnndsl.ir.scope import Env
from cnndsl.lang import tree as ast


class Labels:
    """What the pass knows about labels across the whole network."""

    def __init__(self):
        self.outputs: list[tuple[str, int, Span]] = []  # (name, node id, span), in `output` order
        self.homes: dict[str, str] = {}  # label -> scope prefix where first defined
        self.unnamed: dict = {}  # (scope id, label) -> span: labels that name no layer
        self.referenced: set = set()  # (scope id, label) read through @label

    def bind(self, label: str, value: int, span: Span, env: Env, names_layer: bool = True) -> None:
        old = env.scope.labels.get(label)
        if old is not None and old[1] != span:
            raise CnnError(f"label '{label}' is defined twice", span, notes=[("first defined", old[1])], code="E022")
        env.scope.labels[label] = (value, span)
        if not names_layer:
            self.unnamed[(id(env.scope), label)] = span
        self.homes.setdefault(label, env.scope.prefix)

    def value(self, name: str, span: Span, env: Env) -> int:
        """The node id that ``@name`` reads in this scope."""
        hit = env.scope.labels.get(name)
        if hit is not None:
            self.referenced.add((id(env.scope), name))
            return hit[0]
        notes = []
        later = _find_label(env.scope.definition.body, name)
        if later is not None:
            raise CnnError(
                f"label @{name} is used before it is defined", span, notes=[("defined later", later)], code="E023"
            )
        home = self.homes.get(name)
        if home is not None and home != env.scope.prefix:
            where = f"inside block instance {home.rstrip('.')}" if home else "at the network level"
            notes.append((f"a label '{name}' exists {where}; labels are local to their block", None))
        raise CnnError(f"unknown label @{name}{did_you_mean(name, env.scope.labels)}", span, notes=notes, code="E020")

    def unused(self) -> list[Diagnostic]:
        """W300 for a label that nothing reads and that names no layer.

        A label on a layer or block call names it (``conv1: conv 96/11/4`` is how AlexNet
        names its layers), so it is never unused. A label on ``_``, ``@x``, a group or a
        repeat body names nothing; if no ``@label`` reads it either, it is dead text."""
        seen, out = set(), []
        for key, span in self.unnamed.items():
            if key in self.referenced or span in seen:
                continue
            seen.add(span)  # once per source position, not once per block instance
            name = key[1]
            message = f"label '{name}' is never used: no @{name} reads it and it names no layer"
            out.append(Diagnostic("warning", message, span, [], "W300"))
        return out

    def add_outputs(self, st: ast.Output, env: Env) -> None:
        seen = {n for n, _, _ in self.outputs}
        for name, span in st.names:
            if name in seen:
                raise CnnError(f"output '{name}' is listed twice", span, code="E056")
            seen.add(name)
            self.outputs.append((name, self.value(name, span, env), span))


def _find_label(body, name: str):
    """Where ``name:`` is defined anywhere in a body (without recursion)."""
    stack = [body]
    while stack:
        for st in stack.pop():
            if isinstance(st, ast.Statement):
                if st.label == name:
                    return st.label_span
                for step in st.steps:
                    while isinstance(step, ast.Repeat) and step.is_step:
                        step = step.body[0]
                    if isinstance(step, (ast.Group, ast.Repeat, ast.Call)) and step.body:
                        stack.append(step.body)
    return None
