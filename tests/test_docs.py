"""The docs are true: the language reference describes every kind and keyword, the README's
blocks are real output, links lead to files of the repository, the install names the
dependencies of pyproject.toml."""

import re

import pytest
from conftest import ROOT

from cnndsl.layers import PUBLIC


def test_every_kind_and_keyword_is_documented():
    text = (ROOT / "docs" / "language.md").read_text()
    table = text[text.index("## 6. Layer catalogue") : text.index("## 7.")]
    for name, kind in PUBLIC.items():
        assert f"`{name}`" in table, f"kind {name} missing from docs/language.md §6"
        for kw in kind.keywords:
            assert re.search(rf"`{kw}[=`]", table), f"keyword {name} {kw} missing from docs/language.md §6"


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[test]'" in readme
    assert "python -m pytest" in readme


def test_info_doc_lists_every_column_and_the_fitting_order():
    from cnndsl.tools.table import COLUMNS, DROP_ORDER, MIN_WIDTH

    text = (ROOT / "docs" / "info.md").read_text()
    for key in COLUMNS:
        assert f"| `{key}` |" in text, f"column {key} missing from docs/info.md"
    order = ", ".join(f"`{COLUMNS[k].header}`" for k in DROP_ORDER)
    assert order.replace(", `output`", ", then `output`").replace("`kind`, ", "`kind`, then ") in text
    assert f"down to {MIN_WIDTH['layer']} characters" in text and f"down to {MIN_WIDTH['inputs']} characters" in text


def test_readme_depth_block_is_real_output(cli):
    readme = (ROOT / "README.md").read_text()
    start = readme.index("`cnndsl info networks/efficientnet.net --depth 1`")
    block = readme[readme.index("```\n", start) + 4 :]
    block = block[: block.index("```")]
    r = cli("info", "networks/efficientnet.net", "--depth", "1", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert block == r.stdout


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_name_only_files_of_the_repository():
    """Every relative link of README.md and docs/*.md leads to a file of the repository, and
    none names the language specification's file, which is not in it (issue 14)."""
    bad = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        if "LANGUAGE.md" in text or "../shared" in text:
            bad.append(f"{doc.name}: names a file outside the repository")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists() or ROOT.resolve() not in path.parents:
                bad.append(f"{doc.name}: link {target}")
    assert bad == []


def _console_blocks(text: str) -> list[str]:
    """The fenced blocks of a Markdown text that start with a command (``$ ...``)."""
    blocks, current = [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return [b for b in blocks if b.startswith("$ ")]


def _run_console(block: str, cwd, cli) -> str:
    """Replays a console block (``$ cnndsl ...``, ``$ cat FILE``, ``| tail -1``) and returns
    the transcript as it would read: commands and their real output."""
    out = []
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        command = line[2:]
        out.append(line)
        command, _, pipe = command.partition(" | ")
        words = command.split()
        if words[0] == "cat":
            text = (cwd / words[1]).read_text()
        else:
            assert words[0] == "cnndsl", line
            stdin = None
            if "<" in words:
                i = words.index("<")
                stdin, words = (cwd / words[i + 1]).read_text(), words[:i]
            r = cli(*words[1:], cwd=cwd, input=stdin)
            text = r.stderr + r.stdout
        if pipe == "tail -1":
            text = text.splitlines()[-1] + "\n"
        out.append(text.rstrip("\n"))
    return "\n".join(out) + "\n"


def test_readme_bad_net_blocks_are_real_output(cli, tmp_path):
    readme = (ROOT / "README.md").read_text()
    bad = next(b for b in _console_blocks(readme) if b.startswith("$ cat bad.net"))
    source = bad.split("$ cnndsl")[0].split("\n", 1)[1]
    (tmp_path / "bad.net").write_text(source)
    blocks = [b for b in _console_blocks(readme) if "bad.net" in b]
    assert len(blocks) == 2  # the error and its JSON, both of this bad.net
    for block in blocks:
        assert _run_console(block, tmp_path, cli) == block


def test_readme_import_examples_run_on_files_of_the_repository(cli, tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in _console_blocks(readme) if b.startswith("$ cnndsl import")]
    assert len(blocks) == 2
    for name in ("ResNet-50-deploy.prototxt", "yolov3-tiny.cfg", "alexnet_train_val.prototxt", "yolov4-tiny.cfg"):
        (tmp_path / name).write_bytes((ROOT / "tests" / "data" / name).read_bytes())
    for block in blocks:
        assert _run_console(block, tmp_path, cli) == block


def test_fmt_check_of_networks_as_the_docs_say(cli):
    r = cli("fmt", "--check", "networks", cwd=ROOT)
    assert r.returncode == 0
    shown = f"$ cnndsl fmt --check networks\n{r.stdout}"
    assert shown in (ROOT / "README.md").read_text()
    assert shown in (ROOT / "docs" / "fmt.md").read_text()


def _requirements():
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]], project["optional-dependencies"]


# (platform_system, platform_machine) -> the onnxruntime pip installs there; PyPI has
# onnxruntime-gpu wheels for x86-64 Linux and Windows only (macOS arm64, Linux aarch64: none)
PLATFORMS = [
    ("Linux", "x86_64", "onnxruntime-gpu"),
    ("Windows", "AMD64", "onnxruntime-gpu"),
    ("Linux", "aarch64", "onnxruntime"),
    ("Darwin", "arm64", "onnxruntime"),
    ("Darwin", "x86_64", "onnxruntime"),
    ("Windows", "ARM64", "onnxruntime"),
]


@pytest.mark.parametrize("system, machine, runtime", PLATFORMS)
def test_one_onnxruntime_on_every_platform(system, machine, runtime):
    requirements, _ = _requirements()
    env = {"platform_system": system, "platform_machine": machine}
    chosen = [r.name for r in requirements if r.name.startswith("onnxruntime") and r.marker.evaluate(env)]
    assert chosen == [runtime]


def test_readme_cpu_install_names_every_other_dependency():
    """The README's CPU install (``pip install onnxruntime ...`` then ``--no-deps``) lists
    exactly the dependencies of pyproject.toml, with onnxruntime for onnxruntime-gpu, and
    keeps their upper bounds (ml_dtypes<0.7)."""
    from packaging.requirements import Requirement

    requirements, extras = _requirements()
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if ".venv/bin/pip install onnxruntime " in x)
    named = {r.name: r for r in (Requirement(w.strip("'")) for w in line.split(".venv/bin/pip install ", 1)[1].split())}
    assert set(named) == {r.name for r in requirements if r.name != "onnxruntime-gpu"}
    bounded = {r.name: r.specifier for r in requirements if any(s.operator == "<" for s in r.specifier)}
    assert bounded == {"ml_dtypes": Requirement("ml_dtypes<0.7").specifier}
    assert all(named[name].specifier == spec for name, spec in bounded.items())
    assert ".venv/bin/pip install --no-deps -e ." in readme
    tests_line = re.search(r"For the tests add `([^`]+)`", readme).group(1).split()
    assert sorted(tests_line) == sorted(r.split(">=")[0] for r in extras["test"])
