"""Lark's contextual lexer with one regular expression instead of one per parser state.

Lark's :class:`~cnndsl.lang.standalone.ContextualLexer` builds a lexer for each set of
terminals a parser state accepts (81 sets over net.lark's 299 states) and compiles, at its
first use in a process, one alternation of those terminals: about 30 compilations for a
file like ResNet-152, a tenth of ``cnndsl info``'s start-up. This lexer gives the same tokens with a single
alternation of all the terminals, compiled once:

- every state's alternation is the global one restricted to the terminals the state
  accepts, in the same order (Lark sorts both by priority, width and name), so when the
  global alternation's first match is a terminal the state accepts, the state's own
  alternation matches that terminal with the same text: that token is taken as is;
- keywords (``"network"``, ``"in"``, ``"_"`` ...) are not in the alternations: NAME
  matches them and Lark retypes the token to the keyword's terminal where the state
  accepts it (the lexer's ``unless`` callback), which this lexer does too;
- anything else (the first match is a terminal the state does not accept, such as ``//``
  where only ``/`` fits, or no terminal matches) is left to Lark's per-state lexers for
  that one token, built then: the same token or the same syntax error as Lark's.

The premise that a keyword is removed from the global alternation only because NAME
(accepted in every state) matches it is checked by tests/test_startup.py, which also
compares the token streams with Lark's own lexer on every network and corpus file.
"""

from __future__ import annotations

from cnndsl.lang import standalone as lark


def _order(terminal):
    """Lark's order of a lexer's terminals (BasicLexer.__init__)."""
    return (-terminal.priority, -terminal.pattern.max_width, -len(terminal.pattern.value), terminal.name)


def _without_keywords(terminals, flags, re_module, patterns=None):
    """Lark's ``_create_unless`` for terminals without flags, less the scanner of the keywords it
    compiles (5 ms; an equality test is the same here): the terminals without the keywords, and
    {"NAME": {"network": "NETWORK", ...}}, the keywords each regex terminal is retyped to."""
    string, regex, get_match = patterns or (lark.PatternStr, lark.PatternRE, lark._get_match)
    strings = [t for t in terminals if isinstance(t.pattern, string)]
    keywords: dict = {}
    embedded = set()
    for r in terminals:
        if not isinstance(r.pattern, regex):
            continue
        regexp = r.pattern.to_regexp()
        for s in strings:
            if s.priority == r.priority and s.pattern.value == get_match(re_module, regexp, s.pattern.value, flags):
                keywords.setdefault(r.name, {})[s.pattern.value] = s.name
                embedded.add(s.name)
    return [t for t in terminals if t.name not in embedded], keywords


class ContextualLexer(lark.ContextualLexer):
    """Drop-in for Lark's contextual lexer (passed as its ``ContextualLexer`` plugin)."""

    def __init__(self, conf, states, always_accept=()) -> None:
        self._conf = conf
        self._states = states
        self._always_accept = always_accept
        self._built = False  # Lark's per-state lexers: built at the first token they must decide
        extra = frozenset(conf.ignore) | frozenset(always_accept)
        by_set: dict = {}
        self._accepts = {}  # the names a state's lexer has (rule names in a state's keys match no terminal)
        for state, accepts in states.items():
            key = frozenset(accepts)
            names = by_set.get(key)
            if names is None:
                names = by_set[key] = key | extra
            self._accepts[state] = names
        self._ignore = frozenset(conf.ignore)
        self._fast = not conf.callbacks and not conf.use_bytes and all(not t.pattern.flags for t in conf.terminals)
        if not self._fast:  # pragma: no cover - net.lark has no terminal flags and cnndsl no lexer callbacks
            return
        terminals = sorted(conf.terminals, key=_order)
        self._newline_types = frozenset(t.name for t in terminals if lark._regexp_has_newline(t.pattern.to_regexp()))
        keywords = getattr(lark, "KEYWORDS", None)  # found when the parser was generated (start-up)
        if keywords is not None and not conf.g_regex_flags:
            embedded = {word for words in keywords.values() for word in words.values()}
            kept, self._keywords = [t for t in terminals if t.name not in embedded], keywords
        else:  # pragma: no cover - a generated parser without them
            kept, self._keywords = _without_keywords(terminals, conf.g_regex_flags, conf.re_module)
        scanner = lark.Scanner(kept, conf.g_regex_flags, conf.re_module, False)
        if len(scanner._mres) != 1:  # pragma: no cover - Python's re takes 100 groups; net.lark has ~45
            self._fast = False
            return
        self._match = scanner._mres[0].match

    def _build(self) -> None:
        super().__init__(self._conf, self._states, self._always_accept)
        self._built = True

    def _lark_token(self, lexer_state, parser_state):
        """The next token as Lark's ContextualLexer.lex finds it (EOFError at the end)."""
        if not self._built:
            self._build()
        try:
            return self.lexers[parser_state.position].next_token(lexer_state, parser_state)
        except lark.UnexpectedCharacters as e:
            try:
                last_token = lexer_state.last_token
                token = self.root_lexer.next_token(lexer_state, parser_state)
                raise lark.UnexpectedToken(
                    token,
                    e.allowed,
                    state=parser_state,
                    token_history=[last_token],
                    terminals_by_name=self.root_lexer.terminals_by_name,
                )
            except lark.UnexpectedCharacters:
                raise e from None

    def lex(self, lexer_state, parser_state):
        if not self._fast:  # pragma: no cover
            if not self._built:
                self._build()
            yield from super().lex(lexer_state, parser_state)
            return
        text = lexer_state.text.text
        end = lexer_state.text.end
        line_ctr = lexer_state.line_ctr
        match = self._match
        accepts = self._accepts
        ignore = self._ignore
        newline_types = self._newline_types
        keywords = self._keywords
        token_class = lark.Token
        while True:
            pos = line_ctr.char_pos
            if pos >= end:
                return
            allowed = accepts[parser_state.position]
            m = match(text, pos, end)
            kind = m.lastgroup if m is not None else None
            if kind is None or kind not in allowed:
                try:
                    yield self._lark_token(lexer_state, parser_state)
                except EOFError:
                    return
                continue
            value = m.group(0)
            if kind in ignore:
                line_ctr.feed(value, kind in newline_types)
                continue
            t = token_class(kind, value, pos, line_ctr.line, line_ctr.column)
            line_ctr.feed(value, kind in newline_types)
            words = keywords.get(kind)
            if words is not None:
                word = words.get(value)
                if word is not None and word in allowed:
                    t.type = word
            t.end_line = line_ctr.line
            t.end_column = line_ctr.column
            t.end_pos = line_ctr.char_pos
            lexer_state.last_token = t
            yield t
