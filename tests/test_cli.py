"""The command line as a user sees it: output, exit codes, JSON shape."""

import json

from conftest import NETWORKS


def test_info_table_plain_when_piped(cli):
    r = cli("info", NETWORKS / "lenet5.net")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("network lenet5 (")
    assert "MACs: weight multiply-accumulates" in r.stdout  # the counting convention is in the header
    assert "\x1b[" not in r.stdout  # no colour codes when piped
    row = next(ln for ln in lines if ln.startswith("C3 "))
    # MACs by hand: 10·10 positions × 60 table entries × 5·5 = 150,000; RF: C1 5, S2 5 + (2-1)·1 = 6 with jump 2, C3 6 + (5-1)·2 = 14
    assert row.split() == ["C3", "conv", "16x10x10", "1,516", "150,000", "14"]
    assert all(len(ln) <= 80 for ln in lines), max(lines, key=len)
    assert any(ln.split()[:2] == ["trainable", "60,000"] for ln in lines)
    assert any(ln.split()[:2] == ["connections", "340,908"] for ln in lines)


def test_info_json_shape(cli):
    r = cli("info", NETWORKS / "lenet5.net", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in ("network", "file", "input", "outputs", "layers", "totals", "warnings"):
        assert key in data
    assert data["input"] == [1, 32, 32]
    assert data["outputs"] == [{"name": "output", "shape": [10]}]
    layer = data["layers"][0]
    for key in (
        "name",
        "kind",
        "line",
        "output",
        "params",
        "trainable_params",
        "macs",
        "connections",
        "receptive_field",
        "jump",
    ):
        assert key in layer
    assert (layer["name"], layer["kind"], layer["line"], layer["output"]) == ("C1", "conv", 8, [6, 28, 28])
    assert layer["receptive_field"] == [5, 5] and layer["jump"] == [1, 1]
    totals = data["totals"]
    for key in (
        "params",
        "trainable_params",
        "non_trainable_params",
        "macs",
        "flops",
        "connections",
        "param_bytes",
        "activation_bytes",
    ):
        assert key in totals
    assert totals["trainable_params"] == 60_000 and totals["non_trainable_params"] == 840
    assert totals["flops"] == 2 * totals["macs"]
    assert totals["param_bytes"] == 4 * 60_840  # float32


def test_defines_and_input_override(cli):
    r = cli(
        "info", NETWORKS / "resnet.net", "--network", "resnet18", "-D", "classes=10", "--input", "3x64x64", "--json"
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["input"] == [3, 64, 64]
    assert data["outputs"][0]["shape"] == [10]
    assert data["layers"][-2]["output"] == [512, 1, 1]  # gap after 64/32 = 2x2


def test_user_error_exit_1_with_diagnostic(cli, netfile):
    path = netfile("network n {\n    input 3x8x8\n    conb 8/3\n}\n")
    r = cli("info", path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith(f"{path}:3:5: error: unknown layer kind or block 'conb'; did you mean 'conv'? [E010]")
    assert "Traceback" not in r.stderr


def test_missing_file_is_a_user_error(cli, tmp_path):
    r = cli("info", tmp_path / "nope.net")
    assert r.returncode == 1
    assert "cannot read" in r.stderr and "no such file" in r.stderr


def test_usage_error_exit_2(cli):
    r = cli("info")
    assert r.returncode == 2
    assert "usage:" in r.stderr
    r = cli("frobnicate")
    assert r.returncode == 2
    r = cli("info", "x.net", "-D", "novalue")
    assert r.returncode == 2


def test_warning_keeps_exit_0(cli, netfile):
    path = netfile("network n {\n    input 1x7x7\n    conv 1/3/3\n}\n")
    r = cli("info", path)
    assert r.returncode == 0
    assert f"{path}:3:14: warning:" in r.stderr and "[W001]" in r.stderr


def test_several_networks_without_choice(cli):
    r = cli("info", NETWORKS / "resnet.net")
    assert r.returncode == 1
    assert "choose one with --network NAME" in r.stderr


def test_check_all_networks(cli):
    files = sorted(NETWORKS.glob("*.net"))
    r = cli("check", *files)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stdout.strip().endswith("0 errors, 0 warnings")


def test_check_reports_errors_and_json(cli, netfile):
    bad = netfile("network n {\n    input 3x8x8\n    conv 8/3 strid=2\n}\n", "bad.net")
    good = netfile("network m {\n    input 3x8x8\n    relu\n}\n", "good.net")
    r = cli("check", good, bad)
    assert r.returncode == 1
    assert "conv has no keyword 'strid'" in r.stderr
    assert "checked 2 files: 1 error, 0 warnings" in r.stdout
    r = cli("check", "--format", "json", bad)
    assert r.returncode == 1
    (diag,) = json.loads(r.stdout)
    assert diag["severity"] == "error" and diag["line"] == 3 and diag["column"] == 14
    assert diag["file"] == str(bad) and diag["end_column"] == 21


def test_version(cli):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("cnndsl ")


def test_long_names_fit_80_columns(cli):
    r = cli("info", NETWORKS / "resnet.net", "--network", "resnet152")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert all(ln.isascii() for ln in lines)
    assert any(ln.startswith("...") for ln in lines)  # the most specific end of a long name is kept
