"""Evaluating argument expressions: integers, floats, names, ``in.c`` and arithmetic.

Integers stay exact Python integers; a value beyond ±2^63 is an error, so that
every figure fits int64 downstream (ONNX, NumPy).
"""

from __future__ import annotations

import re

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.lang import tree as ast
from cnndsl.layers import Symbol, Table

INT_LIMIT = 2**63 - 1
_AXES = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}


def in_axis(axis: str, shape: tuple, span: Span) -> int:
    """``in.c`` and friends on the shape entering the block or branch."""
    if axis == "c":
        return shape[0]
    names = _AXES.get(len(shape) - 1, ())
    if axis in names:
        return shape[1 + names.index(axis)]
    have = ", ".join(f"in.{n}" for n in ("c",) + names)
    from cnndsl.layers.arith import fmt_shape

    raise CnnError(
        f"in.{axis} does not exist for the input {fmt_shape(shape)}; expected one of {have}",
        span,
        code="E030",
    )


def _check_int(value, span: Span):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        raise CnnError("integer too large: the value does not fit in 64 bits", span, code="E031")
    return value


def evaluate(expr, lookup_name, lookup_label, in_shape, _depth: int = 0):
    """Evaluate one expression.

    ``lookup_name(name)`` returns a parameter value or table, or None;
    ``lookup_label(name, span)`` returns the value of ``@name``; ``in_shape`` is
    the shape for ``in.*`` (None where there is none, e.g. file-level defaults).
    """
    t = type(expr)
    if t is ast.Num or t is ast.Bool or t is ast.Dims:
        return expr.value  # literals beyond 64 bits are refused by the parser (syntax.py)
    if t is ast.Name:
        found = lookup_name(expr.id)
        return Symbol(expr.id) if found is None else found
    if t is ast.InRef:
        if in_shape is None:
            raise CnnError(
                f"in.{expr.axis} has no value here: it is the shape entering the enclosing block or branch, "
                "and none has entered here (a network parameter, a default before input or outside a network)",
                expr.span,
                code="E030",
            )
        return in_axis(expr.axis, in_shape, expr.span)
    if t is ast.LabelRef:
        return lookup_label(expr.name, expr.span)
    if t is ast.Neg:
        v = evaluate(expr.operand, lookup_name, lookup_label, in_shape)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CnnError(f"cannot negate {_what(v)}; expected a number", expr.span, code="E032")
        return -v
    if t is ast.BinOp:
        a = evaluate(expr.left, lookup_name, lookup_label, in_shape)
        b = evaluate(expr.right, lookup_name, lookup_label, in_shape)
        for v, side in ((a, expr.left), (b, expr.right)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                hint = did_you_mean(v.name, _names(lookup_name)) if isinstance(v, Symbol) else ""
                what = f"unknown name '{v.name}'{hint}" if isinstance(v, Symbol) else f"{_what(v)} in arithmetic"
                raise CnnError(f"{what}; expected a number", side.span, code="E032")
        op = expr.op
        if op in ("//", "%") and b == 0:
            raise CnnError(f"division by zero in '{op}'", expr.span, code="E033")
        if op == "+":
            out = a + b
        elif op == "-":
            out = a - b
        elif op == "*":
            if (
                isinstance(a, int)
                and isinstance(b, int)
                and a
                and b
                and (abs(a).bit_length() + abs(b).bit_length() > 130)
            ):
                raise CnnError("integer too large: the value does not fit in 64 bits", expr.span, code="E031")
            out = a * b
        elif op == "//":
            out = a // b
        else:
            out = a % b
        return _check_int(out, expr.span)
    raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover


def _names(lookup_name):
    return getattr(lookup_name, "names", ())


def _what(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, tuple):
        return "dimensions"
    if isinstance(v, Table):
        return f"table {v.name}"
    if isinstance(v, Symbol):
        return f"the word '{v.name}'"
    return type(v).__name__


_DIMS = re.compile(r"^[0-9]+(x[0-9]+)+$")


def parse_literal(text: str):
    """A command-line value (``-D classes=10``): int, float, true/false, dims or a word."""
    s = text.strip()
    if re.fullmatch(r"[+-]?[0-9]+", s):
        return int(s)
    if s in ("true", "false"):
        return s == "true"
    if _DIMS.match(s):
        return tuple(int(v) for v in s.split("x"))
    try:
        return float(s)
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s):
        return Symbol(s)
    return None
