"""Evaluating expressions: numbers, booleans, names, ``in.c``, arithmetic, comparisons,
``and``/``or``/``not``, conditional expressions and function calls — Python's rules.

Integers stay exact Python integers (only ``/`` and float operands give floats,
IEEE doubles as in Python); a value beyond ±2^63 is an error, so that every
figure fits int64 downstream (ONNX, NumPy). Booleans are not numbers here:
``true + 1`` and ``if 3`` are errors.
"""

from __future__ import annotations

import math
import operator
import re

from cnndsl.errors import CnnError, Span, did_you_mean
from cnndsl.lang import tree as ast
from cnndsl.layers import Symbol, Table
from cnndsl.records import factory, record

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


@record(frozen=True, eq=False)
class Function:
    """A ``fn`` of a file: its definition and the names its body sees (the tables and
    functions of the file that defines it)."""

    definition: ast.FnDef
    lookup: object  # name -> table or Function of the defining file, or None
    results: dict = factory(dict)  # arguments -> result (see call_function)

    @property
    def name(self) -> str:
        return self.definition.name


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_of(name: str):
    def convert(v, span):
        try:
            return {"int": int, "round": round, "floor": math.floor, "ceil": math.ceil}[name](v)
        except (OverflowError, ValueError):
            raise CnnError(f"{name}({v}): cannot convert {v} to an integer", span, code="E035") from None

    return convert


# name -> (fewest arguments, most (None: any), the function of (values, span))
BUILTINS = {
    "int": (1, 1, lambda vs, span: _int_of("int")(vs[0], span)),
    "round": (1, 1, lambda vs, span: _int_of("round")(vs[0], span)),
    "floor": (1, 1, lambda vs, span: _int_of("floor")(vs[0], span)),
    "ceil": (1, 1, lambda vs, span: _int_of("ceil")(vs[0], span)),
    "abs": (1, 1, lambda vs, span: abs(vs[0])),
    "min": (2, None, lambda vs, span: min(vs)),
    "max": (2, None, lambda vs, span: max(vs)),
}
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _check_int(value, span: Span):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        raise CnnError("integer too large: the value does not fit in 64 bits", span, code="E031")
    return value


def evaluate(expr, lookup_name, lookup_label, in_shape, calls: tuple = ()):
    """Evaluate one expression.

    ``lookup_name(name)`` returns a parameter or ``let`` value, a table or a
    :class:`Function`, or None; ``lookup_label(name, span)`` returns the value of
    ``@name``; ``in_shape`` is the shape for ``in.*`` (None where there is none,
    e.g. file-level defaults and function bodies); ``calls``: the functions being
    evaluated, outermost first (recursion is an error).
    """
    t = type(expr)
    if t is ast.Num or t is ast.Bool or t is ast.Dims:
        return expr.value
    return _evaluator(lookup_name, lookup_label, in_shape, calls)(expr)


def _evaluator(lookup_name, lookup_label, in_shape, calls: tuple):
    """One recursive closure for a whole expression tree (made once per evaluate call)."""

    def ev(expr):
        t = type(expr)
        if t is ast.Num or t is ast.Bool or t is ast.Dims:
            return expr.value  # literals beyond 64 bits are refused by the parser
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
            v = ev(expr.operand)
            if not _number(v):
                raise CnnError(f"cannot negate {_what(v)}; expected a number", expr.span, code="E032")
            return -v
        if t is ast.BinOp:
            a, b = ev(expr.left), ev(expr.right)
            for v, side in ((a, expr.left), (b, expr.right)):
                _need_number(v, side, lookup_name, "in arithmetic")
            return _arithmetic(expr.op, a, b, expr.span)
        if t is ast.Compare:
            values = [ev(expr.operands[0])]
            for op, right in zip(expr.ops, expr.operands[1:]):
                values.append(ev(right))
                a, b = values[-2], values[-1]
                if op not in ("==", "!="):
                    for v, side in ((a, expr.operands[len(values) - 2]), (b, right)):
                        _need_number(v, side, lookup_name, f"in '{op}'")
                if not _COMPARE[op](a, b):
                    return False
            return True
        if t is ast.BoolOp:
            a = _need_bool(ev(expr.left), expr.left, f"'{expr.op}' needs true or false on both sides")
            if (expr.op == "and") != a:
                return a  # and: false decides; or: true decides (the right side is not evaluated)
            return _need_bool(ev(expr.right), expr.right, f"'{expr.op}' needs true or false on both sides")
        if t is ast.Not:
            return not _need_bool(ev(expr.operand), expr.operand, "'not' needs true or false")
        if t is ast.IfExp:
            cond = _need_bool(ev(expr.cond), expr.cond, "the condition of 'x if c else y' must be true or false")
            return ev(expr.then if cond else expr.orelse)
        if t is ast.FnCall:
            return _call(expr, lookup_name, ev, calls)
        raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover

    return ev


def _arithmetic(op: str, a, b, span: Span):
    if op in ("/", "//", "%") and b == 0:
        raise CnnError(f"division by zero in '{op}'", span, code="E033")
    if op == "+":
        out = a + b
    elif op == "-":
        out = a - b
    elif op == "*":
        if isinstance(a, int) and isinstance(b, int) and a and b and abs(a).bit_length() + abs(b).bit_length() > 130:
            raise CnnError("integer too large: the value does not fit in 64 bits", span, code="E031")
        out = a * b
    elif op == "/":
        try:
            out = a / b
        except OverflowError:  # an integer beyond a double's range
            raise CnnError("number too large for a floating-point division", span, code="E031") from None
    elif op == "//":
        out = a // b
    else:
        out = a % b
    return _check_int(out, span)


def _need_number(v, side, lookup_name, where: str):
    if _number(v):
        return
    if isinstance(v, Symbol) and isinstance(side, ast.Name) and side.id != v.name:
        what = f"'{side.id}' holds the layer kind or block '{v.name}'"
    elif isinstance(v, Symbol):
        what = f"unknown name '{v.name}'{did_you_mean(v.name, _names(lookup_name))}"
    elif isinstance(v, Function):
        what = f"function {v.name} used as a value (call it: {v.name}(...))"
    else:
        what = f"{_what(v)} {where}"
    raise CnnError(f"{what}; expected a number", side.span, code="E032")


def _need_bool(v, side, message: str) -> bool:
    if isinstance(v, bool):
        return v
    shown = v.name if isinstance(v, Symbol) else str(v) if _number(v) else _what(v)
    raise CnnError(f"{message}; received {shown} (compare it: x != 0, x == true)", side.span, code="E034")


def _call(expr: ast.FnCall, lookup_name, ev, calls: tuple):
    """A built-in function or a ``fn`` of the file."""
    builtin = BUILTINS.get(expr.name)
    found = None if builtin else lookup_name(expr.name)
    if builtin is None and not isinstance(found, Function):
        functions = [n for n in _names(lookup_name) if isinstance(lookup_name(n), Function)]
        raise CnnError(
            f"unknown function '{expr.name}'{did_you_mean(expr.name, list(BUILTINS) + functions)}",
            expr.name_span,
            code="E035",
        )
    if builtin is not None:
        fewest, most, run = builtin
        n = len(expr.args)
        if expr.keywords or n < fewest or (most is not None and n > most):
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            received = f"{n}" + (f" and {len(expr.keywords)} named" if expr.keywords else "")
            raise CnnError(
                f"{expr.name}() takes {wanted} argument{'s' if wanted != '1' else ''}; received {received}",
                expr.span,
                code="E035",
            )
        values = [ev(a) for a in expr.args]
        for v, a in zip(values, expr.args):
            _need_number(v, a, lookup_name, f"in {expr.name}()")
        return _check_int(run(values, expr.span), expr.span)
    return call_function(found, [ev(a) for a in expr.args], [(k, ev(v), s) for k, v, s in expr.keywords], expr, calls)


def call_function(fn: Function, args: list, keywords: list, expr: ast.FnCall, calls: tuple):
    """Bind the arguments to ``fn``'s parameters, evaluate its ``let``s and its result.

    A function computes numbers from numbers, so a result is kept per distinct arguments
    (each value with its type: ``f(1)`` and ``f(1.0)`` may differ) and reused: EfficientNet
    calls ``make_divisible`` with the same widths hundreds of times."""
    d = fn.definition
    chain = tuple(c.name for c in calls)
    if fn.name in chain:
        cycle = " -> ".join(chain[chain.index(fn.name) :] + (fn.name,))
        raise CnnError(f"function {fn.name} calls itself: {cycle}", expr.span, code="E036")
    try:
        key = (tuple((type(v), v) for v in args), tuple((k, type(v), v) for k, v, _ in keywords))
        hash(key)
    except TypeError:  # a table or another unhashable value: not kept
        key = None
    if key is not None and key in fn.results:
        return fn.results[key]
    names = [p.name for p in d.params]
    if len(args) > len(names):
        raise CnnError(f"{_signature(fn)} takes {len(names)} arguments; received {len(args)}", expr.span, code="E035")
    local = dict(zip(names, args))
    for name, value, span in keywords:
        if name not in names:
            raise CnnError(f"{fn.name} has no parameter '{name}'{did_you_mean(name, names)}", span, code="E035")
        if name in local:
            raise CnnError(f"{name} is given twice", span, code="E035")
        local[name] = value
    lookup = _FunctionNames(local, fn.lookup, names)
    inner = calls + (fn,)
    for p in d.params:
        if p.name not in local:
            if p.default is None:
                raise CnnError(f"{_signature(fn)} needs a value for '{p.name}'", expr.span, code="E035")
            local[p.name] = evaluate(p.default, lookup, _no_label, None, inner)
    for let in d.lets:
        check_new_name(let.name, let.name_span, local, names)
        local[let.name] = evaluate(let.value, lookup, _no_label, None, inner)
    result = evaluate(d.result, lookup, _no_label, None, inner)
    if key is not None:
        fn.results[key] = result
    return result


def _signature(fn: Function) -> str:
    shown = (p.name if p.default is None else f"{p.name} = ..." for p in fn.definition.params)
    return f"{fn.name}({', '.join(shown)})"


class _FunctionNames:
    """Name lookup inside a function body: its parameters and lets, then the names of its file."""

    def __init__(self, local: dict, outer, params: list):
        self.local, self.outer, self.params = local, outer, params

    def __call__(self, name):
        return self.local[name] if name in self.local else self.outer(name)

    @property
    def names(self):  # for did-you-mean hints only
        return tuple(self.params) + tuple(getattr(self.outer, "names", ()))


def check_new_name(name: str, span: Span, bound, params) -> None:
    """``let`` and ``repeat ... as`` bind fresh names: no rebinding, no shadowing."""
    if name in params:
        raise CnnError(f"let {name}: '{name}' is a parameter here; choose another name", span, code="E037")
    if name in bound:
        raise CnnError(f"let {name}: '{name}' is already bound in this body; choose another name", span, code="E037")


def _no_label(name, span):
    raise CnnError(f"@{name} cannot be used in a function: functions compute numbers", span, code="E020")


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
    if isinstance(v, Function):
        return f"function {v.name}"
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
