"""A call's arguments: fields and keywords bound to a kind's specs, ``default`` statements
applied, every value coerced to its canonical form (:func:`cnndsl.layers.coerce`)."""

from __future__ import annotations

from cnndsl.errors import CnnError, Span, did_you_mean, source_text
from cnndsl.ir.scope import Env
from cnndsl.lang import tree as ast
from cnndsl.layers import PUBLIC, LayerError, Symbol, coerce
from cnndsl.layers.arith import fmt_shape
from cnndsl.layers.base import REQUIRED


def bind_arguments(c: ast.Call, kind, env: Env, x: tuple, evaluate):
    """Positional fields and keywords of a call, checked and coerced; ``evaluate(expr, env)``
    gives an expression's value. Returns (arguments, their spans)."""
    allowed = kind.all_args()
    for _, span in c.stray:
        raise CnnError(
            f"unexpected field '{source_text(span)}'; fields are separated by '/' (conv 64/3/1/1) "
            "and keywords are written name=value",
            span,
            code="E013",
        )
    values: dict = {}
    positional = list(c.positional)
    flags = []
    # A bare word in the field list that is a boolean keyword (maxpool 2 ceil) is a flag.
    while positional and isinstance(positional[-1], ast.Name):
        word = positional[-1].id
        spec = allowed.get(word)
        if spec is not None and spec.type == "bool" and word not in env.scope.params:
            flags.append(ast.Arg(word, None, positional.pop().span))
        else:
            break
    if len(positional) > len(kind.positional):
        names = "/".join(n for n, _ in kind.positional) or "no fields"
        extra = positional[len(kind.positional)]
        raise CnnError(
            f"{_shown(c, kind)} takes at most {len(kind.positional)} field{'s' if len(kind.positional) != 1 else ''} "
            f"({names}); received {len(positional)}",
            extra.span,
            code="E014",
        )
    for (name, _), expr in zip(kind.positional, positional):
        values[name] = (evaluate(expr, env), expr.span)
    for arg in list(c.keywords) + flags:
        spec = allowed.get(arg.name)
        if spec is None:
            raise CnnError(
                f"{_shown(c, kind)} has no keyword '{arg.name}'{_keyword_hint(c, arg, allowed)}", arg.span, code="E011"
            )
        if arg.name in values:
            raise CnnError(f"{arg.name} is given twice", arg.span, code="E015")
        if arg.value is None and spec.type != "bool":
            raise CnnError(f"keyword {arg.name} needs a value: {arg.name}=...", arg.span, code="E016")
        values[arg.name] = (True if arg.value is None else evaluate(arg.value, env), arg.span)
    return resolve(kind, values, env, x, c.span)


def _keyword_hint(c: ast.Call, arg: ast.Arg, allowed) -> str:
    """After "conv has no keyword 'activation'": an activation given as a keyword (Keras's
    ``activation='relu'``) is a step of the chain; otherwise the closest keyword."""
    value = arg.value
    if isinstance(value, ast.Name) and value.id in PUBLIC and not PUBLIC[value.id].keywords.get(arg.name):
        call = source_text(c.span).replace(source_text(arg.span), "").strip()
        return f"; {value.id} is a layer of its own, chained after: {' '.join(call.split())} -> {value.id}"
    return did_you_mean(arg.name, allowed)


def resolve(kind, values: dict, env: Env, x: tuple, span: Span):
    """Apply `default` statements and the kind's defaults; coerce every argument."""
    for name, pair in env.defaults.get(kind.name, {}).items():
        values.setdefault(name, pair)
    rank = len(x) - 1
    if kind.spatial and rank < 1:
        raise CnnError(
            f"{source_text(span) or kind.name} needs an input with spatial axes (CxL, CxHxW or CxDxHxW); "
            f"received {fmt_shape(x)}",
            span,
            code="E070",
        )
    a, spans = {}, {}
    for name, spec in kind.all_args().items():
        if name in values:
            value, vspan = values[name]
            spans[name] = vspan
        elif spec.default is REQUIRED:
            fields = "/".join(n for n, _ in kind.positional)
            raise CnnError(
                f"{kind.name} needs {name}" + (f": {kind.name} {fields}" if fields else ""), span, code="E017"
            )
        else:
            value, vspan = spec.default, span
        if value is None:
            a[name] = None
            continue
        try:
            a[name] = coerce(spec, name, value, rank)
        except LayerError as err:
            hint = ""
            if isinstance(value, Symbol) and spec.type not in ("enum", "pad"):
                written = source_text(vspan)
                if value.name in PUBLIC or value.name in env.scope.module.blocks:
                    hint = f" ('{written}' holds the layer kind or block '{value.name}', not a value)"
                elif value.name.lower() in ("true", "false"):  # Python's True and False
                    hint = f" (unknown name '{value.name}'; did you mean '{value.name.lower()}'?)"
                else:
                    names = tuple(env.lets) + tuple(env.scope.params) + tuple(env.scope.module.tables)
                    hint = f" (unknown name '{value.name}'{did_you_mean(value.name, names)})"
            raise CnnError(err.message + hint, vspan, code="E018") from None
    return a, spans


def _shown(c: ast.Call, kind) -> str:
    """The kind as the message names it: ``relu``, or ``act (relu)`` for a parameter holding it."""
    return kind.name if kind.name == c.kind else f"{c.kind} ({kind.name})"
