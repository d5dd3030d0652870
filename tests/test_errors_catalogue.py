"""docs/errors.md is complete and true: every example emits exactly its code and message.

The catalogue is parsed, each entry's example is run in an empty folder through the
command line (in-process, as ``cnndsl ...`` would run it), and the diagnostics printed
are compared with the entry: the code, the message written there, and a file:line:col
location unless the entry says it has none. The expected messages are the catalogue's
text, written for users to read; the test keeps the two from drifting apart.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT

from cnndsl.cli import main

CATALOGUE = ROOT / "docs" / "errors.md"
_BLOCK = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_DIAG = re.compile(
    r"^(?:(?P<loc>\S+?:\d+:\d+)|cnndsl): (?P<sev>error|warning): (?P<msg>.*) \[(?P<code>[EW]\d{3})\]$", re.MULTILINE
)


@dataclass
class Entry:
    code: str
    message: str
    located: bool
    blocks: list = field(default_factory=list)  # (info string, text)
    also: list = field(default_factory=list)  # more examples of the code: Entry each


_ALSO = re.compile(r"^- \*\*Also:\*\* `(.*)`$", re.MULTILINE)


def parse_catalogue(text: str) -> list[Entry]:
    entries = []
    parts = re.split(r"^## ([EW]\d{3})\n", text, flags=re.MULTILINE)
    for code, body in zip(parts[1::2], parts[2::2]):
        body = body.split("\n## ", 1)[0]  # up to the next heading
        m = re.search(r"^- \*\*Message:\*\* `(.*)`$", body, re.MULTILINE)
        assert m, f"{code}: no **Message:** line"
        main, *more = _ALSO.split(body)  # more: message, body, message, body ...
        located = "- **Location:** none" not in main
        blocks = [(info.strip(), src) for info, src in _BLOCK.findall(main)]
        also = [
            Entry(code, message, located, [(info.strip(), src) for info, src in _BLOCK.findall(rest)])
            for message, rest in zip(more[::2], more[1::2])
        ]
        entries.append(Entry(code, m.group(1), located, blocks, also))
    return entries


ENTRIES = parse_catalogue(CATALOGUE.read_text(encoding="utf-8"))
MORE = [(e, i) for e in ENTRIES for i in range(len(e.also))]


def run_example(entry: Entry, folder: Path, capsys) -> tuple[int, list[dict], str]:
    """Run the entry's example in ``folder``; returns the exit status, the diagnostics and the output."""
    command = None
    for info, src in entry.blocks:
        if info.startswith("file "):
            target = folder / info.split(None, 1)[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(src)
        elif info == "python setup":
            exec(compile(src, f"{entry.code} setup", "exec"), {})  # noqa: S102 - the catalogue's own code
        elif info == "net":
            (folder / "t.net").write_text(src)
        elif info == "console":
            (line,) = [ln for ln in src.splitlines() if ln.strip()]
            assert line.startswith("$ cnndsl "), line
            command = shlex.split(line)[2:]
    capsys.readouterr()
    if command is None:
        rc = main(["check", "t.net", "--format", "json"])
        out = capsys.readouterr().out
        diags = json.loads(out)
        return (
            rc,
            [
                {"code": d["code"], "message": d["message"].split("\n")[0], "located": d["line"] is not None}
                for d in diags
            ],
            out,
        )
    rc = main(command)
    out = capsys.readouterr()
    return (
        rc,
        [{"code": m["code"], "message": m["msg"], "located": m["loc"] is not None} for m in _DIAG.finditer(out.err)],
        out.out + out.err,
    )


def _overcommit() -> str:
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip()
    except OSError:
        return "unknown"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.code for e in ENTRIES])
def test_example_emits_its_code(entry, tmp_path, monkeypatch, capsys):
    if entry.code == "E301" and _overcommit() != "0":
        pytest.skip("E301's example asks for 800 GB; only the kernel's heuristic overcommit refuses that at once")
    monkeypatch.chdir(tmp_path)
    rc, diags, output = run_example(entry, tmp_path, capsys)
    if entry.code == "E090" and rc == 0 and not diags:
        pytest.skip("the CUDA provider started here (a GPU): the E090 example needs a machine without")
    assert [d["code"] for d in diags] == [entry.code], output
    (d,) = diags
    if entry.code == "E090":  # which of its two messages depends on the onnxruntime installed
        assert f"`{d['message']}`" in CATALOGUE.read_text(encoding="utf-8")
    else:
        assert d["message"] == entry.message
    assert d["located"] == entry.located, d
    assert rc == (0 if entry.code.startswith("W") else 1)


@pytest.mark.parametrize("entry, index", MORE, ids=[f"{e.code}-also-{i + 1}" for e, i in MORE])
def test_more_examples_emit_their_code(entry, index, tmp_path, monkeypatch, capsys):
    """The ``- **Also:**`` examples of an entry: the same code, their own message."""
    example = entry.also[index]
    monkeypatch.chdir(tmp_path)
    rc, diags, output = run_example(example, tmp_path, capsys)
    assert [(d["code"], d["message"], d["located"]) for d in diags] == [
        (example.code, example.message, example.located)
    ], output
    assert rc == (0 if example.code.startswith("W") else 1)


def test_entries_are_unique_and_in_the_source():
    codes = [e.code for e in ENTRIES]
    assert len(codes) == len(set(codes)), "a code has two entries"
    in_source = set()
    for path in (ROOT / "cnndsl").rglob("*.py"):
        in_source |= set(re.findall(r"""["']([EW]\d{3})["']""", path.read_text(encoding="utf-8")))
    assert in_source - set(codes) == set(), "codes the compiler emits but docs/errors.md lacks"
    assert set(codes) - in_source == set(), "codes docs/errors.md documents but nothing emits"


def test_every_entry_has_cause_fix_and_example():
    text = CATALOGUE.read_text(encoding="utf-8")
    for e in ENTRIES:
        body = text.split(f"## {e.code}\n", 1)[1].split("\n## ", 1)[0]
        assert "- **Cause:** " in body and "- **Fix:** " in body, e.code
        assert any(info in ("net", "console") for info, _ in e.blocks), e.code


def test_parser_reads_a_small_catalogue():
    """The parser itself, on a catalogue written here: two entries, blocks in order."""
    text = (
        "# t\n\n## E001\n\n- **Message:** `bad`\n- **Cause:** x\n- **Fix:** y\n\n```net\nnetwork n {\n}\n```\n\n"
        "## E057\n\n- **Message:** `no net`\n- **Location:** none\n\n```file a.net\nA\n```\n\n"
        "```console\n$ cnndsl info a.net\n```\n"
    )
    a, b = parse_catalogue(text)
    assert (a.code, a.message, a.located, a.blocks) == ("E001", "bad", True, [("net", "network n {\n}\n")])
    assert a.also == [] and b.also == []
    (c,) = parse_catalogue(text.replace("\n\n## E057", "\n\n- **Also:** `worse`\n\n```net\nN\n```\n\n## E057"))[:1]
    assert c.blocks == a.blocks and [(x.code, x.message, x.blocks) for x in c.also] == [
        ("E001", "worse", [("net", "N\n")])
    ]
    assert (b.code, b.message, b.located) == ("E057", "no net", False)
    assert b.blocks == [("file a.net", "A\n"), ("console", "$ cnndsl info a.net\n")]
