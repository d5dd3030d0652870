"""`cnndsl check` takes folders as `cnndsl fmt` does: the .net files under them (issue 14)."""

from __future__ import annotations

import json

from conftest import NETWORKS


def test_check_a_folder_checks_every_net_file_under_it(cli):
    r = cli("check", NETWORKS)
    count = len(list(NETWORKS.rglob("*.net")))
    assert count == 18  # networks/ as it is: a new file changes this count on purpose
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"checked {count} files: 0 errors, 0 warnings\n"


def test_check_a_folder_reports_each_file_by_its_path(cli, tmp_path):
    (tmp_path / "nets" / "sub").mkdir(parents=True)
    (tmp_path / "nets" / "good.net").write_text("network a {\n    input 3x8x8\n    relu\n}\n")
    (tmp_path / "nets" / "sub" / "bad.net").write_text("network b {\n    input 3x8x8\n    conb 8/3\n}\n")
    (tmp_path / "nets" / "notes.txt").write_text("not a network\n")
    r = cli("check", "nets", "--format", "json", cwd=tmp_path)
    assert r.returncode == 1
    (d,) = json.loads(r.stdout)
    assert (d["file"], d["line"], d["code"]) == ("nets/sub/bad.net", 3, "E010")
    r = cli("check", "nets", cwd=tmp_path)
    assert r.stdout == "checked 2 files: 1 error, 0 warnings\n"
    assert r.stderr.startswith("nets/sub/bad.net:3:5: error: unknown layer kind or block 'conb'; did you mean 'conv'?")


def test_check_a_folder_without_net_files(cli, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("not a network\n")
    r = cli("check", "src", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "cnndsl: error: cnndsl check: no .net files under src [E202]\n"
