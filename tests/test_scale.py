"""Scale: deep nesting and long files compile; info and check stay free of onnx and torch, export of torch.

The timings themselves are in benchmarks/bench_frontend.py; these tests only
check that nothing breaks (no RecursionError, no limit hit) at the sizes the
benchmark measures.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import NETWORKS, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from netgen import PATTERN, long_network, nested_blocks, nested_groups  # noqa: E402

import cnndsl

DEPTH = 200


def test_200_nested_blocks_compile():
    m = cnndsl.load(nested_blocks(DEPTH))
    (layer,) = m.layers
    assert layer.output == (8, 8, 8)
    assert layer.params == (3 * 3 * 4 + 1) * 8
    # the hierarchical name records the whole call chain
    assert layer.name == ".".join(f"b{i}" for i in range(DEPTH)) + ".conv"


def test_200_nested_groups_compile():
    m = cnndsl.load(nested_groups(DEPTH))
    (layer,) = m.layers
    assert (layer.kind, layer.output, layer.params) == ("conv", (8, 8, 8), (3 * 3 * 4 + 1) * 8)


def test_200_nested_groups_through_the_cli(tmp_path, cli):
    path = tmp_path / "deep.net"
    path.write_text(nested_groups(DEPTH))
    r = cli("info", path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["layers"][0]["output"] == [8, 8, 8]


def test_10000_line_network_compiles():
    lines = 10_000
    m = cnndsl.load(long_network(lines))
    groups = lines // len(PATTERN)
    # per group of four lines: conv, relu, bn, conv, add, relu
    assert len(m.layers) == 6 * groups
    assert m.outputs == [("output", (16, 32, 32))]
    t = m.totals
    conv = (3 * 3 * 16 + 1) * 16
    assert t.trainable_params == groups * (2 * conv + 2 * 16)
    assert t.non_trainable_params == groups * (2 * 16)
    assert t.macs == groups * 2 * (32 * 32 * 16 * 3 * 3 * 16)


# Runs the command as the CLI does, then lists what got imported.
_PROBE = """
import sys
from cnndsl.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "onnxruntime", "torch"))
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def _imports_of(*args) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stderr.splitlines() if x.startswith("HEAVY=")][-1]
    return [m for m in line[len("HEAVY=") :].split(",") if m]


def test_info_does_not_import_onnx():
    assert _imports_of("info", NETWORKS / "resnet.net", "--network", "resnet50") == []
    assert _imports_of("info", NETWORKS / "resnet.net", "--network", "resnet50", "--json") == []


def test_check_does_not_import_onnx():
    assert _imports_of("check", NETWORKS / "resnet.net", NETWORKS / "lenet5.net") == []


def test_export_never_imports_torch(tmp_path):
    """ONNX export needs no torch; --format torch writes the module's text without torch or onnx."""
    onnx_export = _imports_of("export", NETWORKS / "lenet5.net", "-o", tmp_path / "m.onnx")
    assert onnx_export and not [m for m in onnx_export if m.split(".")[0] == "torch"]
    assert _imports_of("export", NETWORKS / "lenet5.net", "--format", "torch", "-o", tmp_path / "m.py") == []
