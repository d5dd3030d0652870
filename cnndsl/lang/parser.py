"""Text to syntax tree: the Lark parser, its post-lexer and syntax diagnostics.

>>> parse_text("network n { input 3x32x32\\n conv 16/3 -> relu }", "n.net").items[0].name
'n'
"""

from __future__ import annotations

import functools
import os
import re

from cnndsl.errors import CnnError, Span, remember_source
from cnndsl.lang import tree as ast
from cnndsl.lang.values import INT_LIMIT

# The grammar is the repository's (a checkout: regenerating the parser, its tests); an install
# runs the tables generated from it (cnndsl/lang/tables.py, cnndsl/lang/standalone.py) and does
# not need it.
GRAMMAR_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "grammars", "net.lark"
)

# What a user reads in "expected ..." instead of Lark's terminal names.
TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "DIMS": "dimensions like 3x224x224",
    "STRING": 'a "string"',
    "_NL": "end of line",
    "$END": "end of file",
    "_ARROW": "'->'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "SLASH": "'/'",
    "STAR": "'*'",
    "AT": "'@'",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "DOT": "'.'",
    "PERCENT": "'%'",
    "__ANON_0": "'//'",
    "CMP": "a comparison",
    "UNDERSCORE": "'_'",
}


class _Newlines:
    """Lark's post-lexer: :func:`cnndsl.lang.lalr.newlines` on its tokens."""

    # NAME everywhere, so that "networks" is one unexpected name, not keyword + "s";
    # RBRACE everywhere, since a newline is inserted before it (after lexing it).
    always_accept = ("_NL", "NAME", "RBRACE")

    def process(self, stream):
        from cnndsl.lang.lalr import newlines

        return newlines(stream, lambda tok: type(tok).new_borrow_pos("_NL", "", tok))


_PARSER = None


@functools.cache
def grammar_text() -> str:
    """grammars/net.lark of the checkout this package runs from."""
    if not os.path.isfile(GRAMMAR_PATH):  # pragma: no cover - an install, not a checkout
        raise RuntimeError(f"cnndsl: {GRAMMAR_PATH} is in the repository, not in an install")
    with open(GRAMMAR_PATH, encoding="utf-8") as f:
        return f.read()


@functools.cache
def keywords() -> frozenset[str]:
    """The words the grammar reserves (its lower-case literals: network, block, repeat, in,
    true ...): fmt and the importers' writer keep names off them. Read off the generated
    keyword table (a literal the lexer takes out of NAME)."""
    from cnndsl.lang.tables import KEYWORDS

    return frozenset(word for word in KEYWORDS if word.isalpha())


def parser():
    """Lark's parser of grammars/net.lark: LALR(1), its contextual lexer, positions kept.

    Generated once, by ``python -m cnndsl.lang.generate_parser`` (strict mode: no conflict, no
    terminal collision), into cnndsl/lang/standalone.py: nothing is built from the grammar, read,
    cached or unpickled at start-up. A file is parsed by :mod:`cnndsl.lang.lalr` over the same
    tables; this parser is loaded (about 20 ms) only for a file that one does not parse: a syntax
    error, whose diagnostic is Lark's (or a node that raises, checked for an earlier syntax error)."""
    global _PARSER
    if _PARSER is None:
        from cnndsl.lang.standalone import Lark_StandAlone

        _PARSER = Lark_StandAlone(postlex=_Newlines())
    return _PARSER


# Malformed examples mapped to a clearer message (Lark's match_examples); tested
# one by one in tests/test_diagnostics.py.
SYNTAX_EXAMPLES = {
    "a chain cannot end with '->'; write the next step after it": [
        "network n {\n input 3x8x8\n conv 8/3 ->\n}",
    ],
    "'}' is missing: this '{' is not closed": [
        "network n {\n input 3x8x8\n conv 8/3\n",
        "network n {\n input 3x8x8\n add { _ ; conv 8/3\n}",
    ],
    "a network needs a body in braces: network NAME(params) { input CxHxW ... }": [
        "network n\n",
        "network n(a = 1)\n",
    ],
    "a block needs parameters in parentheses and a body: block NAME(p1, p2 = 4) { ... }": [
        "block b {\n}",
        "block b\n",
    ],
    "a label needs a step after ':', as in conv1: conv 64/3": [
        "network n {\n input 3x8x8\n x:\n}",
    ],
    "input takes the shape without batch, as in input 3x224x224": [
        "network n {\n input\n}",
        "network n {\n input 3x\n}",
        "network n {\n input a\n}",
    ],
    "a parenthesised argument list is not closed": [
        "network n {\n input 3x8x8\n conv(8, 3\n}",
    ],
}


def _describe(token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line" if token.value != ";" else "';'"
    return repr(str(token.value)).replace('"', "'")


def _expected(names) -> str:
    # a newline before '->' or 'else' continues a line: the same as '->' and 'else' themselves
    names = {"_ARROW" if n == "_NL_ARROW" else "ELSE" if n == "_NL_ELSE" else n for n in names}
    shown = sorted({TOKEN_NAMES.get(n, f"'{n.lower()}'") for n in names})
    if len(shown) > 8:
        shown = shown[:8] + ["..."]
    return ", ".join(shown)


UNCLOSED = "'}' is missing: this '{' is not closed"


def _unclosed_brace(text: str) -> int | None:
    """The offset of the '{' left open, or None. Braces are matched outside comments and
    strings; a '}' that starts a line closes the brace whose line has its indentation, and
    braces opened deeper than it in between are the ones left open (the first of them is
    reported): the user's indentation says where a '}' was forgotten."""
    stack: list[tuple[int, int]] = []  # (offset, indentation of its line)
    culprit = None
    i, n = 0, len(text)
    line_start = 0
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            i = n if j < 0 else j + 1
            continue
        if ch == "\n":
            line_start = i + 1
        elif ch == "{":
            line = text[line_start:i]
            stack.append((i, len(line) - len(line.lstrip())))
        elif ch == "}":
            before = text[line_start:i]
            if before.strip() == "" and stack:
                indent = len(before)
                while len(stack) > 1 and stack[-1][1] > indent:
                    left = stack.pop()
                    culprit = left[0] if culprit is None else culprit
            if stack:
                stack.pop()
        i += 1
    if culprit is not None:
        return culprit
    return stack[-1][0] if stack else None


def _slashes_hint(text: str, pos: int) -> str:
    """What a user who wrote '//' at ``pos`` meant: a comment (C, C++, Java) or integer division."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    before = text[line_start:pos].strip()
    after = text[pos + 2 : len(text) if line_end < 0 else line_end]
    if not before or re.match(r"\s*[A-Za-z]+\s+[A-Za-z]", after):
        comment = after.strip()
        return f"comments start with '#', not '//': # {comment}" if comment else "comments start with '#', not '//'"
    return "'//' (integer division) needs parentheses: conv (in.c // 2)/1"


def _position(text: str, offset: int, filename: str) -> Span:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(filename, line, column, line, column + 1)


def _syntax_error(err, text: str, filename: str) -> CnnError:
    """The diagnostic of Lark's syntax error ``err`` (an UnexpectedInput) in ``text``."""
    from cnndsl.lang.standalone import UnexpectedCharacters, UnexpectedToken

    hint = None
    try:
        hint = err.match_examples(parser().parse, SYNTAX_EXAMPLES, use_accepts=True)
    except Exception:  # match_examples re-parses; never let it hide the real error
        hint = None
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        span = Span(filename, err.line, err.column, err.line, err.column + 1)
        what = f"unexpected character {ch!r}"
        if ch == "/" and text[err.pos_in_stream : err.pos_in_stream + 2] == "//":
            what = "unexpected '//'"
            hint = _slashes_hint(text, err.pos_in_stream)
        msg = what + (f"; expected {_expected(err.allowed)}" if err.allowed else "")
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        line = tok.line or err.line or 1
        col = tok.column or err.column or 1
        if tok.type in ("$END",) or (tok.type == "_NL" and tok.value == ""):
            span = Span(filename, line, col, line, col + 1)
        else:
            span = Span(filename, line, col, tok.end_line or line, tok.end_column or col + 1)
        what = _describe(tok)
        if tok.type == "_NL" and tok.value == "":  # inserted by the post-lexer before '}' or at the end
            pos = tok.start_pos if tok.start_pos is not None else len(text)
            what = "'}'" if text[pos : pos + 1] == "}" else "end of file"
        msg = f"unexpected {what}; expected {_expected(err.accepts or err.expected)}"
        if tok.type == "SLASH" and tok.start_pos and text[tok.start_pos - 1] == "/":
            hint = _slashes_hint(text, tok.start_pos - 1)
        elif tok.type == "__ANON_0" and tok.start_pos is not None:  # '//' where no expression goes
            hint = _slashes_hint(text, tok.start_pos)
    else:  # UnexpectedEOF
        lines = text.splitlines() or [""]
        span = Span(filename, len(lines), len(lines[-1]) + 1)
        msg = f"unexpected end of file; expected {_expected(err.expected)}"
    notes = []
    if hint == UNCLOSED or (hint is None and msg.startswith("unexpected end of file")):
        opened = _unclosed_brace(text)
        if opened is not None:  # said at the '{' left open, with where the file ends as a note
            notes.append(("the file ends with it still open", span))
            return CnnError("this '{' is not closed: '}' is missing", _position(text, opened, filename), notes, "E001")
    if hint:
        msg = f"{msg}\n  hint: {hint}"
    return CnnError(msg, span, code="E001")


def parse_text(text: str, filename: str) -> ast.File:
    """Parse one file's text into an :class:`ast.File`; raises :class:`CnnError`."""
    from cnndsl.lang import lalr  # here: python -m cnndsl.lang.generate_parser runs without the tables

    remember_source(filename, text)
    try:
        items = lalr.parse(text, _ToAst(filename))
    except (lalr.NotHere, CnnError):  # a CnnError of a node (a huge integer) after any syntax error
        items = parse_with_lark(text, filename)
    return ast.File(filename, tuple(items))


def parse_with_lark(text: str, filename: str) -> list:
    """The file's items as Lark's parser reads ``text``, or the diagnostic of its syntax error."""
    from cnndsl.lang.standalone import UnexpectedInput

    try:
        tree = parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, text, filename) from None
    return _ToAst(filename).transform(tree)


class _Else:
    """The ``else { }`` part of an if step, told apart from its ``else if`` parts."""

    def __init__(self, body):
        self.body = body


def _tok_span(file: str, tok) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


class _ToAst:
    """Parse nodes -> :mod:`cnndsl.lang.tree`; one method ``name(place, children)`` per construct,
    ``place`` the node's (line, column, end line, end column), None for an empty one.

    :mod:`cnndsl.lang.lalr` calls the methods as it reduces; :meth:`transform` walks a Lark tree
    (post-order, without recursion: deep nesting) and calls the same ones."""

    def __init__(self, filename: str):
        self.file = filename
        self.methods = {}

    def transform(self, tree):
        methods = self.methods
        order = []
        stack = [tree]
        while stack:
            t = stack.pop()
            order.append(t)
            if t is not None and not isinstance(t, str):  # a tree (tokens are strings)
                stack.extend(t.children)
        values = []
        for t in reversed(order):
            if t is not None and not isinstance(t, str):  # a tree (tokens are strings)
                n = len(t.children)
                if n:
                    children = values[-n:]
                    del values[-n:]
                else:
                    children = []
                f = methods.get(t.data)
                if f is None:
                    f = methods[t.data] = getattr(self, t.data)
                m = t.meta
                place = None if getattr(m, "empty", True) else (m.line, m.column, m.end_line, m.end_column)
                values.append(f(place, children))
            else:
                values.append(t)
        (result,) = values
        return result

    def _int(self, text, where) -> int:
        """An integer literal; one beyond 64 bits is an error (and 10,000 digits never reach int())."""
        digits = str(text).lstrip("+-").lstrip("0")
        if len(digits) > 19 or (digits and int(digits) > INT_LIMIT):
            span = where if isinstance(where, Span) else self._span(where)
            raise CnnError("integer too large: the value does not fit in 64 bits", span, code="E031")
        return int(text)

    def _span(self, place) -> Span:
        return Span(self.file, 1, 1) if place is None else Span(self.file, *place)

    # -- file level
    def start(self, place, items):
        return items

    def import_stmt(self, place, c):
        return ast.Import(str(c[0])[1:-1], self._span(place))

    def table_def(self, place, c):
        return ast.TableDef(str(c[0]), c[1], self._span(place))

    def list(self, place, c):
        return [x.value if isinstance(x, ast.Num) else x for x in c if x is not None]

    def number(self, place, c):
        tok = c[0]
        return self._int(tok, place) if tok.type == "INT" else float(tok)

    def default_stmt(self, place, c):
        items = tuple(x[1] if isinstance(x, tuple) else x for x in c[1:])
        return ast.Default(str(c[0]), items, self._span(place), _tok_span(self.file, c[0]))

    def block_def(self, place, c):
        return ast.BlockDef(str(c[0]), c[1], c[2], self._span(place))

    def network_def(self, place, c):
        return ast.BlockDef(str(c[0]), c[1] or (), c[2], self._span(place), is_network=True)

    def params(self, place, c):
        return tuple(p for p in c if p is not None)

    def param(self, place, c):
        return ast.Param(str(c[0]), c[1], self._span(place))

    def body(self, place, c):
        return tuple(c)

    def input_stmt(self, place, c):
        tok = c[0]
        shape = tuple(self._int(v, place) for v in str(tok).split("x"))
        return ast.Input(shape, self._span(place))

    def output_stmt(self, place, c):
        return ast.Output(tuple((str(t), _tok_span(self.file, t)) for t in c), self._span(place))

    # -- statements and steps
    def statement(self, place, c):
        label = c[0]
        steps = tuple(c[1::2])
        inner = tuple((i, str(tok), _tok_span(self.file, tok)) for i, tok in enumerate(c[2::2], 1) if tok is not None)
        return ast.Statement(
            str(label) if label is not None else None,
            steps,
            self._span(place),
            _tok_span(self.file, label) if label is not None else None,
            inner,
        )

    def label(self, place, c):
        return c[0]

    def let_stmt(self, place, c):
        return ast.Let(str(c[0]), c[1], self._span(place), _tok_span(self.file, c[0]))

    def fn_short(self, place, c):
        return ast.FnDef(str(c[0]), c[1], (), c[2], self._span(place))

    def fn_long(self, place, c):
        return ast.FnDef(str(c[0]), c[1], tuple(c[2:-1]), c[-1], self._span(place))

    def if_step(self, place, c):
        cond, body, *rest = c
        orelse = None
        if rest and (rest[-1] is None or isinstance(rest[-1], _Else)):
            last = rest.pop()
            orelse = last.body if last is not None else None
        return ast.If(((cond, body), *rest), orelse, self._span(place))

    def else_if(self, place, c):
        return (c[0], c[1])

    def else_body(self, place, c):
        return _Else(c[0])

    def repeated(self, place, c):
        base, count = c
        return ast.Repeat(count, (base,), self._span(place), is_step=True)

    def group(self, place, c):
        return ast.Group(c[0], self._span(place))

    def ref(self, place, c):
        return ast.Ref(str(c[0]), self._span(place))

    def identity(self, place, c):
        return ast.Identity(self._span(place))

    def repeat(self, place, c):
        count, var, body = c
        var_span = _tok_span(self.file, var) if var is not None else None
        return ast.Repeat(count, body, self._span(place), var=None if var is None else str(var), var_span=var_span)

    def count(self, place, c):
        tok = c[0]
        if isinstance(tok, str):  # a token (Lark's or cnndsl.lang.lalr's), not an expression
            span = _tok_span(self.file, tok)
            return ast.Num(self._int(tok, span), span) if tok.type == "INT" else ast.Name(str(tok), span)
        return tok

    def call(self, place, c):
        name_tok, args, *items = c
        body = items.pop() if items else None
        positional, keywords, stray = [], [], []
        if args is not None:
            for a in args:
                (keywords if a.name else positional).append(a if a.name else a.value)
        # One positional group: (args) and/or the first field, continued by '/'.
        # Anything after it is a keyword, a bare flag, or a stray field (diagnosed later).
        state = "in" if args is not None else "open"
        for kind, value, span in items:
            if kind == "kw":
                keywords.append(value)
                state = "closed"
            elif kind == "field" and state == "open":
                positional.append(value)
                state = "in"
            elif kind == "slash" and state == "in":
                positional.append(value)
            else:
                stray.append((value, span))
                state = "closed"
        # Bare names after the positional group are boolean flags (``maxpool 3/2 ceil``).
        flags = []
        rest = []
        for value, span in stray:
            if isinstance(value, ast.Name):
                flags.append(ast.Arg(value.id, None, span))
            else:
                rest.append((value, span))
        return ast.Call(
            str(name_tok),
            tuple(positional),
            tuple(keywords) + tuple(flags),
            body,
            self._span(place),
            _tok_span(self.file, name_tok),
            args is not None,
            tuple(rest),
        )

    def args(self, place, c):
        return [a for a in c if a is not None]

    def arg(self, place, c):
        return ast.Arg(None, c[0], self._span(place))

    def named_arg(self, place, c):
        return ast.Arg(str(c[0]), c[1], self._span(place))

    def field(self, place, c):
        return ("field", c[0], self._span(place))

    def slash_field(self, place, c):
        return ("slash", c[0], self._span(place))

    def kw_item(self, place, c):
        return ("kw", ast.Arg(str(c[0]), c[1], self._span(place)), self._span(place))

    def flag_item(self, place, c):
        return ast.Arg(str(c[0]), None, self._span(place))

    # -- expressions
    def int(self, place, c):
        return ast.Num(self._int(c[0], place), self._span(place))

    def float(self, place, c):
        return ast.Num(float(c[0]), self._span(place))

    def neg_int(self, place, c):
        return ast.Num(-self._int(c[0], place), self._span(place))

    def neg_float(self, place, c):
        return ast.Num(-float(c[0]), self._span(place))

    def name(self, place, c):
        return ast.Name(str(c[0]), self._span(place))

    def dims(self, place, c):
        return ast.Dims(tuple(self._int(v, place) for v in str(c[0]).split("x")), self._span(place))

    def inref(self, place, c):
        return ast.InRef(str(c[0]), self._span(place))

    def true(self, place, c):
        return ast.Bool(True, self._span(place))

    def false(self, place, c):
        return ast.Bool(False, self._span(place))

    def label_ref(self, place, c):
        return ast.LabelRef(str(c[0]), self._span(place))

    def _binop(op):  # noqa: N805 - a small factory used in the class body
        def method(self, place, c):
            return ast.BinOp(op, c[0], c[1], self._span(place))

        return method

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    truediv = _binop("/")
    floordiv = _binop("//")
    mod = _binop("%")

    def compare(self, place, c):
        return ast.Compare(tuple(c[0::2]), tuple(str(t) for t in c[1::2]), self._span(place))

    def or_(self, place, c):
        return ast.BoolOp("or", c[0], c[1], self._span(place))

    def and_(self, place, c):
        return ast.BoolOp("and", c[0], c[1], self._span(place))

    def not_(self, place, c):
        return ast.Not(c[0], self._span(place))

    def ifexp(self, place, c):
        then, cond, orelse = c
        return ast.IfExp(cond, then, orelse, self._span(place))

    def fcall(self, place, c):
        name, *items = c
        items = [x for x in items if x is not None]
        args = tuple(x for x in items if not isinstance(x, tuple))
        keywords = tuple(x for x in items if isinstance(x, tuple))
        return ast.FnCall(str(name), args, keywords, self._span(place), _tok_span(self.file, name))

    def farg(self, place, c):
        return c[0]

    def named_farg(self, place, c):
        return (str(c[0]), c[1], self._span(place))

    def neg(self, place, c):
        return ast.Neg(c[0], self._span(place))

    def unary(self, place, c):  # unary plus
        return c[0]
