"""The project's language reference describes every layer kind and keyword of the catalogue."""

import re

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
