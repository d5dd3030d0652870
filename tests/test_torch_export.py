"""export --format torch and --weights renames, as a user sees them; none of this needs torch.

The numerics of the generated module are in test_torch.py (which needs torch); here:
the command line, the file (valid Python, imports only torch, ruff-clean, a class
per network and block), the names it cannot write (E088), and how --weights names
are matched (--map, --map-by order; E081, E084, E089), with .npz files.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
from conftest import NETWORKS
from test_numerics import CASES, net

import cnndsl
from cnndsl.cli import main
from cnndsl.layers import CATALOGUE
from cnndsl.lower.pytorch import torch_source


def test_every_kind_has_a_torch_rule():
    """Every numerics case generates (so every kind: test_numerics checks the cases cover them)."""
    covered = set()
    for param in CASES:
        input_shape, body, _, tables = param.values
        model = cnndsl.load(net(input_shape, body, tables))
        ast.parse(torch_source(model))
        covered |= {node.kind for node in model.graph.nodes}
    assert sorted(set(CATALOGUE) - covered - {"input"}) == []


def first_networks():
    for path in sorted(NETWORKS.glob("*.net")):
        yield path, next(iter(cnndsl.load_module(path).networks))


def test_files_for_every_network_import_only_torch_and_are_ruff_clean(tmp_path):
    pytest.importorskip("ruff", reason="ruff is in the test extra")
    for path, name in first_networks():
        text = torch_source(cnndsl.load(path, network=name))
        tree = ast.parse(text)
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported == {"__future__", "torch"}, path.name
        (tmp_path / f"{path.stem}.py").write_text(text)
    for command in (["check"], ["format", "--check"]):
        r = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--isolated", "--no-cache", "--line-length", "120", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_export_format_torch_writes_the_module(tmp_path, capsys):
    out = tmp_path / "resnet18.py"
    rc = main(["export", str(NETWORKS / "resnet.net"), "--network", "resnet18", "--format", "torch", "-o", str(out)])
    assert rc == 0
    text = out.read_text()
    assert capsys.readouterr().out == (
        f"wrote {out} ({len(text.encode()):,} bytes): PyTorch module Resnet18 of network resnet18, "
        "3 block classes, 11,699,112 parameters\n"
    )
    # one class per block and structure, the network's last; instances that differ only in the
    # integers of their constructors share a class that takes them (ResNet-18, He et al. 2016
    # table 1: basic blocks of 64, 128, 256, 512 channels; the first of each later stage halves
    # the size with a projection shortcut)
    classes = [n.name for n in ast.parse(text).body if isinstance(n, ast.ClassDef)]
    assert classes == ["Stem", "Basic", "Basic2", "Resnet18"]
    assert (
        '    """Block basic: `basic(64)` at resnet.net:35; instances layer1, layer1_1, layer2.basic, layer3.basic, '
        'layer4.basic."""\n\n    def __init__(self, channels):\n        super().__init__()\n'
        "        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)\n"
    ) in text
    assert "        self.layer2 = Basic2(64, 128)\n        self.layer2.basic = Basic(128)\n" in text
    assert "    def __init__(self, in_channels, channels):\n" in text
    assert "        self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=2, bias=False)\n" in text


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "train: conv 4/3",
            "t.net:3:12: error: --format torch: the name 'train' cannot be a PyTorch attribute ('train' is an "
            "attribute of torch.nn.Module); rename the label or block instance [E088]",
        ),
        (
            "class: conv 4/3",
            "t.net:3:12: error: --format torch: the name 'class' cannot be a PyTorch attribute ('class' is a "
            "Python keyword); rename the label or block instance [E088]",
        ),
        (
            "avgpool 2/1/same ceil",
            "t.net:3:5: error: --format torch: avgpool (avgpool): avgpool with ceil and padding unequal before "
            "and after has no PyTorch equivalent [E088]",
        ),
    ],
)
def test_names_and_layers_torch_cannot_take(tmp_path, capsys, body, message):
    (tmp_path / "t.net").write_text(f"network n {{\n    input 3x8x8\n    {body}\n}}\n")
    rc = main(["export", str(tmp_path / "t.net"), "--format", "torch", "-o", str(tmp_path / "m.py")])
    assert rc == 1
    assert capsys.readouterr().err.splitlines()[0] == f"{tmp_path / message}"
    assert not (tmp_path / "m.py").exists()


def test_format_torch_refuses_the_onnx_options(tmp_path, capsys):
    (tmp_path / "t.net").write_text(net("3x8x8", "conv 4/3"))
    rc = main(["export", str(tmp_path / "t.net"), "--format", "torch", "--fold-bn", "--opset", "18", "-o", "m.py"])
    assert rc == 1
    assert capsys.readouterr().err == (
        "cnndsl: error: --format torch writes the module's code only; --fold-bn, --opset belong to --format onnx "
        "(load trained weights with model.load_state_dict) [E084]\n"
    )


# ---------------------------------------------------------------------------
# --weights names: exact, --map, --map-by order

NET = net("3x8x8", "c1: conv 4/3 -> bn -> relu\n    fc 2")
SHAPES = {
    "c1.weight": (4, 3, 3, 3),
    "c1.bias": (4,),
    "c1.bn.weight": (4,),
    "c1.bn.bias": (4,),
    "c1.bn.running_mean": (4,),
    "c1.bn.running_var": (4,),
    "fc.weight": (2, 144),
    "fc.bias": (2,),
}
# the same tensors as a torchvision-style script names them, with batch norm's step counter
FOREIGN = ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias"]
FOREIGN += ["features.1.running_mean", "features.1.running_var", "classifier.weight", "classifier.bias"]


def foreign_weights(path, counter=True):
    rng = np.random.default_rng(0)
    arrays = {f: rng.uniform(0.5, 1.5, s).astype(np.float32) for f, s in zip(FOREIGN, SHAPES.values())}
    if counter:
        arrays = {**dict(list(arrays.items())[:6]), "features.1.num_batches_tracked": np.array(3), **arrays}
    np.savez(path, **arrays)
    return dict(zip(SHAPES, (arrays[f] for f in FOREIGN)))


def exported_weights(path) -> dict:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if "/" not in t.name}


def export(tmp_path, *options):
    (tmp_path / "t.net").write_text(NET)
    return main(["export", str(tmp_path / "t.net"), "-o", str(tmp_path / "m.onnx"), *map(str, options)])


def test_map_renames_by_regular_expressions(tmp_path, capsys):
    want = foreign_weights(tmp_path / "w.npz")
    (tmp_path / "map.txt").write_text(
        "# torchvision names to ours\n^features\\.0\\.   c1.\n^features\\.1\\.(\\w+)$  c1.bn.\\1   # groups\n"
        "^classifier\\.  fc.\n"
    )
    assert export(tmp_path, "--weights", tmp_path / "w.npz", "--map", tmp_path / "map.txt") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:9] == [
        "--map: features.0.weight -> c1.weight",
        "--map: features.0.bias -> c1.bias",
        "--map: features.1.weight -> c1.bn.weight",
        "--map: features.1.bias -> c1.bn.bias",
        "--map: features.1.running_mean -> c1.bn.running_mean",
        "--map: features.1.running_var -> c1.bn.running_var",
        "--map: classifier.weight -> fc.weight",
        "--map: classifier.bias -> fc.bias",
        "ignored 1 num_batches_tracked counter (torch's batch norm)",
    ]
    got = exported_weights(tmp_path / "m.onnx")
    assert sorted(got) == sorted(want)
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr)


def test_map_by_order_pairs_by_execution_order_and_shape(tmp_path, capsys):
    want = foreign_weights(tmp_path / "w.npz")
    assert export(tmp_path, "--weights", tmp_path / "w.npz", "--map-by", "order") == 0
    assert capsys.readouterr().out.splitlines()[:9] == [
        "ignored 1 num_batches_tracked counter (torch's batch norm)",
        "--map-by order: features.0.weight (4, 3, 3, 3) -> c1.weight",
        "--map-by order: features.0.bias (4,) -> c1.bias",
        "--map-by order: features.1.weight (4,) -> c1.bn.weight",
        "--map-by order: features.1.bias (4,) -> c1.bn.bias",
        "--map-by order: features.1.running_mean (4,) -> c1.bn.running_mean",
        "--map-by order: features.1.running_var (4,) -> c1.bn.running_var",
        "--map-by order: classifier.weight (2, 144) -> fc.weight",
        "--map-by order: classifier.bias (2,) -> fc.bias",
    ]
    got = exported_weights(tmp_path / "m.onnx")
    for name, arr in want.items():
        np.testing.assert_array_equal(got[name], arr)


def test_map_by_order_after_exact_names_and_map(tmp_path, capsys):
    """Exact names first, then --map, then order for the rest."""
    rng = np.random.default_rng(1)
    arrays = {"c1.weight": rng.random((4, 3, 3, 3)), "c1.bias": rng.random(4), "head.w": rng.random((2, 144))}
    arrays |= {"bn.g": rng.random(4), "bn.b": rng.random(4), "bn.m": rng.random(4), "bn.v": rng.random(4)}
    arrays |= {"head.b": rng.random(2)}
    np.savez(tmp_path / "w.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    (tmp_path / "map.txt").write_text("^head\\.w$ fc.weight\n^head\\.b$ fc.bias\n")
    args = ("--weights", tmp_path / "w.npz", "--map", tmp_path / "map.txt", "--map-by", "order")
    assert export(tmp_path, *args) == 0
    assert capsys.readouterr().out.splitlines()[:6] == [
        "--map: head.w -> fc.weight",
        "--map: head.b -> fc.bias",
        "--map-by order: bn.g (4,) -> c1.bn.weight",
        "--map-by order: bn.b (4,) -> c1.bn.bias",
        "--map-by order: bn.m (4,) -> c1.bn.running_mean",
        "--map-by order: bn.v (4,) -> c1.bn.running_var",
    ]
    got = exported_weights(tmp_path / "m.onnx")["c1.bn.running_var"]
    np.testing.assert_array_equal(got, arrays["bn.v"].astype(np.float32))


def test_map_by_order_stops_at_the_first_shape_that_differs(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", a=np.zeros((4, 3, 3, 3), np.float32), b=np.zeros(5, np.float32))
    assert export(tmp_path, "--weights", tmp_path / "w.npz", "--map-by", "order") == 1
    assert capsys.readouterr().err == (
        "cnndsl: error: --map-by order: b (5,) cannot be c1.bias (4,): the shapes differ (the file's tensors "
        "and the network's weights are paired in order) [E081]\n"
    )


def test_names_left_over_are_each_named(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", **{"c1.weight": np.zeros((4, 3, 3, 3)), "fc.bias": np.zeros(3), "extra": np.zeros(1)})
    assert export(tmp_path, "--weights", tmp_path / "w.npz") == 1
    assert capsys.readouterr().err == (
        "cnndsl: error: the weights file does not fit the network: missing: c1.bias (4,), c1.bn.weight (4,), "
        "c1.bn.bias (4,), c1.bn.running_mean (4,), c1.bn.running_var (4,), fc.weight (2, 144) | not in the "
        "network: extra | wrong shape: fc.bias: expected (2,), got (3,) [E081]\n"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("^a b c\n", "--map {map}:1: expected PATTERN REPLACEMENT (two fields); received '^a b c' [E089]"),
        (
            "# renames\n(unclosed x\n",
            "--map {map}:2: '(unclosed' is not a valid rename: missing ), unterminated subpattern at position 0 [E089]",
        ),
        ("^(a)$ \\2\n", "--map {map}:1: '^(a)$' is not a valid rename: invalid group reference 2 at position 1 [E089]"),
    ],
)
def test_bad_map_files(tmp_path, capsys, text, message):
    foreign_weights(tmp_path / "w.npz")
    (tmp_path / "map.txt").write_text(text)
    assert export(tmp_path, "--weights", tmp_path / "w.npz", "--map", tmp_path / "map.txt") == 1
    assert capsys.readouterr().err == "cnndsl: error: " + message.format(map=tmp_path / "map.txt") + "\n"


def test_map_by_order_refuses_safetensors(tmp_path, capsys):
    (tmp_path / "w.safetensors").write_bytes(b"")
    assert export(tmp_path, "--weights", tmp_path / "w.safetensors", "--map-by", "order") == 1
    assert capsys.readouterr().err == (
        f"cnndsl: error: --map-by order: {tmp_path / 'w.safetensors'} does not keep the order of its tensors "
        "(.safetensors sorts them); use --map, or a .npz or .pt file [E084]\n"
    )


def test_safetensors_with_a_map(tmp_path, capsys):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    arrays = {f: rng.random(s).astype(np.float32) for f, s in zip(FOREIGN, SHAPES.values())}
    st.save_file(arrays, str(tmp_path / "w.safetensors"))
    (tmp_path / "map.txt").write_text("^features\\.0\\. c1.\n^features\\.1\\. c1.bn.\n^classifier\\. fc.\n")
    assert export(tmp_path, "--weights", tmp_path / "w.safetensors", "--map", tmp_path / "map.txt") == 0
    got = exported_weights(tmp_path / "m.onnx")
    np.testing.assert_array_equal(got["c1.bn.running_var"], arrays["features.1.running_var"])


def test_map_without_weights_is_refused(tmp_path, capsys):
    assert export(tmp_path, "--map-by", "order") == 1
    assert capsys.readouterr().err == (
        "cnndsl: error: --map and --map-by rename the tensors of --weights FILE; give it too [E084]\n"
    )


def test_block_classes_take_the_numbers_their_instances_differ_in(tmp_path):
    """Hand-written expectation: three calls of one block with two kernel sizes and two widths
    give one class whose arguments are the numbers that differ (equal columns one argument), the
    numbers all instances share written in; a block whose forward differs in a number (the
    drop rate) keeps a class per rate."""
    text = torch_source(
        cnndsl.load(
            "block b(c, k) { conv c/k/1/(k // 2) -> relu }\n"
            "block d(p) { residual { conv 4/3/1/1 -> drop_path p } }\n"
            "network n { input 3x16x16\n b(8, 3) -> b(16, 5) -> b(16, 3)\n conv 4/1 -> d(0.1) -> d(0.2) }"
        )
    )
    classes = {n.name: n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)}
    assert list(classes) == ["B", "D", "D2", "N"]
    assert "    def __init__(self, in_channels, out_channels, kernel_size, padding):\n" in text
    assert "        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)\n" in text
    assert (
        "        self.b = B(3, 8, 3, 1)\n        self.b_1 = B(8, 16, 5, 2)\n        self.b_2 = B(16, 16, 3, 1)\n"
        in text
    )
    assert "        self.conv = nn.Conv2d(4, 4, 3, padding=1)\n" in text  # D's: the same in every instance
