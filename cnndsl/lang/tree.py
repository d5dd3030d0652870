"""The syntax tree of a .net file: plain immutable data with spans.

Built by :mod:`cnndsl.lang.parser` from Lark's parse tree; consumed by
:mod:`cnndsl.ir.elaborate`. Expressions are evaluated there, not here.
"""

from __future__ import annotations

from cnndsl.errors import Span
from cnndsl.records import record


# ---- expressions -------------------------------------------------------------
@record(frozen=True, slots=True)
class Num:
    value: int | float
    span: Span


@record(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span


@record(frozen=True, slots=True)
class Dims:
    value: tuple[int, ...]
    span: Span


@record(frozen=True, slots=True)
class Name:
    id: str
    span: Span


@record(frozen=True, slots=True)
class InRef:
    """``in.c``, ``in.h`` ...: the shape of the value entering the block or branch."""

    axis: str
    span: Span


@record(frozen=True, slots=True)
class LabelRef:
    """``@name`` used as an argument (``unpool of=@pool1``)."""

    name: str
    span: Span


@record(frozen=True, slots=True)
class BinOp:
    op: str  # + - * // %
    left: object
    right: object
    span: Span


@record(frozen=True, slots=True)
class Neg:
    operand: object
    span: Span


@record(frozen=True, slots=True)
class Compare:
    """``a < b <= c``: Python's chained comparison."""

    operands: tuple
    ops: tuple[str, ...]  # == != < <= > >=
    span: Span


@record(frozen=True, slots=True)
class BoolOp:
    op: str  # and, or (short-circuit)
    left: object
    right: object
    span: Span


@record(frozen=True, slots=True)
class Not:
    operand: object
    span: Span


@record(frozen=True, slots=True)
class IfExp:
    """``a if cond else b``."""

    cond: object
    then: object
    orelse: object
    span: Span


@record(frozen=True, slots=True)
class FnCall:
    """``max(a, b)``, ``make_divisible(c * width, d=8)``: a built-in or a ``fn``."""

    name: str
    args: tuple
    keywords: tuple  # (name, expr, span)
    span: Span
    name_span: Span


# ---- steps and statements ----------------------------------------------------
@record(frozen=True, slots=True)
class Arg:
    """One argument: positional (``name is None``) or keyword ``name=value``."""

    name: str | None
    value: object  # an expression
    span: Span


@record(frozen=True, slots=True)
class Call:
    """``NAME (args) f1/f2 kw=v { body }`` — a layer kind, combinator or block."""

    kind: str
    positional: tuple  # expressions, from (args) then /-fields
    keywords: tuple[Arg, ...]  # kw=value, flags (value None), named (args)
    body: tuple | None  # statements of a combinator body
    span: Span
    kind_span: Span
    in_parens: bool  # arguments were given in parentheses
    stray: tuple = ()  # fields after the first group that are not flags (diagnosed later)


@record(frozen=True, slots=True)
class Group:
    body: tuple
    span: Span


@record(frozen=True, slots=True)
class Ref:
    name: str
    span: Span


@record(frozen=True, slots=True)
class Identity:
    span: Span


@record(frozen=True, slots=True)
class Repeat:
    """``repeat N { body }``, ``repeat N as i { body }`` and ``step * N`` (then ``body`` is one step)."""

    count: object  # an expression
    body: tuple  # statements, or a 1-tuple holding a step for ``step * N``
    span: Span
    is_step: bool = False
    var: str | None = None  # ``as i``: the round, 0 .. N-1
    var_span: Span | None = None


@record(frozen=True, slots=True)
class If:
    """``if C { } else if C { } else { }``: the first true condition's body, else ``orelse``."""

    branches: tuple  # (condition expression, body statements)
    orelse: tuple | None
    span: Span


@record(frozen=True, slots=True)
class Let:
    """``let NAME = EXPR``: binds NAME for the statements after it in its body."""

    name: str
    value: object
    span: Span
    name_span: Span


@record(frozen=True, slots=True)
class Statement:
    label: str | None
    steps: tuple
    span: Span
    label_span: Span | None = None
    # labels before later steps of the chain: (step index, name, span)
    inner_labels: tuple = ()


@record(frozen=True, slots=True)
class Input:
    shape: tuple[int, ...]
    span: Span


@record(frozen=True, slots=True)
class Output:
    names: tuple[tuple[str, Span], ...]
    span: Span


@record(frozen=True, slots=True)
class Default:
    kind: str
    keywords: tuple[Arg, ...]
    span: Span
    kind_span: Span


# ---- definitions -------------------------------------------------------------
@record(frozen=True, slots=True)
class Param:
    name: str
    default: object | None
    span: Span


@record(frozen=True, slots=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple
    span: Span
    is_network: bool = False


@record(frozen=True, slots=True)
class FnDef:
    """``fn NAME(params) = EXPR`` or ``fn NAME(params) { let ...; EXPR }``."""

    name: str
    params: tuple[Param, ...]
    lets: tuple[Let, ...]
    result: object
    span: Span


@record(frozen=True, slots=True)
class TableDef:
    name: str
    value: list
    span: Span


@record(frozen=True, slots=True)
class Import:
    path: str
    span: Span


@record(frozen=True, slots=True)
class File:
    path: str
    items: tuple
