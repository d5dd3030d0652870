"""Start-up: the generated parser is the grammar's, and info/check import only what they use.

``cnndsl info`` on ResNet-152 as a whole process is timed by benchmarks/bench_frontend.py
(interpreter, imports, parser, work); here are the properties that keep it fast:
the parser is generated from grammars/net.lark (nothing is built at start-up) and no
module the front end does not need is imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import NETWORKS, ROOT

from cnndsl.lang import generate_parser, parser

GENERATED = (ROOT / "cnndsl" / "lang" / "standalone.py", ROOT / "cnndsl" / "lang" / "tables.py")


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_the_generated_parser_is_of_the_grammar_as_it_is(path):
    recorded = generate_parser.recorded_digest(path.read_text(encoding="utf-8"))
    assert recorded == generate_parser.grammar_digest(), (
        f"grammars/net.lark changed since cnndsl/lang/{path.name} was generated: run python -m cnndsl.lang.generate_parser"
    )


def _fresh_lark():
    """The parser built from the grammar now, with the style guide's options."""
    pytest.importorskip("lark")
    return generate_parser.build_lark()


def _shape(t):
    """A parse tree as nested tuples: rule names, token types, values and positions."""
    if hasattr(t, "data"):
        meta = t.meta
        where = None if getattr(meta, "empty", True) else (meta.line, meta.column, meta.end_line, meta.end_column)
        return (str(t.data), where, tuple(_shape(c) for c in t.children))
    if t is None:
        return None
    return (t.type, str(t), t.line, t.column)


def _outcome(p, text):
    try:
        return ("tree", _shape(p.parse(text)))
    except Exception as err:  # a syntax error: compared by kind, place, the token met and what was expected
        expected = getattr(err, "accepts", None) or getattr(err, "expected", None) or getattr(err, "allowed", None)
        token = getattr(err, "token", None)
        met = None if token is None else (token.type, str(token), token.start_pos, token.end_pos)
        return (
            type(err).__name__,
            getattr(err, "line", None),
            getattr(err, "column", None),
            met,
            sorted(expected or ()),
        )


def _texts():
    yield from sorted(NETWORKS.glob("*.net"))
    yield from sorted((ROOT / "tests" / "corpus").glob("*.net"))


def _all_texts():
    texts = [p.read_text(encoding="utf-8") for p in _texts()]
    texts += [t for examples in parser.SYNTAX_EXAMPLES.values() for t in examples]
    texts += ["network n {\n input 3x8x8\n conv 8/3 // 2\n}\n", "network n { input 3x8x8\n conv 8/3 -> }\n", ""]
    return texts


def test_the_generated_parser_parses_as_one_built_from_the_grammar():
    fresh = _fresh_lark()
    generated = parser.parser()
    texts = _all_texts()
    assert len(texts) > 30
    for text in texts:
        assert _outcome(generated, text) == _outcome(fresh, text), text[:200]


# Edits that take the lexer where a file's own text does not: terminals a state does not
# accept ('//' where only '/' fits, dimensions where an integer goes, a keyword as a name),
# characters no terminal matches, newlines before '->' and 'else', comments, strings,
# integers beyond 64 bits.
EDITS = (
    "",
    "/",
    "//",
    "x3",
    "3x",
    ".5",
    "1e3",
    "-",
    "->",
    "\n->",
    "\n else",
    "# c ->\n",
    "in",
    "_",
    "#",
    '"s"',
    "$",
    "{",
    "}",
    "(",
    "99999999999999999999",
)


def _edited(text: str, count: int):
    """``count`` edits of ``text``, each at its own place: one of EDITS replacing one character."""
    for i in range(count):
        at = (i * 7919) % max(1, len(text))
        yield text[:at] + EDITS[i % len(EDITS)] + text[at + 1 :]


def _items(build, text):
    """The syntax tree's items that ``build(text)`` gives, or the diagnostic it raises."""
    from cnndsl.errors import CnnError

    try:
        return ("items", tuple(build(text)))
    except CnnError as err:
        return ("error", str(err))


def _layouts(text: str):
    """The same file laid out otherwise: CRLF line ends, ';' for every newline, chains continued
    on the next line ('->' first), a comment ending in '->' on every line."""
    yield text.replace("\n", "\r\n")
    yield text.replace("\n", ";")
    yield text.replace(" -> ", "\n    -> ")
    yield text.replace("\n", "  # then ->\n")


def test_the_fast_parser_builds_the_syntax_tree_lark_builds(monkeypatch):
    """cnndsl/lang/lalr.py against a Lark parser built from the grammar now, on every network
    and corpus file and on broken text (the first 1,000 characters of each file, edited in 16
    places one at a time): the same syntax tree (positions included) or the same diagnostic.
    The driver decides every valid file itself; the edits also reach what it leaves to Lark."""
    from cnndsl.lang import lalr

    fresh = _fresh_lark()

    def lark_items(text):
        try:
            tree = fresh.parse(text)
        except Exception:  # a syntax error: the generated Lark parser's diagnostic (the same error: above)
            return parser.parse_with_lark(text, "t.net")
        return parser._ToAst("t.net").transform(tree)

    decided, left = [], []
    fast = lalr.parse

    def counted(text, builder):
        try:
            result = fast(text, builder)
        except lalr.NotHere:
            left.append(text)
            raise
        decided.append(text)
        return result

    monkeypatch.setattr(lalr, "parse", counted)
    whole = _all_texts()
    edited = [e for t in whole for e in _edited(t[:1000], 16)]
    laid_out = [v for p in sorted(NETWORKS.glob("*.net")) for v in _layouts(p.read_text(encoding="utf-8"))]
    assert len(edited) > 400
    for text in whole + edited + laid_out:
        assert _items(lambda t: parser.parse_text(t, "t.net").items, text) == _items(lark_items, text), text[:300]
    files = [p.read_text(encoding="utf-8") for p in _texts()]
    valid = [t for t in files if _items(lark_items, t)[0] == "items"]
    assert len(valid) > 20 and set(valid) <= set(decided)  # no valid file is left to Lark
    assert len(left) > 200 and len(decided) > 150
    assert lalr._BY_STATE  # a state's own lexer was needed ('->' ending a comment line, '//' where '/' goes)


def test_keywords_leave_the_lexer_only_through_name():
    """The lexer's premise: in every parser state, Lark's lexer for that state drops exactly the
    keywords (string terminals) that NAME matches and the state accepts, and NAME retypes them;
    the generated tables hold all of them, and the terminals in Lark's order without them."""
    from lark.lexer import _create_unless

    from cnndsl.lang import tables

    fresh = _fresh_lark()
    conf = fresh.lexer_conf
    terminals = sorted(conf.terminals, key=generate_parser._order)
    kept, unless = _create_unless(terminals, 0, conf.re_module, False)
    assert [t.name for t in kept] == [name for name, _ in tables.TERMINALS]
    assert {t.pattern.value: t.name for t in unless["NAME"].scanner.terminals} == tables.KEYWORDS
    everything = set(tables.KEYWORDS.values())
    assert {"NETWORK", "IN", "UNDERSCORE"} <= everything and set(unless) == {"NAME"}
    extra = set(conf.ignore) | set(tables.ALWAYS)
    accepts = {frozenset(row) | extra for row in fresh.parser.parser._parse_table.states.values()}
    assert len(accepts) > 40
    for names in accepts:
        terminals = [t for t in conf.terminals if t.name in names]
        kept, unless = _create_unless(terminals, 0, conf.re_module, False)
        assert {t.name for t in terminals} - {t.name for t in kept} == everything & names
        if everything & names:
            assert set(unless) == {"NAME"}
            assert {t.name for t in unless["NAME"].scanner.terminals} == everything & names
        else:
            assert unless == {}


def test_the_grammar_is_still_strict():
    # the generator builds with strict=True: a shift/reduce conflict or a terminal collision raises
    pytest.importorskip("lark")
    assert "Lark_StandAlone" in generate_parser.generate()
    assert "ACTIONS = (" in generate_parser.tables()


def _subcommands(p):
    (action,) = [a for a in p._actions if a.dest == "command"]
    return action.choices


def test_the_command_line_built_for_one_command_is_the_whole_ones_for_it():
    from cnndsl import cli

    whole = cli.build_parser()
    assert tuple(_subcommands(whole)) == cli.COMMANDS
    for command in cli.COMMANDS:
        one = cli.build_parser(command)
        assert one.format_help() == whole.format_help()
        assert _subcommands(one)[command].format_help() == _subcommands(whole)[command].format_help()
        assert len(_subcommands(one)[command]._actions) > 1
        others = [c for c in cli.COMMANDS if c != command]
        assert all(len(_subcommands(one)[c]._actions) == 1 for c in others)  # -h only
    args = ["info", "n.net", "-n", "x", "-D", "a=1", "--depth", "2", "--columns", "kind,macs"]
    assert vars(cli.build_parser("info").parse_args(args)) == vars(whole.parse_args(args))


# What `cnndsl info` and `cnndsl check` must not import: the back end, Lark (the parser is
# generated), and standard modules only some commands need.
NOT_AT_START = (
    "onnx",
    "onnxruntime",
    "numpy",
    "rich",
    "lark",
    "interegular",
    "regex",
    "PIL",
    "dataclasses",
    "inspect",
    "logging",
    "tempfile",
    "difflib",
    "pickle",
    "json",
    "typing",
    "shutil",
    "textwrap",
    "gettext",  # argparse's, given stand-ins (cnndsl/cmdline.py)
    "locale",
    "threading",  # the compiler's deep-stack thread is _thread's
    "cnndsl.lang.standalone",  # Lark's parser, for syntax errors (cnndsl.lang.lalr parses the rest)
)
# nor by info (check takes folders too, walked with pathlib)
NOT_FOR_FILES = ("pathlib", "urllib", "ipaddress")
_PROBE = """
import sys
from cnndsl.cli import main
main(sys.argv[1:])
print(sorted(m for m in sys.modules if m.split(".")[0] in {names!r} or m in {names!r}))
"""


@pytest.mark.parametrize(
    "args,names",
    [
        (("info", NETWORKS / "resnet.net", "--network", "resnet152"), NOT_AT_START + NOT_FOR_FILES),
        (("check", NETWORKS / "resnet.net", NETWORKS / "lenet5.net"), NOT_AT_START),
        (("check", NETWORKS), NOT_AT_START),
    ],
    ids=["info", "check", "check-folder"],
)
def test_info_and_check_import_only_what_they_need(args, names):
    r = subprocess.run(
        [sys.executable, "-c", _PROBE.format(names=set(names)), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]"


# A record's __init__ is one code object per (number of fields, frozen) with the fields' names put
# in (start-up): it must take its arguments and fail as a dataclass's __init__ does.
@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(
    "call",
    [
        ((1,), {}),
        ((1, "b"), {}),
        ((), {"x": 5, "label": "k"}),
        ((), {}),
        ((1, "b", 3), {}),
        ((1,), {"z": 2}),
        ((1,), {"x": 1}),
    ],
)
def test_a_record_takes_its_arguments_as_a_dataclass(frozen, call):
    import dataclasses

    from cnndsl.records import record

    def outcome(cls):
        try:
            obj = cls(*call[0], **call[1])
        except TypeError as err:
            return "TypeError", str(err)
        return repr(obj), obj == cls(obj.x, obj.label), obj != cls(obj.x, obj.label + "!")

    class P:
        x: int
        label: str = "a"

    ours = record(frozen=frozen, slots=True)(type("P", (), dict(vars(P))))
    theirs = dataclasses.dataclass(frozen=frozen)(type("P", (), dict(vars(P))))
    assert outcome(ours) == outcome(theirs)


def test_the_reserved_words_are_the_grammars_literals():
    """keywords() reads the generated parser's table; the grammar's lower-case literals are the
    reference (fmt and the importers' writer keep names off these words)."""
    import re

    literals = frozenset(re.findall(r'"([a-z]+)"', parser.grammar_text()))
    assert parser.keywords() == literals
    assert {"network", "block", "repeat", "in", "true", "false", "fn", "let"} <= literals
