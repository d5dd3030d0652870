"""The protobuf text format of Caffe's ``.prototxt`` files, read without protobuf.

Fields are ``name: value``; messages ``name { ... }`` (also ``name: { ... }`` and
``< ... >``); ``#`` starts a comment; repeated fields repeat. A file is untrusted
input: its size is bounded by :func:`cnndsl.importers.form.read_text` (16 MiB, as
``.net`` files), messages nest at most :data:`MAX_DEPTH` deep and a file holds at
most :data:`MAX_FIELDS` fields, so that nothing grows without bound; integers are
checked against the range of the proto's ``int32``/``uint32`` fields where they are
read (:meth:`Msg.int`).

Every read marks the field as used, so that a reader can report the fields it
never looked at (:meth:`Msg.unread`) instead of ignoring them in silence.
"""

from __future__ import annotations

import re

from cnndsl.errors import CnnError, Span

SYNTAX = "E243"
MAX_DEPTH = 64  # messages inside messages: Caffe's own files nest 4 deep
MAX_FIELDS = 1_000_000  # a DenseNet-264 deploy file has about 30,000
INT_RANGE = (-(2**31), 2**32 - 1)  # int32 and uint32, the integer fields of caffe.proto

_TOKEN = re.compile(
    r'\s+|#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')|(?P<punct>[{}:<>\[\],;])'
    r"|(?P<word>[A-Za-z0-9_.+\-]+)"
)


class Msg:
    """A message: fields in order, each (name, value, span); a value is a str/number or a Msg."""

    def __init__(self, span: Span, name: str = ""):
        self.span = span
        self.name = name
        self.fields: list[tuple[str, object, Span]] = []
        self.used: set[str] = set()

    def all(self, name):
        self.used.add(name)
        return [v for k, v, _ in self.fields if k == name]

    def one(self, name, default=None):
        values = self.all(name)
        return values[-1] if values else default

    def has(self, name) -> bool:
        return any(k == name for k, _, _ in self.fields)

    def sub(self, name) -> Msg:
        """The message field ``name`` (an empty one when absent): ``convolution_param { ... }``."""
        value = self.one(name)
        if value is None:
            return Msg(self.span, name)
        if not isinstance(value, Msg):
            raise CnnError(f"{name} must be a message: {name} {{ ... }}", self.span_of(name), code=SYNTAX)
        return value

    def span_of(self, name):
        return next((s for k, _, s in self.fields if k == name), self.span)

    def word(self, name, default: str) -> str:
        """An enum or bool field as text (``MAX``, ``true``)."""
        return str(self.one(name, default))

    def flag(self, name, default: bool) -> bool:
        value = self.word(name, "true" if default else "false")
        if value not in ("true", "false"):
            raise CnnError(f"{name} must be true or false; received {name}: {value}", self.span_of(name), code=SYNTAX)
        return value == "true"

    def number(self, name, default, type_=float):
        """A numeric field, with a diagnostic at the value when it is not a number (or out of range)."""
        value = self.one(name, default)
        return _check_number(self, name, value, type_)

    def int(self, name, default):
        return self.number(name, default, int)

    def ints(self, name) -> list[int]:
        return [_check_number(self, name, v, int) for v in self.all(name)]

    def unread(self, prefix: str = ""):
        """(path, span) of every field never read, looking into the messages that were read."""
        for k, v, span in self.fields:
            path = f"{prefix}{k}"
            if k not in self.used:
                yield path, span
            elif isinstance(v, Msg):
                yield from v.unread(path + ".")


def _check_number(msg: Msg, name: str, value, type_):
    if isinstance(value, (Msg, bool)) or (type_ is int and isinstance(value, float)):
        value = str(value) if not isinstance(value, Msg) else "{ ... }"
    try:
        number = type_(value)
    except (TypeError, ValueError):
        what = "an integer" if type_ is int else "a number"
        raise CnnError(f"{name} must be {what}; received {name}: {value}", msg.span_of(name), code=SYNTAX) from None
    if type_ is int and not INT_RANGE[0] <= number <= INT_RANGE[1]:
        raise CnnError(
            f"{name}: {number} is out of the range of a Caffe integer field ({INT_RANGE[0]} to {INT_RANGE[1]})",
            msg.span_of(name),
            code=SYNTAX,
        )
    return number


def _tokens(text: str, file: str):
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            col = pos - line_start + 1
            raise CnnError(f"unexpected character {text[pos]!r}", Span(file, line, col, line, col + 1), code=SYNTAX)
        kind = m.lastgroup
        if kind:
            col = m.start() - line_start + 1
            yield kind, m.group(kind), Span(file, line, col, line, col + len(m.group(kind)))
        chunk = m.group(0)
        if "\n" in chunk:
            line += chunk.count("\n")
            line_start = m.start() + chunk.rindex("\n") + 1
        pos = m.end()
    yield "eof", "end of file", Span(file, line, pos - line_start + 1)


def parse_prototxt(text: str, file: str) -> Msg:
    """The top-level message of a prototxt text (E243 on malformed text or a limit exceeded)."""
    tokens = _tokens(text, file)
    root = Msg(Span(file, 1, 1))
    stack = [root]
    count = 0
    kind, value, span = next(tokens)
    while kind != "eof":
        if kind == "punct" and value in "}>":
            if len(stack) == 1:
                raise CnnError(f"unexpected '{value}' without a matching '{{'", span, code=SYNTAX)
            stack.pop()
            kind, value, span = next(tokens)
            continue
        if kind == "punct" and value in ",;":
            kind, value, span = next(tokens)
            continue
        if kind != "word":
            raise CnnError(f"expected a field name; received {value!r}", span, code=SYNTAX)
        count += 1
        if count > MAX_FIELDS:
            raise CnnError(f"the file has more than {MAX_FIELDS:,} fields (the limit)", span, code=SYNTAX)
        k2, v2, s2 = next(tokens)
        if k2 == "punct" and v2 == ":":
            k2, v2, s2 = next(tokens)
        if k2 == "punct" and v2 in "{<":
            if len(stack) > MAX_DEPTH:
                raise CnnError(f"messages nested more than {MAX_DEPTH} deep (the limit)", span, code=SYNTAX)
            msg = Msg(span, value)
            stack[-1].fields.append((value, msg, span))
            stack.append(msg)
        elif k2 == "str":
            stack[-1].fields.append((value, v2[1:-1], s2))
        elif k2 == "word":
            stack[-1].fields.append((value, _number(v2), s2))
        else:
            raise CnnError(f"expected a value or '{{' after {value}; received {v2!r}", s2, code=SYNTAX)
        kind, value, span = next(tokens)
    if len(stack) > 1:
        raise CnnError(f"'{{' of {stack[-1].span.line}:{stack[-1].span.column} is never closed", span, code=SYNTAX)
    return root


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text  # an enum value: MAX, SUM, true ...
