"""Editor support: the TextMate grammar (editors/textmate) and the VS Code extension (editors/vscode).

The grammar uses only single-line ``match`` rules, so a few lines of Python apply it the
way a TextMate engine does (at each position the rule whose match starts first wins, ties
to the earlier rule) and every file of networks/ is tokenised with it. Expected scopes come
from the parser: where the syntax tree has a layer kind, the grammar must say layer kind.
"""

import json
import re

import pytest
from conftest import NETWORKS, ROOT

from cnndsl.lang import tree as ast
from cnndsl.lang.parser import parse_text
from cnndsl.layers import PUBLIC

try:  # closer to Oniguruma than re, when installed
    import regex as rx
except ImportError:  # pragma: no cover - the usual case
    rx = re

GRAMMAR = ROOT / "editors" / "textmate" / "cnndsl.tmLanguage.json"
VSCODE = ROOT / "editors" / "vscode"
NET_FILES = sorted(NETWORKS.glob("*.net"))


def _rules(grammar):
    """The grammar's top-level rules, includes resolved, in order: (compiled regex, name, captures)."""
    out = []

    def add(rule):
        if "include" in rule:
            add(grammar["repository"][rule["include"].lstrip("#")])
        elif "patterns" in rule:
            for r in rule["patterns"]:
                add(r)
        else:
            assert set(rule) <= {"match", "name", "captures", "comment"}, rule  # single-line rules only
            out.append((rx.compile(rule["match"]), rule.get("name"), rule.get("captures", {})))

    for r in grammar["patterns"]:
        add(r)
    return out


def tokenise(line, rules):
    """Scope names per character of one line."""
    scopes = [[] for _ in line]
    pos = 0
    while pos < len(line):
        best = None
        for regex, name, captures in rules:
            m = regex.search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, name, captures)
        if best is None:
            break
        m, name, captures = best
        for i in range(m.start(), m.end()):
            if name:
                scopes[i].append(name)
        for group, cap in captures.items():
            if m.group(int(group)) is not None:
                for i in range(m.start(int(group)), m.end(int(group))):
                    scopes[i].append(cap["name"])
        pos = m.end()
    return scopes


@pytest.fixture(scope="module")
def grammar():
    return json.loads(GRAMMAR.read_text(encoding="utf-8"))


def test_grammar_header_and_regexes_compile(grammar):
    assert grammar["scopeName"] == "source.cnndsl" and grammar["fileTypes"] == ["net"]
    assert len(_rules(grammar)) > 10


def test_grammar_knows_every_layer_kind_and_keyword(grammar):
    rules = _rules(grammar)
    kinds = next(r for r, name, _ in rules if name == "support.function.layer.cnndsl")
    for kind in PUBLIC:
        assert kinds.fullmatch(kind), kind
    keywords = set(re.findall(r'"([a-z]+)"', (ROOT / "grammars" / "net.lark").read_text()))
    assert keywords >= {"network", "block", "input", "output", "repeat", "import", "default", "table", "in"}
    for word in keywords:
        scopes = tokenise(f"{word}.c" if word == "in" else word, rules)[0]
        assert any(s.startswith(("keyword.", "constant.language", "variable.language")) for s in scopes), word


def _kind_positions(items):
    """(line, column) of every layer-kind name the parser found."""
    out, stack = [], list(items)
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, ast.Call):
            if node.kind in PUBLIC:
                out.append((node.kind_span.line, node.kind_span.column, node.kind))
            stack.extend(node.positional + node.keywords + (node.body or ()))
        elif isinstance(node, (ast.BlockDef, ast.Statement, ast.Group, ast.Repeat)):
            stack.extend(getattr(node, "body", None) or getattr(node, "steps", ()))
    return out


@pytest.mark.parametrize("path", NET_FILES, ids=lambda p: p.name)
def test_networks_tokenise(grammar, path):
    rules = _rules(grammar)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    scoped = [tokenise(line, rules) for line in lines]
    kinds = _kind_positions(parse_text(text, str(path)).items)
    assert kinds
    for line, column, kind in kinds:
        for i in range(column - 1, column - 1 + len(kind)):
            assert "support.function.layer.cnndsl" in scoped[line - 1][i], (path.name, line, kind)
    for n, line in enumerate(lines):
        if "#" in line:  # no strings in these files: every '#' starts a comment
            start = line.index("#")
            assert all("comment.line.number-sign.cnndsl" in s for s in scoped[n][start:]), (path.name, n + 1)
            assert not any("comment.line.number-sign.cnndsl" in s for s in scoped[n][:start])
        for m in re.finditer(r"\b[0-9]+(x[0-9]+)+\b", line.split("#")[0]):
            assert "constant.numeric.dimensions.cnndsl" in scoped[n][m.start()]
        for m in re.finditer(r"@\w+", line.split("#")[0]):
            assert "variable.other.label.cnndsl" in scoped[n][m.start() + 1]


def test_scopes_of_one_line(grammar):
    rules = _rules(grammar)
    line = "c3: conv 64/3/1/1 table=t -> relu * (n - 1) # note"
    scopes = tokenise(line, rules)

    def at(text):
        return scopes[line.index(text)]

    assert "entity.name.label.cnndsl" in at("c3")
    assert "support.function.layer.cnndsl" in at("conv")
    assert "constant.numeric.integer.cnndsl" in at("64")
    assert "punctuation.separator.field.cnndsl" in at("/3")
    assert "variable.parameter.keyword.cnndsl" in at("table")  # a keyword argument, not the statement
    assert "keyword.operator.arrow.cnndsl" in at("->")
    assert "comment.line.number-sign.cnndsl" in at("# note")
    s = tokenise('import "lib.net"  # x', rules)
    assert "keyword.other.cnndsl" in s[0] and "string.quoted.double.cnndsl" in s[8]
    s = tokenise("fc 1e-4 0.5 3x3 in.c", rules)
    assert "constant.numeric.float.cnndsl" in s[3] and "constant.numeric.float.cnndsl" in s[8]
    assert "constant.numeric.dimensions.cnndsl" in s[12] and "variable.language.in.cnndsl" in s[16]


def test_vscode_extension():
    pkg = json.loads((VSCODE / "package.json").read_text())
    (lang,) = pkg["contributes"]["languages"]
    (gram,) = pkg["contributes"]["grammars"]
    assert lang["extensions"] == [".net"] and gram["language"] == lang["id"]
    assert gram["scopeName"] == "source.cnndsl"
    # the extension's copy of the grammar is the grammar (an extension cannot reach outside its folder)
    assert (VSCODE / gram["path"]).read_bytes() == GRAMMAR.read_bytes()
    conf = json.loads((VSCODE / lang["configuration"]).read_text())
    assert conf["comments"]["lineComment"] == "#"
    assert ["{", "}"] in conf["brackets"]
