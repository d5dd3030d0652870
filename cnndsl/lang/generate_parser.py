"""Writes the parser of grammars/net.lark, generated once:

    python -m cnndsl.lang.generate_parser          # after any change to grammars/net.lark

Building a Lark parser from the grammar (LALR tables, the contextual lexer's terminal
sets, strict mode's collision check of every pair of terminals) takes about 0.1 s; doing
it at every start was a third of ``cnndsl info``'s time. Two modules are written, so that
nothing is built, cached, pickled or read at start-up and the package needs no Lark at run
time (Lark is needed only to run this script and its test):

- cnndsl/lang/tables.py: the LALR(1) tables, the terminals in the lexer's order, the
  keywords and how each rule's node is built, as plain literals, for the driver in
  :mod:`cnndsl.lang.lalr` that parses every file it can (a few milliseconds);
- cnndsl/lang/standalone.py: Lark's stand-alone parser (``lark.tools.standalone``): Lark's
  run-time code and its own copy of the tables, loaded only for what the driver leaves to it
  (a syntax error, whose diagnostic is Lark's).

The grammar is built with the options the style guide asks for (LALR, contextual lexer,
``strict=True``, ``propagate_positions``, ``maybe_placeholders``), with the post-lexer's
``always_accept`` terminals kept. Strict mode is a check of the grammar, done here at
generation; the tables are written with ``strict`` off so that the run-time lexer does
not repeat it (it would need the interegular library at every start). The post-lexer is
not serialised: :func:`cnndsl.lang.parser.parser` passes it when loading.
Each generated file records the SHA-256 of the grammar it was made from:
tests/test_startup.py fails when grammars/net.lark has changed since (the LALR state
numbering is not the same from one generation to the next, so the text itself is not
compared), and checks that both parsers and one built from the grammar now give the same
trees and the same syntax errors on every network and corpus file.

standalone.py carries Lark's stand-alone notice: its code is under the Mozilla Public
License 2.0 (the rest of cnndsl is MIT; MPL-2.0 applies file by file).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "standalone.py"
TABLES = Path(__file__).resolve().parent / "tables.py"
HEADER = (
    "# cnndsl: generated from grammars/net.lark by `python -m cnndsl.lang.generate_parser`; do not edit.\n"
    "# grammar sha256: {digest}\n"
    "# ruff: noqa\n"
    "from __future__ import annotations  # cnndsl: annotations are not evaluated at import (start-up)\n"
)


TABLES_HEADER = (
    "# cnndsl: generated from grammars/net.lark by `python -m cnndsl.lang.generate_parser`; do not edit.\n"
    "# grammar sha256: {digest}\n"
    "# ruff: noqa\n"
    '"""The LALR(1) tables of grammars/net.lark and its lexer\'s terminals, for cnndsl.lang.lalr."""'
)


def grammar_digest() -> str:
    """The SHA-256 of grammars/net.lark as the parser reads it: recorded in the generated file."""
    import hashlib

    from cnndsl.lang.parser import grammar_text

    return hashlib.sha256(grammar_text().encode("utf-8")).hexdigest()


def recorded_digest(text: str) -> str | None:
    """The grammar digest a generated file records (None if it records none)."""
    for line in text.splitlines()[:3]:
        if line.startswith("# grammar sha256: "):
            return line.split(": ", 1)[1].strip()
    return None


def build_lark():
    """The parser of grammars/net.lark built by Lark with the style guide's options (needs Lark):
    strict mode raises here on any shift/reduce conflict or terminal collision."""
    from lark import Lark

    from cnndsl.lang.parser import _Newlines, grammar_text

    return Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        postlex=_Newlines(),  # keeps its always_accept terminals in the tables
        propagate_positions=True,
        maybe_placeholders=True,
        strict=True,
    )


def generate() -> str:
    """The text of standalone.py for the grammar as it is now (needs Lark)."""
    from lark.tools.standalone import gen_standalone

    lark = build_lark()
    lark.options.postlex = None  # given at load time (an object, not data)
    lark.options.strict = False  # checked above; not again at every start
    out = io.StringIO()
    gen_standalone(lark, out=out)
    text = out.getvalue()
    for old, new in _PATCHES:
        if text.count(old) != 1:
            raise SystemExit(f"generate_parser: Lark {lark_version()}'s stand-alone text has changed; revise _PATCHES")
        text = text.replace(old, new)
    return HEADER.format(digest=grammar_digest()) + text


def _order(terminal):
    """Lark's order of a lexer's terminals (BasicLexer.__init__)."""
    return (-terminal.priority, -terminal.pattern.max_width, -len(terminal.pattern.value), terminal.name)


def without_keywords(terminals, flags, re_module):
    """Lark's ``_create_unless`` for terminals without flags: the terminals without the keywords,
    and {"NAME": {"network": "NETWORK", ...}}, the keywords each regex terminal is retyped to (a
    string terminal that a regex terminal of its priority matches whole)."""
    from lark.lexer import PatternRE, PatternStr, _get_match

    strings = [t for t in terminals if isinstance(t.pattern, PatternStr)]
    keywords: dict = {}
    embedded = set()
    for r in terminals:
        if not isinstance(r.pattern, PatternRE):
            continue
        regexp = r.pattern.to_regexp()
        for s in strings:
            if s.priority == r.priority and s.pattern.value == _get_match(re_module, regexp, s.pattern.value, flags):
                keywords.setdefault(r.name, {})[s.pattern.value] = s.name
                embedded.add(s.name)
    return [t for t in terminals if t.name not in embedded], keywords


def _child_filter(rule) -> tuple | None:
    """Which of a rule's symbols become its children, as Lark's tree builder has them (its own
    ``maybe_create_child_filter``, with maybe_placeholders): ((index, inlined, Nones before it),
    ...) and the Nones after the last, or None where every symbol is a child as it is."""
    from lark.parse_tree_builder import ChildFilterLALR, ChildFilterLALR_NoPlaceholders, maybe_create_child_filter

    made = maybe_create_child_filter(rule.expansion, rule.options.keep_all_tokens, False, rule.options.empty_indices)
    if made is None:
        return None
    if made.func is ChildFilterLALR:
        include, trailing = made.args
        return tuple((i, int(inlined), nones) for i, inlined, nones in include), trailing
    if made.func is ChildFilterLALR_NoPlaceholders:
        (include,) = made.args
        return tuple((i, int(inlined), 0) for i, inlined in include), 0
    raise SystemExit(f"generate_parser: Lark's child filter of {rule} is new to cnndsl.lang.lalr")


def tables() -> str:
    """The text of tables.py: what :mod:`cnndsl.lang.lalr` parses with, as plain literals (needs Lark)."""
    import re as re_module

    from lark.lexer import Scanner

    from cnndsl.lang.parser import _Newlines

    lark = build_lark()
    conf = lark.lexer_conf
    if conf.g_regex_flags or conf.callbacks or any(t.pattern.flags for t in conf.terminals):
        raise SystemExit("generate_parser: a terminal with regex flags or a lexer callback; revise cnndsl.lang.lalr")
    terminals = sorted(conf.terminals, key=_order)
    kept, keywords = without_keywords(terminals, conf.g_regex_flags, re_module)
    if set(keywords) != {"NAME"}:
        raise SystemExit("generate_parser: keywords not of NAME alone; revise cnndsl.lang.lalr")
    scanner = Scanner(kept, conf.g_regex_flags, re_module, False)
    if len(scanner._mres) != 1:
        raise SystemExit("generate_parser: the terminals no longer fit one regular expression")
    patterns = tuple((t.name, t.pattern.to_regexp()) for t in kept)
    if "|".join(f"(?P<{name}>{regexp})" for name, regexp in patterns) != scanner._mres[0].pattern:
        raise SystemExit("generate_parser: Lark's scanner no longer joins the terminals as cnndsl.lang.lalr does")
    table = lark.parser.parser._parse_table
    rules = list(lark.rules)
    number = {rule: i for i, rule in enumerate(rules)}
    actions = []
    for state in range(len(table.states)):
        row = {}
        for name, (action, arg) in sorted(table.states[state].items()):
            row[str(name)] = arg if action.name == "Shift" else ~number[arg]
        actions.append(row)
    described = []
    for rule in rules:
        o = rule.options
        if o.keep_all_tokens or o.template_source or (o.expand1 and rule.origin.name.startswith("_")):
            raise SystemExit(f"generate_parser: {rule} is of a kind cnndsl.lang.lalr does not build")
        origin = str(rule.origin.name)
        name = None if origin.startswith("_") else str(rule.alias or origin)
        described.append(
            (origin, len(rule.expansion), name, int(bool(o.expand1 and not rule.alias)), _child_filter(rule))
        )
    (start,) = table.start_states.values()
    (end,) = table.end_states.values()
    lines = [
        TABLES_HEADER.format(digest=grammar_digest()),
        "# the terminals in Lark's order (priority, width, name), less the keywords NAME matches",
        "TERMINALS = (",
        *(f"    {t!r}," for t in patterns),
        ")",
        f"IGNORE = {tuple(sorted(conf.ignore))!r}",
        f"ALWAYS = {tuple(sorted(_Newlines.always_accept))!r}  # the post-lexer's, accepted in every state",
        f"KEYWORDS = {dict(sorted(keywords['NAME'].items()))!r}",
        f"START = {start}",
        f"END = {end}",
        "# (rule's symbol, its length, the _ToAst method (None: inlined), ?-rule, child filter)",
        "RULES = (",
        *(f"    {r!r}," for r in described),
        ")",
        "# per state: terminal or rule -> the state shifted or gone to (>= 0), or ~rule reduced (< 0)",
        "ACTIONS = (",
        *(f"    {row!r}," for row in actions),
        ")",
        "",
    ]
    return "\n".join(lines)


def lark_version() -> str:
    import lark

    return lark.__version__


# Start-up cost the parser does not need, taken out of Lark's stand-alone text: each is an
# exact piece of it (generate() stops if a Lark version no longer has it).
_PATCHES = (
    # for the compressed tables only, which are not used: no pickle module in a parser
    ("import pickle, zlib, base64\n", ""),
    # the `regex` module serves grammars with Unicode categories; net.lark has none (options: regex=False)
    (
        "try:\n    import regex\n    _has_regex = True\nexcept ImportError:\n    _has_regex = False\n",
        "_has_regex = False  # cnndsl: net.lark needs no Unicode categories\n",
    ),
    # typing (5 ms): the annotations are postponed (HEADER) and the names used at run time have
    # stand-ins in cnndsl/lang/hints.py
    ("from typing import (\n", "from cnndsl.lang.hints import (  # cnndsl: typing's names, without typing\n"),
    ("from typing import Generic, AnyStr\n", "from cnndsl.lang.hints import Generic, AnyStr\n"),
    # UnexpectedEOF imports Token from Lark's package (`.lexer`), which the generated module is not
    ("        from .lexer import Token\n", ""),
    # the logging module (a logger set to CRITICAL, which prints nothing we use)
    ("import logging\n", ""),
    (
        'logger: logging.Logger = logging.getLogger("lark")\nlogger.addHandler(logging.StreamHandler())\n',
        "class _Silent:  # cnndsl: Lark's logger is at CRITICAL; its debug/warning calls print nothing\n"
        "    def debug(self, *args, **kwargs):\n        pass\n\n"
        "    info = warning = error = exception = debug\n\n\n"
        "logger = _Silent()\n",
    ),
    ("logger.setLevel(logging.CRITICAL)\n", ""),
    # deserialising the tables at every start (a third of the parser's loading): a reference to an
    # object already made ({'@': n}) is looked up before anything else, and a class's namespace
    # of classes is made once, not at every object
    (
        "        namespace = getattr(cls, '__serialize_namespace__', [])\n"
        "        namespace = {c.__name__:c for c in namespace}\n"
        "\n"
        "        fields = getattr(cls, '__serialize_fields__')\n"
        "\n"
        "        if '@' in data:\n"
        "            return memo[data['@']]\n",
        "        if '@' in data:\n"
        "            return memo[data['@']]\n"
        "        namespace = cls.__dict__.get('_cnndsl_namespace')  # cnndsl: made once per class\n"
        "        if namespace is None:\n"
        "            namespace = {c.__name__:c for c in getattr(cls, '__serialize_namespace__', [])}\n"
        "            cls._cnndsl_namespace = namespace\n"
        "\n"
        "        fields = getattr(cls, '__serialize_fields__')\n",
    ),
    # the copy module (and weakref, which it imports): Lark copies a lexer's configuration when it
    # builds its per-state lexers and a parser's state for error recovery, only when it is loaded
    # for a syntax error (cnndsl.lang.lalr parses the rest)
    (
        "from copy import deepcopy\n",
        "def deepcopy(x, memo=None):  # cnndsl: the copy module when something is copied (start-up)\n"
        "    import copy as _copy\n\n    return _copy.deepcopy(x, memo)\n\n\n",
    ),
    (
        "\nfrom copy import copy\n",  # (a function imports it too, indented: that one stays)
        "\ndef copy(x):  # cnndsl: the copy module when something is copied (start-up)\n"
        "    import copy as _copy\n\n    return _copy.copy(x)\n\n\n",
    ),
    # dataclasses (and the inspect module it imports): one frozen class, TextSlice
    ("from dataclasses import dataclass\n", "from cnndsl.records import record as dataclass\n"),
    # inspect: used only when a Transformer class is decorated with v_args, which cnndsl does not do
    (
        "from inspect import getmembers, getmro\n",
        "def getmembers(obj):  # cnndsl: the inspect module only if a Transformer needs it\n"
        "    import inspect\n\n    return inspect.getmembers(obj)\n\n\n"
        "def getmro(cls):\n    return cls.__mro__\n",
    ),
)


def main() -> int:
    from cnndsl.files import write_atomic

    for path, text in ((OUT, generate()), (TABLES, tables())):
        write_atomic(path, lambda f, text=text: f.write(text.encode("utf-8")))
        print(f"wrote {path} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
