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
