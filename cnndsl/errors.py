"""Diagnostics: one error type for users, one format.

Every problem a user can cause is a :class:`CnnError` carrying a :class:`Span`.
It prints as ``file:line:col: error: message``, the source line, and a caret
under the culprit, followed by notes such as the block-call chain::

    networks/bad.net:7:5: error: conv 256/5 needs at least 5x5 input, got 256x3x3 (padding 0)
        conv 256/5
        ^~~~~~~~~~
      in block stage called at networks/bad.net:14:5

Anything that is not a ``CnnError`` escaping the compiler is a bug.
"""

from __future__ import annotations

from cnndsl.records import factory, record

# Source text of every file read so far, so that a diagnostic can quote its line.
_SOURCES: dict[str, str] = {}


_LINES: dict[str, list[str]] = {}


def remember_source(filename: str, text: str) -> None:
    _SOURCES[filename] = text
    _LINES.pop(filename, None)


def _lines(filename: str) -> list[str]:
    """The file's lines, split once (messages quote lines many times)."""
    lines = _LINES.get(filename)
    if lines is None:
        lines = _LINES[filename] = _SOURCES.get(filename, "").splitlines()
    return lines


@record(frozen=True)
class Span:
    """A region of a source file (lines and columns count from 1)."""

    file: str
    line: int
    column: int
    end_line: int = 0
    end_column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@record(frozen=False)
class Diagnostic:
    severity: str  # "error" or "warning"
    message: str
    span: Span | None = None
    notes: list[tuple[str, Span | None]] = factory(list)
    code: str = ""

    def format(self, show_code: bool = False) -> str:
        """``file:line:col: error: message``, the quoted line and notes; with ``show_code``
        (the command line) the message ends in ``[E019]``, the code to look up in docs/errors.md
        (LANGUAGE.md §9's form, with the code where compilers put their warning flags)."""
        where = f"{self.span}: " if self.span else "cnndsl: "
        code = f" [{self.code}]" if show_code and self.code else ""
        lines = [f"{where}{self.severity}: {self.message}{code}"]
        if self.span:
            lines += _quote(self.span)
        for text, span in self.notes:
            lines.append(f"  {text}" + (f" at {span}" if span else ""))
        return "\n".join(lines)

    def to_json(self) -> dict:
        """The diagnostic for editors and CI (``cnndsl check --format json``, docs/editors.md).

        Positions count from 1; the end is exclusive (the column after the culprit) and
        never missing when the start is known: a span without an end covers one character."""
        s = self.span
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            **_position(s),
            "notes": [{"message": text, **_position(span)} for text, span in self.notes],
        }


def _position(s: Span | None) -> dict:
    if s is None:
        return {"file": None, "line": None, "column": None, "end_line": None, "end_column": None}
    end_line, end_column = (s.end_line, s.end_column) if s.end_line else (s.line, s.column + 1)
    return {"file": s.file, "line": s.line, "column": s.column, "end_line": end_line, "end_column": end_column}


def _quote(span: Span) -> list[str]:
    if span.file not in _SOURCES:
        return []
    lines = _lines(span.file)
    if not 1 <= span.line <= len(lines):
        return []
    src = lines[span.line - 1].rstrip()
    col = max(1, min(span.column, len(src) + 1))
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    else:
        width = len(src) - col + 1
    width = max(1, min(width, len(src) - col + 1 if len(src) >= col else 1))
    prefix = "".join(ch if ch == "\t" else " " for ch in src[: col - 1])
    return ["    " + src, "    " + prefix + "^" + "~" * (width - 1)]


class CnnError(Exception):
    """A user-facing error: a diagnostic with a location."""

    def __init__(self, message: str, span: Span | None = None, notes=None, code: str = ""):
        super().__init__(message)
        self.diagnostic = Diagnostic("error", message, span, list(notes or []), code)

    @property
    def span(self) -> Span | None:
        return self.diagnostic.span

    def add_note(self, text: str, span: Span | None = None) -> None:  # type: ignore[override]
        self.diagnostic.notes.append((text, span))

    def __str__(self) -> str:
        return self.diagnostic.format()


def did_you_mean(word: str, choices) -> str:
    """``"; did you mean 'conv'?"`` when a close match exists, else ``""``."""
    import difflib  # only when there is an error to explain: not at every start

    close = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def source_text(span: Span, limit: int = 60) -> str:
    """The source text a span covers (first line only), for messages like ``conv 256/5``."""
    lines = _lines(span.file)
    if not 1 <= span.line <= len(lines):
        return ""
    line = lines[span.line - 1]
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    out = " ".join(line[span.column - 1 : end].split())
    return out if len(out) <= limit else out[: limit - 3] + "..."
