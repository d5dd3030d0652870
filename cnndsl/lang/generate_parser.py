"""Writes cnndsl/lang/standalone.py: the LALR parser of grammars/net.lark, generated once.

    python -m cnndsl.lang.generate_parser          # after any change to grammars/net.lark

Building a Lark parser from the grammar (LALR tables, the contextual lexer's terminal
sets, strict mode's collision check of every pair of terminals) takes about 0.1 s; doing
it at every start was a third of ``cnndsl info``'s time. The generated module is Lark's
stand-alone parser (``lark.tools.standalone``): Lark's run-time code and the tables as a
Python literal, so nothing is built, cached, pickled or read at start-up and the package
needs no Lark at run time (Lark is needed only to run this script and its test).

The grammar is built with the options the style guide asks for (LALR, contextual lexer,
``strict=True``, ``propagate_positions``, ``maybe_placeholders``), with the post-lexer's
``always_accept`` terminals kept. Strict mode is a check of the grammar, done here at
generation; the tables are written with ``strict`` off so that the run-time lexer does
not repeat it (it would need the interegular library at every start). The post-lexer is
not serialised: :func:`cnndsl.lang.parser.parser` passes it when loading.
The generated file records the SHA-256 of the grammar it was made from:
tests/test_startup.py fails when grammars/net.lark has changed since (the LALR state
numbering is not the same from one generation to the next, so the text itself is not
compared), and checks that the generated parser and one built from the grammar now give
the same trees and the same syntax errors on every network and corpus file.

The generated file carries Lark's stand-alone notice: its code is under the Mozilla
Public License 2.0 (the rest of cnndsl is MIT; MPL-2.0 applies file by file).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "standalone.py"
HEADER = (
    "# cnndsl: generated from grammars/net.lark by `python -m cnndsl.lang.generate_parser`; do not edit.\n"
    "# grammar sha256: {digest}\n"
    "# ruff: noqa\n"
    "from __future__ import annotations  # cnndsl: annotations are not evaluated at import (start-up)\n"
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


def generate() -> str:
    """The text of standalone.py for the grammar as it is now (needs Lark)."""
    from lark import Lark
    from lark.tools.standalone import gen_standalone

    from cnndsl.lang.parser import _Newlines, grammar_text

    lark = Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        postlex=_Newlines(),  # keeps its always_accept terminals in the tables
        propagate_positions=True,
        maybe_placeholders=True,
        strict=True,  # raises here on any shift/reduce conflict or terminal collision
    )
    lark.options.postlex = None  # given at load time (an object, not data)
    lark.options.strict = False  # checked above; not again at every start
    out = io.StringIO()
    gen_standalone(lark, out=out)
    text = out.getvalue()
    for old, new in _PATCHES:
        if text.count(old) != 1:
            raise SystemExit(f"generate_parser: Lark {lark_version()}'s stand-alone text has changed; revise _PATCHES")
        text = text.replace(old, new)
    return HEADER.format(digest=grammar_digest()) + text + _keywords_text(lark.lexer_conf)


def _keywords_text(conf) -> str:
    """The keywords NAME matches, as :mod:`cnndsl.lang.lexing` finds them from the terminals (1 ms
    of compiling each terminal's regex at every start otherwise): written with the tables."""
    from lark.lexer import PatternRE, PatternStr, _get_match

    from cnndsl.lang import lexing

    terminals = sorted(conf.terminals, key=lexing._order)
    patterns = (PatternStr, PatternRE, _get_match)  # Lark's own classes here, not the generated module's
    _, keywords = lexing._without_keywords(terminals, conf.g_regex_flags, conf.re_module, patterns)
    if "NAME" not in keywords:
        raise SystemExit("generate_parser: NAME matches no keyword of the grammar; revise cnndsl.lang.lexing")
    ordered = {name: dict(sorted(words.items())) for name, words in sorted(keywords.items())}
    return (
        "\n# cnndsl: the keywords each regex terminal is retyped to (cnndsl.lang.lexing), found when generating\n"
        f"KEYWORDS = {ordered!r}\n"
    )


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
    # builds its per-state lexers and a parser's state for error recovery, neither on a parse that
    # the one-regex lexer tokenises (cnndsl.lang.lexing)
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

    text = generate()
    write_atomic(OUT, lambda f: f.write(text.encode("utf-8")))
    print(f"wrote {OUT} ({len(text):,} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
