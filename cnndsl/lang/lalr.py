"""The parser's fast path: net.lark's LALR(1) tables (cnndsl/lang/tables.py) driven here,
building the syntax tree as it reduces.

Lark's own parser (cnndsl/lang/standalone.py) takes about 30 ms to load its tables and parse
ResNet-152's file, a quarter of ``cnndsl info``'s start-up; this driver takes about 9. It
does what Lark does, for the files it can parse:

- the lexer is one regular expression of all the terminals, in Lark's order, keywords taken
  out of NAME as Lark's contextual lexer retypes them (where the parser state accepts one).
  Each state's own lexer in Lark is that alternation restricted to the terminals the state
  accepts, in the same order, so when the first match here is a terminal the state accepts,
  Lark's lexer matches it too, with the same text; when it is not, the state's own
  alternation is compiled (once) and matched there, as Lark does;
- the post-lexer is Lark's, :func:`newlines` (newlines dropped inside
  brackets and after ``->``, ``{`` and ``,``; one added before ``}`` and at the end);
- each reduction builds its node as Lark's tree builder would and hands it to the syntax
  tree's builder (``_ToAst``) at once: children filtered and inlined as Lark's child filter
  does (``_rule``\\ s inlined, punctuation dropped, ``None`` for an absent ``[x]``),
  a ``?rule`` with one child replaced by that child, and the place of a node (line, column,
  end line, end column) spanning its first and last child, punctuation included, as Lark's
  ``propagate_positions``.

Anything else raises :class:`NotHere`: a token the parser state does not take (a syntax
error) or text no terminal of the state matches. The caller then parses with Lark, which
gives the diagnostic; it does so too when the builder raises (an integer beyond 64 bits), so
that a syntax error later in the file is the one reported, as with Lark alone.
tests/test_startup.py checks that the two give the same syntax trees and errors on every
network and corpus file, broken ones included.
"""

from __future__ import annotations

import re

from cnndsl.lang.tables import ACTIONS, ALWAYS, END, IGNORE, KEYWORDS, RULES, START, TERMINALS


def _alternation(names=None):
    """The match method of the terminals' alternation (of those in ``names``), in their order."""
    return re.compile("|".join(f"(?P<{n}>{p})" for n, p in TERMINALS if names is None or n in names)).match


_MATCH = _alternation()
_IGNORE = frozenset(IGNORE)
_FREE = _IGNORE | frozenset(ALWAYS)  # taken in every state
_BY_STATE: dict = {}  # a state's lexer, as Lark's per-state one: the terminals it accepts
_OPENERS = frozenset(("LPAR", "LSQB"))
_CLOSERS = frozenset(("RPAR", "RSQB"))
_CONTINUES = frozenset((None, "_NL", "_ARROW", "_NL_ARROW", "LBRACE", "COMMA"))  # a newline after these is dropped


def newlines(tokens, newline):
    """The post-lexer: makes '\\n' and ';' the statement separator _NL (see net.lark) in a stream
    of tokens, Lark's (:class:`cnndsl.lang.parser._Newlines`) or this module's; ``newline(tok)``
    makes the _NL it adds at ``tok``'s place (before a '}' and at the end of the file)."""
    depth = 0
    prev = None
    last = None
    for tok in tokens:
        kind = tok.type
        last = tok
        if kind == "_NL":
            if depth or prev in _CONTINUES:
                continue
            prev = "_NL"
            yield tok
            continue
        if kind in _OPENERS:
            depth += 1
        elif kind in _CLOSERS:
            depth = max(0, depth - 1)
        elif kind == "RBRACE" and prev not in ("_NL", "LBRACE"):
            yield newline(tok)
        prev = kind
        yield tok
    if prev not in (None, "_NL"):
        yield newline(last)


class NotHere(Exception):
    """The fast path does not decide this text: parse it with Lark."""


class Token(str):
    """A token: its text, its terminal's name and its place (the fields of Lark's Token that
    cnndsl reads)."""

    __slots__ = ("type", "line", "column", "end_line", "end_column")


def _token(kind, value, line, column, end_line, end_column):
    t = Token(value)
    t.type = kind
    t.line = line
    t.column = column
    t.end_line = end_line
    t.end_column = end_column
    return t


def _state_lexer(state: int):
    """The match method of Lark's lexer for ``state``: the alternation restricted to the
    terminals the state accepts (and those every state does), compiled at its first use."""
    names = frozenset(ACTIONS[state]) | _FREE
    match = _BY_STATE.get(names)
    if match is None:
        match = _BY_STATE[names] = _alternation(names)
    return match


def _not_here(place, children):
    """A node the builder has no method for (a ?rule that always has one child has none)."""
    raise NotHere


def parse(text: str, builder):
    """What ``builder``'s rule methods (``name(place, children)``) make of ``text``'s start
    rule; raises :class:`NotHere`."""
    methods = [_not_here if r[2] is None else getattr(builder, r[2], _not_here) for r in RULES]
    states = [START]
    values: list = []
    places: list = []

    def feed(kind, tok, place):
        """One token into the parser: reductions, then its shift (or the accept at the end)."""
        while True:
            code = ACTIONS[states[-1]].get(kind)
            if code is None:
                raise NotHere
            if code >= 0:
                states.append(code)
                values.append(tok)
                places.append(place)
                return None
            rule = ~code
            origin, size, name, expand1, chosen = RULES[rule]
            if size == 1 and chosen is None and (expand1 or name is None):
                # the commonest: a ?rule passing its one child on (expr -> or_test -> ... -> atom),
                # or a _rule of one symbol (_stmt, _base): the same value, or in a list, same place
                del states[-1]
                states.append(ACTIONS[states[-1]][origin])
                if name is None:
                    values[-1] = [values[-1]]
                continue
            if size:
                kids = values[-size:]
                where = places[-size:]
                del values[-size:], places[-size:], states[-size:]
                if size == 1:
                    at = where[0]
                else:
                    at = None
                    for first in where:
                        if first is not None:
                            for last in reversed(where):
                                if last is not None:
                                    break
                            at = (first[0], first[1], last[2], last[3])
                            break
            else:
                kids, at = [], None
            if chosen is None:
                children = kids
            else:
                include, trailing = chosen
                children = []
                for i, inlined, nones in include:
                    if nones:
                        children += [None] * nones
                    if inlined:
                        if children:
                            children += kids[i]
                        else:
                            children = kids[i]
                    else:
                        children.append(kids[i])
                if trailing:
                    children += [None] * trailing
            if name is None:  # an inlined _rule: its children, spliced into its parent's
                value = children
            elif expand1 and len(children) == 1:
                value = children[0]
                if type(value) is Token:  # Lark places a token by itself, not by the rule's extent
                    at = (value.line, value.column, value.end_line, value.end_column)
                elif value is None:  # and an absent [x] nowhere
                    at = None
            else:
                value = methods[rule](at, children)
            states.append(ACTIONS[states[-1]][origin])
            values.append(value)
            places.append(at)
            if kind == "$END" and states[-1] == END:
                return value

    for tok in newlines(_tokens(text, states), _newline):
        feed(tok.type, tok, (tok.line, tok.column, tok.end_line, tok.end_column))
    result = feed("$END", None, None)
    if result is None:  # pragma: no cover - $END is never shifted: an accept or NotHere
        raise NotHere
    return result


def _newline(tok):
    """The newline the post-lexer adds, at ``tok``'s place (Lark's Token.new_borrow_pos)."""
    return _token("_NL", "", tok.line, tok.column, tok.end_line, tok.end_column)


def _tokens(text: str, states: list):
    """The tokens of ``text`` as Lark's contextual lexer gives them, each lexed in the parser
    state ``states[-1]`` reached when it is asked for (a generator, as Lark's lexer is)."""
    match = _MATCH
    keywords = KEYWORDS
    pos, end = 0, len(text)
    line, line_start = 1, 0
    while pos < end:
        m = match(text, pos)
        kind = None if m is None else m.lastgroup
        if kind is None or (kind not in _FREE and kind not in ACTIONS[states[-1]]):
            # a terminal this state does not accept: what the state's own lexer reads there
            # (a newline where '->' at the end of a comment line cannot continue the line)
            m = _state_lexer(states[-1])(text, pos)
            if m is None:
                raise NotHere
            kind = m.lastgroup
        value = m.group()
        column = pos - line_start + 1
        start_line = line
        breaks = value.count("\n")
        if breaks:
            line += breaks
            line_start = pos + value.rindex("\n") + 1
        pos = m.end()
        if kind in _IGNORE:
            continue
        if kind == "NAME":
            word = keywords.get(value)
            if word is not None and word in ACTIONS[states[-1]]:
                kind = word
        yield _token(kind, value, start_line, column, line, pos - line_start + 1)
