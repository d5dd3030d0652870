"""``cnndsl fmt``: the canonical layout of a .net file, comments kept.

The formatter works on the token stream with positions, not on the syntax tree
(Lark drops comments): it keeps every token and every line break the user wrote,
and decides only the whitespace. A file must parse before it is formatted, and
the result is parsed again and compared with the original (same syntax tree, same
tokens, same comments), so formatting can never change what a file means.

    >>> format_text("network n{\\ninput 3x8x8\\n  conv 8/3->relu   # first\\n}\\n")
    'network n {\\n    input 3x8x8\\n    conv 8/3 -> relu                     # first\\n}\\n'

The style is described in docs/fmt.md.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from cnndsl.errors import CnnError, Span
from cnndsl.files import net_files, write_atomic
from cnndsl.lang.parser import keywords
from cnndsl.records import fields_of, is_record

INDENT = 4
# Trailing comments start at this column (counting from 1) at the earliest, as in LANGUAGE.md's examples.
COMMENT_COLUMN = 42

# The terminals of grammars/net.lark, in the order its lexer prefers them.
_TOKEN = re.compile(
    r"""(?P<NL>\r?\n)
      | (?P<WS>[ \t\f\r]+)
      | (?P<COMMENT>\#[^\n]*)
      | (?P<WORD>"[^"\n]*"
               | [0-9]+(?:x[0-9]+)+
               | [0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)? | \.[0-9]+(?:[eE][+-]?[0-9]+)? | [0-9]+[eE][+-]?[0-9]+
               | [0-9]+
               | [A-Za-z_][A-Za-z0-9_]*)
      | (?P<OP>->|//|==|!=|<=|>=|[<>{}()\[\],:=/*@+\-.%;])""",
    re.VERBOSE,
)
_OPENERS = {"{": "}", "(": ")", "[": "]"}
# operators spaced on both sides (+ and - too, where they are not signs)
_BINARY = {"->", "*", "//", "%", ";", "==", "!=", "<", "<=", ">", ">="}
_CLOSERS = {"}", ")", "]"}


@dataclasses.dataclass
class _Tok:
    kind: str  # NL, COMMENT, WORD or OP
    text: str


def tokenize(text: str) -> list[_Tok]:
    """The tokens of a file that parses, comments and newlines included, whitespace dropped."""
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # unreachable for a file that parsed; the caller checks the result anyway
            raise AssertionError(f"cnndsl fmt: cannot read the character {text[pos]!r}")  # a bug
        if m.lastgroup != "WS":
            out.append(_Tok(m.lastgroup, m.group().rstrip() if m.lastgroup == "COMMENT" else m.group()))
        pos = m.end()
    return out


def _line_breaks(toks: list[_Tok]) -> list[_Tok]:
    """The line breaks fmt adds: one statement per line in a body laid out on lines.

    A network's or block's body always starts on the line after its '{' and its '}'
    stands on a line of its own. A ';' between statements of such a body (or of any
    body whose '{' ends its line) becomes a line break; in a body written on one line
    (``add { _ ; conv 8/3 }``) the ';' stays. Added breaks are NL tokens with empty
    text, never blank lines."""
    out: list[_Tok] = []
    stack: list[bool] = []  # per open bracket: is it a '{' whose body is laid out on lines?
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "OP" and t.text in _OPENERS:
            definition = t.text == "{" and not stack  # only a network or block opens '{' at the top
            stack.append(t.text == "{" and (definition or nxt is None or nxt.kind in ("NL", "COMMENT")))
            out.append(t)
            if definition and nxt is not None and nxt.kind not in ("NL", "COMMENT"):
                out.append(_Tok("NL", ""))
            continue
        if t.kind == "OP" and t.text in _CLOSERS and stack:
            lines = stack.pop()
            if lines and t.text == "}" and out and out[-1].kind != "NL":
                out.append(_Tok("NL", ""))
        elif t.kind == "OP" and t.text == ";" and (not stack or stack[-1]):
            if nxt is not None and nxt.kind not in ("NL", "COMMENT"):
                out.append(_Tok("NL", ""))  # the next statement on a line of its own
            continue  # a ';' ending a line is dropped: its trailing comment stays trailing
        out.append(t)
    return out


@dataclasses.dataclass
class _Open:
    text: str  # '{', '(' or '['
    inner: int | None  # indentation of the lines inside it (None until known)
    closer: int  # indentation of a line that starts with its closer
    stmt_indent: int  # the enclosing body's statement indentation, restored when it closes


@dataclasses.dataclass
class _Line:
    kind: str  # "code", "comment" or "blank"
    indent: int = 0
    code: str = ""
    comment: str | None = None
    blank_ok: bool = True  # a blank line here separates statements (not inside a statement)


def _matches(toks: list[_Tok]) -> dict[int, int]:
    """Index of each bracket -> index of its partner."""
    pairs, stack = {}, []
    for i, t in enumerate(toks):
        if t.kind != "OP":
            continue
        if t.text in _OPENERS:
            stack.append(i)
        elif t.text in _CLOSERS and stack:
            j = stack.pop()
            pairs[i], pairs[j] = j, i
    return pairs


class _Layout:
    """Lays out the tokens line by line, choosing indentation and spaces."""

    def __init__(self, toks: list[_Tok]):
        self.toks = toks
        self.pairs = _matches(toks)
        self.stack: list[_Open] = []
        self.lines: list[_Line] = []
        self.cont = False  # the previous code line ended with '->' or ',' in a body: the statement goes on
        self.stmt_indent = 0

    # -- indentation
    def _base(self) -> int:
        return self.stack[-1].inner if self.stack else 0

    def _in_body(self) -> bool:
        return not self.stack or self.stack[-1].text == "{"

    def _indent_for(self, first: _Tok | None) -> int:
        if first is not None and first.kind == "OP" and first.text in _CLOSERS and self.stack:
            return self.stack[-1].closer
        if not self._in_body():
            return self._base()
        return self.stmt_indent + INDENT if self.cont or self._continues(first) else self._base()

    @staticmethod
    def _continues(first: _Tok | None) -> bool:
        """A line that starts with '->' continues the statement of the line before."""
        return first is not None and first.kind == "OP" and first.text == "->"

    # -- spacing
    def _space(self, k: int) -> bool:
        """Whether a space separates token k from the token before it on the same line."""
        p, t = self.toks[k - 1], self.toks[k]
        if t.kind == "OP" and t.text in (",", ")", "]", ":", "."):
            return False
        if t.text == "}":
            return p.text != "{"
        if p.kind == "OP" and p.text in ("(", "[", ".", "@") or self.unary[k - 1]:
            return False
        if self._binary(k) or self._binary(k - 1):
            return True
        if p.text == "=" or t.text == "=":
            return self._spaced_equals(k - 1 if p.text == "=" else k)
        if p.text == "/" or t.text == "/":
            return self.expression[k]  # true division in an expression; tight between fields
        if t.text == "(" and p.kind == "WORD" and p.text not in keywords() and not p.text[0].isdigit():
            # call arguments attach to the name (inception(64, 96)); a parenthesised
            # field stays apart from the kind (conv (4 * c)/1)
            end = self.pairs.get(k, len(self.toks))
            return end + 1 < len(self.toks) and self.toks[end + 1].text == "/"
        return True

    def _binary(self, k: int) -> bool:
        t = self.toks[k]
        if t.kind != "OP":
            return False
        return t.text in _BINARY or t.text in ("+", "-") and not self.unary[k]

    def _spaced_equals(self, k: int) -> bool:
        """'=' is spaced in a table definition, a let, a fn's ``= expr`` and a parameter list;
        tight in keywords."""
        toks = self.toks
        if k >= 2 and toks[k - 2].text in ("table", "let"):
            return True
        if k >= 1 and toks[k - 1].text == ")" and self._fn_header(self.pairs.get(k - 1, 0)):
            return True
        return self.header[k]

    def _fn_header(self, open_paren: int) -> bool:
        """Whether the '(' at ``open_paren`` opens the parameters of ``fn NAME(...)``."""
        return open_paren >= 2 and self.toks[open_paren - 2].text == "fn"

    def _classify(self) -> None:
        """Per token: is it a unary sign; is it directly inside a network's, block's or fn's
        parameter list; is it in an expression (parentheses, a let, a fn) rather than between
        the fields of a layer."""
        toks = self.toks
        self.unary = [False] * len(toks)
        self.header = [False] * len(toks)
        self.expression = [False] * len(toks)
        stack: list[tuple[str, bool, bool]] = []  # (bracket, parameter list, expression inside)
        line_expr = False  # this line is a let or a fn's '= expr'
        for k, t in enumerate(toks):
            if t.kind == "NL":
                line_expr = False
            elif t.text == "let" or (
                t.text == "=" and k and toks[k - 1].text == ")" and self._fn_header(self.pairs.get(k - 1, 0))
            ):
                line_expr = True
            in_paren = line_expr or (bool(stack) and stack[-1][2])
            self.expression[k] = in_paren
            self.header[k] = bool(stack) and stack[-1][1]
            if t.kind != "OP":
                continue
            if t.text in ("+", "-"):
                # binary only inside parentheses after an operand: fields outside are atoms (leaky_relu -0.1)
                p = toks[k - 1] if k else None
                operand = p is not None and (
                    p.kind == "WORD" and p.text not in keywords() - {"true", "false"} or p.text in (")", "]")
                )
                self.unary[k] = not (in_paren and operand)
            elif t.text in _OPENERS:
                header = t.text == "(" and k >= 2 and toks[k - 2].text in ("network", "block", "fn")
                # a fn's body is an expression; so is anything in parentheses
                fn_body = t.text == "{" and k and toks[k - 1].text == ")" and self._fn_header(self.pairs.get(k - 1, 0))
                stack.append((t.text, header, t.text == "(" or bool(fn_body)))
            elif t.text in _CLOSERS and stack:
                stack.pop()

    # -- the walk
    def run(self) -> list[_Line]:
        self._classify()
        toks = self.toks
        i = 0
        while i < len(toks):
            j = i
            while j < len(toks) and toks[j].kind != "NL":
                j += 1
            # an empty line is a blank line only between two newlines of the source (not added ones)
            real = (i == 0 or toks[i - 1].text != "") and (j == len(toks) or toks[j].text != "")
            self._line(i, j, real)
            i = j + 1
        return self.lines

    def _line(self, start: int, end: int, real: bool) -> None:
        toks = self.toks
        code_end = end
        comment = None
        if end > start and toks[end - 1].kind == "COMMENT":
            code_end = end - 1
            comment = toks[end - 1].text
        if code_end == start:
            if comment is not None:
                self.lines.append(_Line("comment", self._indent_for(None), comment=comment))
            elif real:
                self.lines.append(_Line("blank", blank_ok=self._in_body() and not self.cont))
            return
        indent = self._indent_for(toks[start])
        first = toks[start]
        if (
            self._in_body()
            and not self.cont
            and not self._continues(first)
            and not (first.kind == "OP" and first.text in _CLOSERS)
        ):
            self.stmt_indent = indent
        parts: list[str] = []
        col = indent
        pending: list[_Open] = []  # openers on this line waiting for the column of their first token
        for k in range(start, code_end):
            t = toks[k]
            if k > start and self._space(k):
                parts.append(" ")
                col += 1
            if t.kind == "OP" and t.text in _CLOSERS:
                if pending and self.stack and pending[-1] is self.stack[-1]:
                    pending.pop()
                if self.stack:
                    self.stmt_indent = self.stack.pop().stmt_indent
            elif pending:
                for o in pending:
                    o.inner = col
                    if o.text == "{":
                        self.stmt_indent = col
                pending.clear()
            parts.append(t.text)
            col += len(t.text)
            if t.kind == "OP" and t.text in _OPENERS:
                o = _Open(t.text, None, col - 1, self.stmt_indent)
                self.stack.append(o)
                pending.append(o)
        for o in pending:  # openers ending the line: their contents go on the next lines, indented
            o.inner = indent + INDENT
            o.closer = indent
            if o.text == "{":
                self.stmt_indent = o.inner
        last = toks[code_end - 1]
        self.cont = last.kind == "OP" and last.text in ("->", ",") and self._in_body()
        self.lines.append(_Line("code", indent, "".join(parts), comment))


def _render(lines: list[_Line]) -> str:
    # blank lines: at most one, only between statements, none after '{' or before '}'
    kept: list[_Line] = []
    for ln in lines:
        if ln.kind == "blank":
            if not ln.blank_ok or not kept or kept[-1].kind == "blank":
                continue
            prev = kept[-1]
            if prev.kind == "code" and prev.code.endswith(("{", "(", "[")):
                continue
        elif ln.kind == "code" and ln.code[:1] in _CLOSERS and kept and kept[-1].kind == "blank":
            kept.pop()
        kept.append(ln)
    while kept and kept[-1].kind == "blank":
        kept.pop()
    # trailing comments of consecutive lines share a column
    columns: dict[int, int] = {}
    run: list[int] = []
    for idx in range(len(kept) + 1):
        ln = kept[idx] if idx < len(kept) else None
        if ln is not None and ln.kind == "code" and ln.comment is not None:
            run.append(idx)
            continue
        if run:
            col = max(COMMENT_COLUMN - 1, max(kept[r].indent + len(kept[r].code) + 2 for r in run))
            for r in run:
                columns[r] = col
            run = []
    out = []
    for idx, ln in enumerate(kept):
        if ln.kind == "blank":
            out.append("")
        elif ln.kind == "comment":
            out.append(" " * ln.indent + ln.comment)
        else:
            text = " " * ln.indent + ln.code
            if ln.comment is not None:
                text = text.ljust(columns[idx]) + ln.comment
            out.append(text)
    return "\n".join(out) + "\n" if out else ""


def _strip_spans(node):
    """The syntax tree without positions, for comparing a file with its formatted text."""
    if isinstance(node, Span):
        return None
    if isinstance(node, (list, tuple)):
        return tuple(_strip_spans(x) for x in node)
    if is_record(node):
        return (type(node).__name__,) + tuple(_strip_spans(getattr(node, f)) for f in fields_of(node) if f != "file")
    return (type(node).__name__, node)


def _meaningful(toks: list[_Tok]) -> list[str]:
    return [t.text for t in toks if t.kind != "NL" and t.text != ";"]  # fmt may turn ';' into a line break


def format_text(text: str, filename: str = "<string>") -> str:
    """The canonical layout of ``text``; a syntax error is a :class:`CnnError` (E001).

    >>> format_text("table t = [1,2 ,3]")
    'table t = [1, 2, 3]\\n'
    """
    from cnndsl.lang.parser import parse_text

    before = parse_text(text, filename)
    toks = tokenize(text)
    result = _render(_Layout(_line_breaks(toks)).run())
    # The guarantee: same tokens, same comments, same syntax tree. A failure is a bug in
    # the formatter; the file is then left as it is.
    after_toks = tokenize(result)
    same = _meaningful(after_toks) == _meaningful(toks)
    if same:
        try:
            after = parse_text(result, filename)
        except CnnError:
            same = False
        else:
            same = _strip_spans(after.items) == _strip_spans(before.items)
        from cnndsl.errors import remember_source

        remember_source(filename, text)  # diagnostics quote the user's file, not the formatted text
    if not same:
        # a bug in the formatter: the CLI reports an internal error (exit 3) and writes nothing
        raise AssertionError(f"cnndsl fmt: formatting {filename} would change its meaning; it is left as it is")
    return result


# ---- the command ---------------------------------------------------------------
def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8, LF line ends) atomically, keeping its mode (cnndsl.files)."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def format_paths(paths: list[str], check: bool, print_diagnostic) -> int:
    """``cnndsl fmt [--check] FILE...``: returns the exit status (0, or 1 on an error or a change under --check)."""
    from cnndsl.lang.modules import read_source

    if paths == ["-"]:
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise CnnError(f"cannot read <stdin>: it is not UTF-8 text (byte {err.start})", code="E042") from None
        result = format_text(text, "<stdin>")
        if check:
            return 1 if result != text else 0
        sys.stdout.write(result)
        return 0
    if "-" in paths:
        raise CnnError("cnndsl fmt: '-' (standard input) cannot be mixed with files", code="E202")
    failed = changed = unchanged = 0
    for path in net_files(paths, "cnndsl fmt"):
        shown = str(path)
        try:
            text = read_source(path, shown)
            result = format_text(text, shown)
            if result == text:
                unchanged += 1
                continue
            changed += 1
            if check:
                print(f"would reformat {shown}")
            else:
                write_text_atomic(path, result)
                print(f"reformatted {shown}")
        except CnnError as err:
            failed += 1
            print_diagnostic(err.diagnostic)

    def n(k):
        return f"{k} file{'s' if k != 1 else ''}"

    summary = [f"{n(changed)} {'would be ' if check else ''}reformatted", f"{n(unchanged)} unchanged"]
    if failed:
        summary.append(f"{n(failed)} with errors")
    print(", ".join(summary), file=sys.stderr)
    return 1 if failed or (check and changed) else 0
