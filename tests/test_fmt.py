"""cnndsl fmt: canonical layout, idempotent, comments kept, meaning kept (docs/fmt.md).

Expected layouts below are written by hand from the rules of docs/fmt.md, not
produced by the formatter; the meaning is checked against the compiler's own
figures for the unformatted file (shapes, parameters, MACs per layer).
"""

import json
import os
import random
import re
from pathlib import Path

import pytest
from conftest import NETWORKS, ROOT

from cnndsl import load, load_module
from cnndsl.errors import CnnError
from cnndsl.tools.fmt import format_text

NET_FILES = sorted(NETWORKS.glob("*.net"))
LANGUAGE_MD = ROOT.parent / "shared" / "LANGUAGE.md"  # the contract lives beside the checkout
if not LANGUAGE_MD.is_file():
    LANGUAGE_MD = Path("/work/shared/LANGUAGE.md")


def _comments(text):
    """Every comment, with the code before it on its line ('' for a comment line)."""
    out = []
    for line in text.splitlines():
        m = re.match(r'^([^#"]*(?:"[^"\n]*"[^#"]*)*)(#.*)$', line)
        if m:
            out.append((" ".join(m.group(1).split()), m.group(2).rstrip()))
    return out


def _figures(path: Path):
    """What the compiler reports for every network of a file, without source lines."""
    module = load_module(str(path))
    out = {}
    for name in module.networks:
        data = load(str(path), network=name).to_json()
        data.pop("file")
        for layer in data["layers"]:
            layer.pop("line")
        data["warnings"] = [w["message"] for w in data["warnings"]]
        out[name] = data
    return out


# ---- hand-written layouts ------------------------------------------------------
CASES = [
    # spacing: '->' spaced, keywords tight, ',' then one space, label ':' then one space, 4-space indent
    (
        "network n{\ninput 3x8x8\n  c1 :conv 8/3/1/1   ->relu\n\tpool:maxpool 2/2 ceil\n}\n",
        "network n {\n    input 3x8x8\n    c1: conv 8/3/1/1 -> relu\n    pool: maxpool 2/2 ceil\n}\n",
    ),
    # '=' spaced in parameter lists and tables, tight in keywords and named arguments
    (
        "table t=[[0,1] ,[1 , 2]]\nblock b(c,s=1){conv c/3/s/1 bias = false}\nnetwork n(k=4){input 3x8x8\nb(k,s = 2)}\n",
        (
            "table t = [[0, 1], [1, 2]]\nblock b(c, s = 1) {\n    conv c/3/s/1 bias=false\n}\n"
            "network n(k = 4) {\n    input 3x8x8\n    b(k, s=2)\n}\n"
        ),
    ),
    # expressions: binary operators spaced, unary minus tight, a parenthesised field apart from its kind
    (
        (
            "network n {\n input 3x8x8\n conv (in.c//2)/1 -> conv(4*in.c)/3/1/1 -> leaky_relu -0.1\n"
            " repeat (2-1) { relu }\n bn * (1+1)\n}\n"
        ),
        (
            "network n {\n    input 3x8x8\n    conv (in.c // 2)/1 -> conv (4 * in.c)/3/1/1 -> leaky_relu -0.1\n"
            "    repeat (2 - 1) { relu }\n    bn * (1 + 1)\n}\n"
        ),
    ),
    # ';' in a one-line body stays; between the statements of a network it becomes a line break
    (
        "network n{input 3x8x8;add{_;conv 3/3/1/1};concat{ _ ;@x}}\n",
        "network n {\n    input 3x8x8\n    add { _ ; conv 3/3/1/1 }\n    concat { _ ; @x }\n}\n",
    ),
    # blank lines: at most one, none at the start of a body or the file, none before '}'
    (
        "\n\n# head\n\n\n\nnetwork n {\n\n    input 3x8x8\n\n\n    relu\n\n}\n\n\n",
        "# head\n\nnetwork n {\n    input 3x8x8\n\n    relu\n}\n",
    ),
    # comments: comment lines indented like the statement after them; trailing comments
    # of consecutive lines share a column, at least 42, else two spaces after the longest code
    (
        "network n {   # top\n# about input\ninput 3x8x8 # a\nconv 8/3 -> relu # b\n    # last\n}\n",
        (
            "network n {                              # top\n    # about input\n"
            "    input 3x8x8                          # a\n    conv 8/3 -> relu                     # b\n"
            "    # last\n}\n"
        ),
    ),
    (
        "network n {\n    input 3x8x8\n    a_rather_long_label: conv 8/3/1/1 -> bn -> relu # x\n    relu # y\n}\n",
        (
            "network n {\n    input 3x8x8\n    a_rather_long_label: conv 8/3/1/1 -> bn -> relu  # x\n"
            "    relu                                             # y\n}\n"
        ),
    ),
    # chains broken after '->' continue one level deeper; multi-line bodies and groups
    (
        "network n {\ninput 3x8x8\nx: conv 8/3 ->\nrelu ->\n   bn\nconcat {\nconv 4/1\n{ conv 4/1 -> relu\nconv 4/3/1/1 }\n} -> relu\n}\n",
        (
            "network n {\n    input 3x8x8\n    x: conv 8/3 ->\n        relu ->\n        bn\n    concat {\n        conv 4/1\n"
            "        { conv 4/1 -> relu\n          conv 4/3/1/1 }\n    } -> relu\n}\n"
        ),
    ),
    # a list continued on the next lines lines up after its bracket (as networks/lenet5.net does)
    ("table t = [[0,1],\n [1,2],\n        [2,3]]\n", "table t = [[0, 1],\n           [1, 2],\n           [2, 3]]\n"),
    # strings and imports, output lists, a ';' ending a line before a trailing comment
    (
        'import   "a b.net"  # lib\nnetwork n {\n input 3x8x8 ;   # in\n x: relu\n output x ,y\n}\n',
        (
            'import "a b.net"                         # lib\nnetwork n {\n    input 3x8x8                          # in\n'
            "    x: relu\n    output x, y\n}\n"
        ),
    ),
]


@pytest.mark.parametrize("source, expected", CASES)
def test_layout(source, expected):
    assert format_text(source) == expected
    assert format_text(expected) == expected


# ---- the networks of the project and the examples of LANGUAGE.md -------------
@pytest.mark.parametrize("path", NET_FILES, ids=lambda p: p.name)
def test_networks_idempotent_comments_and_meaning_kept(path, tmp_path):
    text = path.read_text(encoding="utf-8")
    once = format_text(text, str(path))
    assert format_text(once, str(path)) == once
    assert _comments(once) == _comments(text)  # same comments, each after the same code
    out = tmp_path / path.name
    out.write_text(once, encoding="utf-8")
    assert _figures(out) == _figures(path)


def _shuffled_whitespace(text: str, rng: random.Random) -> str:
    """The same tokens with other spacing and indentation (never inside comments or strings)."""
    out = []
    for line in text.splitlines():
        code, sep, comment = line.partition("#")
        parts = re.split(r"( +)", code.strip())
        code = "".join(" " * rng.randint(1, 3) if p.isspace() else p for p in parts)
        code = re.sub(
            r"(->|,|(?<![=!<>])=(?!=))", lambda m: " " * rng.randint(0, 2) + m.group(1) + " " * rng.randint(0, 2), code
        )
        out.append(" " * rng.randint(0, 6) + code + (" " * rng.randint(0, 3) + sep + comment if sep else ""))
        if not line.strip():
            out.extend([""] * rng.randint(0, 2))  # runs of blank lines collapse to one
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", NET_FILES, ids=lambda p: p.name)
def test_layout_does_not_depend_on_the_input_spacing(path):
    text = path.read_text(encoding="utf-8")
    canonical = format_text(text)
    rng = random.Random(path.name)
    for _ in range(3):
        messy = _shuffled_whitespace(text, rng)
        assert format_text(messy) == canonical


def _language_examples():
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    return re.findall(r"```\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.skipif(not LANGUAGE_MD.is_file(), reason="LANGUAGE.md is not beside this checkout")
def test_language_examples():
    tested = 0
    for block in _language_examples():
        for candidate in (block, "network n {\n    input 64x28x28\n" + block + "}\n"):
            try:
                load_module(candidate if "\n" in candidate else candidate + "\n")
            except CnnError:
                continue
            once = format_text(candidate)
            assert format_text(once) == once
            assert _comments(once) == _comments(candidate)
            tested += 1
            break
    # §1 alexnet, §5 combinators (in a network), §8 lenet5, resnet50, inception,
    # §10.1 make_divisible and scaled (fn), §10.2 inverted_residual (if)
    assert tested == 7


# ---- the command as a user sees it ----------------------------------------------
def test_fmt_check_agrees_with_fmt(cli, tmp_path):
    for path in NET_FILES:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    would = {p.name for p in NET_FILES if format_text(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")}
    r = cli("fmt", "--check", tmp_path)
    listed = {Path(ln.split(" ", 2)[2]).name for ln in r.stdout.splitlines()}
    assert listed == would
    assert r.returncode == (1 if would else 0)
    assert all((tmp_path / p.name).read_bytes() == p.read_bytes() for p in NET_FILES)  # --check writes nothing
    inodes = {p.name: os.stat(tmp_path / p.name).st_ino for p in NET_FILES}
    r = cli("fmt", *sorted(tmp_path.glob("*.net")))
    assert r.returncode == 0, r.stderr
    assert {Path(ln.split(" ", 1)[1]).name for ln in r.stdout.splitlines()} == would
    assert f"{len(would)} file" in r.stderr and f"{len(NET_FILES) - len(would)} file" in r.stderr
    for p in NET_FILES:  # unchanged files are not rewritten; changed ones are replaced (a new file)
        assert (os.stat(tmp_path / p.name).st_ino == inodes[p.name]) == (p.name not in would)
    r = cli("fmt", "--check", tmp_path)
    assert (r.returncode, r.stdout) == (0, "")
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_fmt_syntax_error_leaves_the_file_alone(cli, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network n {\n  input 3x8x8\n  conv 8/3 ->\n}\n")
    messy = tmp_path / "messy.net"
    messy.write_text("network n{\ninput 3x8x8\n}\n")
    r = cli("fmt", bad, messy)
    assert r.returncode == 1
    assert f"{bad}:4:1: error: unexpected '}}'" in r.stderr
    assert "Traceback" not in r.stderr
    assert bad.read_text() == "network n {\n  input 3x8x8\n  conv 8/3 ->\n}\n"
    assert messy.read_text() == "network n {\n    input 3x8x8\n}\n"  # the other file is still formatted
    assert r.stdout == f"reformatted {messy}\n"
    assert "1 file with errors" in r.stderr


def test_fmt_missing_file_and_stdin(cli, tmp_path):
    r = cli("fmt", tmp_path / "nothere.net")
    assert r.returncode == 1 and "nothere.net: no such file" in r.stderr and "Traceback" not in r.stderr
    r = cli("fmt", "-", input="network n{input 3x8x8;relu}")
    assert (r.returncode, r.stdout) == (0, "network n {\n    input 3x8x8\n    relu\n}\n")
    r = cli("fmt", "--check", "-", input="network n {\n    input 3x8x8\n}\n")
    assert (r.returncode, r.stdout) == (0, "")
    r = cli("fmt", "--check", "-", input="network n {\ninput 3x8x8\n}\n")
    assert (r.returncode, r.stdout) == (1, "")
    r = cli("fmt", "-", input="network n {\n")
    assert r.returncode == 1 and "<stdin>:1:" in r.stderr
    r = cli("fmt")
    assert r.returncode == 2


# ---- cnndsl check --format json, for editors (docs/editors.md) ------------------
def test_check_json_positions(cli, tmp_path):
    files = {
        "eof.net": "network n {\n input 3x8x8\n conv 8/3\n",  # E001 at the '{' (1:11), note at the end (3:10)
        "kind.net": "network n {\n input 3x8x8\n conv 8/3 -> rleu\n}\n",  # 'rleu' at 3:14-18
        "warn.net": "network n {\n input 3x7x7\n maxpool 3/3\n}\n",  # 7 = 3+3+1: one column dropped
        "note.net": "network n(k) {\n input 3x7x7\n conv k/3\n}\n",  # k has no default
        "chain.net": "block b(c) {\n conv c/5\n}\nnetwork n {\n input 3x4x4\n b(8)\n}\n",  # 5x5 on 4x4
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = cli("check", "--format", "json", *files, "missing.net", cwd=tmp_path)
    assert r.returncode == 1
    diags = json.loads(r.stdout)
    keys = {"file", "line", "column", "end_line", "end_column", "severity", "code", "message", "notes"}
    for d in diags:
        assert set(d) == keys
        assert d["code"] and d["severity"] in ("error", "warning", "note") and d["file"]
        if d["line"] is not None:
            assert (d["end_line"], d["end_column"]) > (d["line"], d["column"])
    by_file = {d["file"]: d for d in diags}
    assert set(by_file) == set(files) | {"missing.net"}
    assert [by_file["eof.net"][k] for k in ("line", "column", "end_line", "end_column")] == [1, 11, 1, 12]
    assert [(n["line"], n["column"]) for n in by_file["eof.net"]["notes"]] == [(3, 10)]
    assert [by_file["kind.net"][k] for k in ("code", "line", "column", "end_line", "end_column")] == [
        "E010",
        3,
        14,
        3,
        18,
    ]
    assert (by_file["warn.net"]["severity"], by_file["warn.net"]["code"]) == ("warning", "W001")
    assert (by_file["note.net"]["severity"], by_file["note.net"]["code"]) == ("note", "N200")
    assert by_file["missing.net"]["line"] is None and by_file["missing.net"]["code"] == "E040"
    chain = by_file["chain.net"]
    assert chain["line"] == 2
    assert [(n["file"], n["line"]) for n in chain["notes"]] == [("chain.net", 6)]


def test_docstring_examples():
    import doctest

    import cnndsl.tools.fmt

    result = doctest.testmod(cnndsl.tools.fmt)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize("path", NET_FILES[:4], ids=lambda p: p.name)
def test_mangled_files_give_diagnostics_or_a_safe_layout(path):
    """Random edits of a real file: a CnnError or a layout that re-parses the same (checked inside)."""
    text = path.read_text(encoding="utf-8")
    rng = random.Random(path.name)
    alphabet = list("{}()[];,:=/*@-+.%#\n x_0123456789") + ["->", "//", "conv", "in.c", '"', "\r\n", "\t"]
    for _ in range(150):
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            if rng.random() < 0.5:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        mangled = "".join(chars)
        try:
            once = format_text(mangled)
        except CnnError as err:
            assert err.diagnostic.code == "E001"  # a syntax error (a formatter bug would be an AssertionError)
            continue
        assert format_text(once) == once


def test_shipped_networks_are_in_the_canonical_layout(cli):
    r = cli("fmt", "--check", NETWORKS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would reformat" not in r.stdout
