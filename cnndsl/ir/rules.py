"""Combinators and labels of the elaboration pass (mixins of ``Elaborator``).

Split from :mod:`cnndsl.ir.elaborate` to keep each file readable; the methods use
the pass's state (``self.nodes``, ``self.layer`` ...) as if written there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnndsl.errors import CnnError, Diagnostic, Span, did_you_mean, source_text
from cnndsl.lang import tree as ast
from cnndsl.layers import CATALOGUE, LayerError
from cnndsl.layers.arith import fmt_shape, window_out

if TYPE_CHECKING:
    from cnndsl.ir.elaborate import Env


class CombinatorRules:
    def combinator(self, c: ast.Call, kind, env: Env, cur: int, hint: str | None) -> int:
        if c.body is None:
            raise CnnError(
                f"{c.kind} needs a {{ body }} of branches, e.g. {c.kind} {{ _ ; conv 64/3/1/1 }}", c.span, code="E012"
            )
        x = self.nodes[cur].shape
        a, spans = self.arguments(c, kind, env, x)
        name = env.scope.unique(hint or kind.name)
        inner = env.nested(x)
        if kind.name == "residual":
            body = self.body(c.body, inner, cur)
            outs = [self._shortcut(a["shortcut"], cur, body, c, inner), body]
            labels = ["shortcut", "body"]
        else:
            outs, labels = [], []
            for st in c.body:
                if isinstance(st, ast.Default):
                    inner = self._default(st, inner)
                    continue
                if not isinstance(st, ast.Statement):
                    raise CnnError(
                        f"{'input' if isinstance(st, ast.Input) else 'output'} cannot be a branch", st.span, code="E055"
                    )
                outs.append(self.statement(st, inner, cur))
                labels.append(st.span)
            if not outs:
                raise CnnError(f"{c.kind} needs at least one branch", c.span, code="E012")
        shapes = [self.nodes[o].shape for o in outs]
        if kind.name == "concat" and a["crop"] == "center" and len({s[1:] for s in shapes}) > 1:
            if len({len(s) for s in shapes}) == 1:
                target = tuple(min(s) for s in zip(*(s[1:] for s in shapes)))
                crop = CATALOGUE["crop"]
                for i, o in enumerate(outs):
                    if self.nodes[o].shape[1:] != target:
                        ca, _ = self.resolve(
                            crop,
                            {"size": (target, c.span), "center": (True, c.span)},
                            inner,
                            self.nodes[o].shape,
                            c.span,
                        )
                        outs[i] = self.layer(crop, ca, (o,), c.span, inner, "crop")
                shapes = [self.nodes[o].shape for o in outs]
        try:
            y = kind.combine(a, shapes, _Texts(labels))
        except LayerError as err:
            raise self._layer_error(err, c.span, {}, env) from None
        return self._add_node(kind.name, name, a, tuple(outs), y, 0, 0, 0, 0, None, c.span, env)

    def _shortcut(self, mode: str, cur: int, body: int, c: ast.Call, env: Env) -> int:
        x, y = self.nodes[cur].shape, self.nodes[body].shape
        if mode in ("auto", "identity", "pad") and x == y:
            return cur
        if mode == "identity":
            raise CnnError(
                f"residual(shortcut=identity) needs the body to keep the shape; input {fmt_shape(x)}, "
                f"body gives {fmt_shape(y)}",
                c.span,
                code="E071",
            )
        if len(x) != len(y) or len(x) < 2:
            raise CnnError(
                f"residual: cannot build a shortcut from {fmt_shape(x)} to {fmt_shape(y)}", c.span, code="E071"
            )
        stride = []
        for w, target in zip(x[1:], y[1:]):
            s = next((s for s in range(1, w + 1) if window_out(w, 1, s, 0, 0) == target), None)
            if s is None:
                raise CnnError(
                    f"residual: no strided shortcut maps {fmt_shape(x)} to the body's {fmt_shape(y)}",
                    c.span,
                    code="E071",
                )
            stride.append(s)
        stride = tuple(stride)
        if mode == "pad":
            kind = CATALOGUE["shortcut_pad"]
            a, _ = self.resolve(kind, {"stride": (stride, c.span), "channels": (y[0], c.span)}, env, x, c.span)
            return self.layer(kind, a, (cur,), c.span, env, "shortcut")
        conv = CATALOGUE["conv"]
        a, _ = self.resolve(
            conv, {"filters": (y[0], c.span), "size": (1, c.span), "stride": (stride, c.span)}, env, x, c.span
        )
        out = self.layer(conv, a, (cur,), c.span, env, "shortcut")
        if mode == "auto":
            bn = CATALOGUE["bn"]
            b, _ = self.resolve(bn, {}, env, self.nodes[out].shape, c.span)
            out = self.layer(bn, b, (out,), c.span, env, "shortcut_bn")
        return out


class LabelRules:
    def _bind_label(self, label: str, value: int, span: Span, env: Env, names_layer: bool = True) -> None:
        old = env.scope.labels.get(label)
        if old is not None and old[1] != span:
            raise CnnError(f"label '{label}' is defined twice", span, notes=[("first defined", old[1])], code="E022")
        env.scope.labels[label] = (value, span)
        if not names_layer:
            self.unnamed_labels[(id(env.scope), label)] = span
        self.label_homes.setdefault(label, env.scope.prefix)

    def label_value(self, name: str, span: Span, env: Env) -> int:
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
        home = self.label_homes.get(name)
        if home is not None and home != env.scope.prefix:
            where = f"inside block instance {home.rstrip('.')}" if home else "at the network level"
            notes.append((f"a label '{name}' exists {where}; labels are local to their block", None))
        raise CnnError(f"unknown label @{name}{did_you_mean(name, env.scope.labels)}", span, notes=notes, code="E020")

    def _unused_labels(self) -> None:
        """W300 for a label that nothing reads and that names no layer.

        A label on a layer or block call names it (``conv1: conv 96/11/4`` is how AlexNet
        names its layers), so it is never unused. A label on ``_``, ``@x``, a group or a
        repeat body names nothing; if no ``@label`` reads it either, it is dead text."""
        seen = set()
        for key, span in self.unnamed_labels.items():
            if key in self.referenced or span in seen:
                continue
            seen.add(span)  # once per source position, not once per block instance
            name = key[1]
            self.warnings.append(
                Diagnostic(
                    "warning",
                    f"label '{name}' is never used: no @{name} reads it and it names no layer",
                    span,
                    [],
                    "W300",
                )
            )

    def _outputs(self, st: ast.Output, env: Env) -> None:
        seen = {n for n, _, _ in self.outputs}
        for name, span in st.names:
            if name in seen:
                raise CnnError(f"output '{name}' is listed twice", span, code="E056")
            seen.add(name)
            self.outputs.append((name, self.label_value(name, span, env), span))


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


class _Texts:
    """Branch descriptions for combinator messages, read from the source only when needed."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        for item in self.items:
            yield item if isinstance(item, str) else (source_text(item, 40) or "_")
