"""`cnndsl info`'s table: never a cut figure at any terminal width, --depth, --batch, --columns,
the training-memory estimate; through a real pseudo-terminal, the CLI and the API."""

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios

import pytest
from conftest import NETWORKS

import cnndsl

RESNET50 = ("info", NETWORKS / "resnet.net", "--network", "resnet50")


def run_in_pty(args, columns: int, rows: int = 60) -> str:
    """``python -m cnndsl ARGS`` on a pseudo-terminal of ``columns`` x ``rows``; its output, colours removed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnndsl", *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode("utf-8")
    assert "\x1b[" in text  # it did take the terminal path (colours)
    return re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")


def json_of(*args) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "cnndsl", *map(str, args), "--json"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def expected_cells(layer: dict) -> dict[str, str]:
    """Each column's text for one JSON row, written out here (not by the code under test)."""
    rf = layer["receptive_field"]
    return {
        "kind": layer["kind"],
        "output": "x".join(map(str, layer["output"])),
        "params": f"{layer['params']:,}",
        "MACs": f"{layer['macs']:,}",
        "connections": f"{layer['connections']:,}",
        "RF": str(rf[0]) if len(set(rf)) == 1 else "x".join(map(str, rf)),
    }


def check_table(text: str, data: dict, width: int, default_columns: bool = True) -> set[str]:
    """Every line fits; every figure shown is whole and equals the JSON's; left-out columns are named.
    Returns the columns the table shows."""
    lines = text.splitlines()
    assert all(len(ln) <= width for ln in lines), (width, max(lines, key=len))
    head = next(i for i, ln in enumerate(lines) if ln.startswith("layer "))
    shown = lines[head].split()[1:]
    all_columns = ["kind", "output", "params", "MACs", "RF"]
    missing = [c for c in all_columns if c not in shown] if default_columns else []
    if missing:
        note = next(ln for ln in lines[:head] if "left out" in ln or "columns:" in ln)
        note = " ".join(lines[lines.index(note) : head])  # the note may wrap
        assert all(c in note for c in missing), (missing, note)
    rows = lines[head + 2 : head + 2 + len(data["layers"])]
    for row, layer in zip(rows, data["layers"]):
        name, *cells = row.split()
        assert name == layer["name"] or (name.startswith("...") and layer["name"].endswith(name[3:])), (name, layer)
        want = expected_cells(layer)
        assert cells == [want[c] for c in shown], (row, layer)
    assert lines[head + 2 + len(data["layers"])] == ""  # no row left unchecked
    return set(shown)


# ResNet-50's published totals (torchvision resnet50: 25,557,032 trainable parameters; 4,089,184,256 MACs,
# the figure in networks/resnet.net's header) and the figures the issue found cut at 70 columns
PUBLISHED = ("25,557,032", "4,089,184,256")


@pytest.mark.parametrize("width", [40, 60, 70, 80, 120])
def test_resnet50_figures_whole_at_every_width(width):
    data = json_of(*RESNET50)
    text = run_in_pty(RESNET50, width)
    shown = check_table(text, data, width)
    for figure in PUBLISHED:
        assert re.search(rf"(^|\s){figure}(\s|$)", text, re.M), figure
    assert {"params", "MACs"} <= shown
    if width >= 60:  # the issue: "118,013,9", "1,048,57" and RF "36" for 363 at 70 columns
        assert {"RF"} <= shown
        for row in ("118,013,952", "1,048,576", " 363"):
            assert row in text
    if width >= 80:
        assert shown == {"kind", "output", "params", "MACs", "RF"}
        assert "fit to" not in text


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_chosen_columns_too_wide_become_paragraphs(width):
    """Columns named with --columns are never dropped: a table that does not fit is one paragraph per layer."""
    args = (*RESNET50, "--columns", "kind,output,params,macs,connections,rf", "--batch", "16")
    data = json_of(*args)
    text = run_in_pty(args, width)
    lines = text.splitlines()
    if width >= 120:
        head = next(ln for ln in lines if ln.startswith("layer "))
        assert head.split() == ["layer", "kind", "output", "params", "MACs", "connections", "RF"]
        assert "16x64x112x112" in text
        return
    assert f"{width} columns: too narrow for the table; one layer per paragraph" in " ".join(lines)
    assert all(len(ln) <= width for ln in lines)
    start = next(i for i, ln in enumerate(lines) if ln == data["layers"][0]["name"])
    i = start
    for layer in data["layers"]:
        assert lines[i] == layer["name"]
        i += 1
        pairs = []
        while lines[i].startswith("  "):
            pairs += lines[i].strip().split("  ")
            i += 1
        want = expected_cells(layer)
        want["output"] = "16x" + want["output"]
        assert pairs == [f"{c} {want[c]}" for c in ("kind", "output", "params", "MACs", "connections", "RF")]


def test_piped_table_is_80_columns_plain(cli):
    r = cli(*RESNET50, "--columns", "kind,output,params,trainable,macs,rf", "--batch", "256")
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout
    lines = r.stdout.splitlines()
    assert "80 columns: too narrow for the table; one layer per paragraph" in lines
    assert all(len(ln) <= 80 for ln in lines)


# --------------------------------------------------------------------------- --depth
# A tiny network, figures by hand: conv 4/3 on 1x8x8: 4·(3·3+1) = 40 params, 6·6·4·9 = 1,296 MACs;
# fc 2 on 4x6x6: 144·2 + 2 = 290 params, 288 MACs; inner(): conv 4/1 on 4x6x6: 4·4+4 = 20, 36·16 = 576 MACs
TINY = """
block inner() { conv 4/1 -> relu }
block outer() {
    conv 4/3 -> relu
    inner()
}
network tiny {
    input 1x8x8
    outer()
    fc 2
}
"""


def test_depth_rows_by_hand():
    m = cnndsl.load(TINY)
    full = [(r.name, r.kind, r.params, r.macs, r.inputs) for r in m.rows()]
    assert full == [
        ("outer.conv", "conv", 40, 1296, ("input",)),
        ("outer.relu", "relu", 0, 0, ("outer.conv",)),
        ("outer.inner.conv", "conv", 20, 576, ("outer.relu",)),
        ("outer.inner.relu", "relu", 0, 0, ("outer.inner.conv",)),
        ("fc", "fc", 290, 288, ("outer.inner.relu",)),
    ]
    depth1 = [(r.name, r.kind, r.params, r.macs, r.layers, r.block, r.inputs) for r in m.rows(depth=1)]
    assert depth1 == [
        ("outer.conv", "conv", 40, 1296, 1, False, ("input",)),
        ("outer.relu", "relu", 0, 0, 1, False, ("outer.conv",)),
        ("outer.inner", "inner", 20, 576, 2, True, ("outer.relu",)),
        ("fc", "fc", 290, 288, 1, False, ("outer.inner",)),
    ]
    (outer, fc) = m.rows(depth=0)
    assert (outer.name, outer.kind, outer.params, outer.macs, outer.layers) == ("outer", "outer", 60, 1872, 4)
    # output and receptive field of its last layer (the relu after the 1x1 conv: 4x6x6, RF 3)
    assert outer.output == (4, 6, 6) and outer.receptive_field == (3, 3) and outer.inputs == ("input",)
    assert outer.line == 9 and fc.inputs == ("outer",)


def test_depth_0_resnet50_cli(cli):
    r = cli(*RESNET50, "--depth", "0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = lines.index(next(ln for ln in lines if ln.startswith("layer ")))
    rows = [ln.split() for ln in lines[head + 2 : lines.index("", head)]]
    # stem, 16 bottleneck instances (3 + 4 + 6 + 3, He et al. table 1), gap, fc
    assert [r[0] for r in rows][:3] == ["stem", "layer1", "layer1_1"] and len(rows) == 19
    assert sum(r[1] == "bottleneck" for r in rows) == 16
    # layer1's first bottleneck by hand: convs 64·64 + 9·64·64 + 64·256 + shortcut 64·256 = 73,728, BN γβ
    # 2·(64 + 64 + 256 + 256) = 1,280 trainable (torchvision's layer1[0]: 75,008) + 1,280 running statistics;
    # MACs 56·56·(4,096 + 36,864 + 16,384 + 16,384) = 231,211,008; RF 11 + (3 - 1)·4 = 19 (its 3x3 conv at jump 4)
    assert rows[1] == ["layer1", "bottleneck", "256x56x56", "76,288", "231,211,008", "19"]
    assert rows[-1] == ["fc", "fc", "1000", "2,049,000", "2,048,000", "619"]
    assert "Below depth 0 each block instance is one row" in r.stdout


def test_depth_json_sums_match_totals():
    data = json_of(*RESNET50, "--depth", "0")
    assert data["depth"] == 0
    layers = data["layers"]
    assert sum(x["params"] for x in layers) == 25_610_152 and sum(x["macs"] for x in layers) == 4_089_184_256
    assert layers[1]["layers"] == 12 and layers[1]["block"] is True and layers[1]["inputs"] == ["stem"]


def test_depth_and_batch_usage_errors(cli):
    for args, text in [
        (("--depth", "-1"), "expected a block depth of 0 or more"),
        (("--batch", "0"), "expected a batch size of 1 or more"),
        (("--columns", "prams"), "unknown column 'prams'; did you mean 'params'?"),
        (("--columns", "params,params"), "expected distinct column names"),
        (("--columns", "params,layer"), "the layer name is always the first column"),
    ]:
        r = cli(*RESNET50, *args)
        assert r.returncode == 2 and text in r.stderr, (args, r.stderr)


# --------------------------------------------------------------------------- --batch, memory
def test_training_memory_by_hand():
    # conv 4/3 on 1x8x8 -> relu -> fc 2; float32 (4 bytes), batch 2
    m = cnndsl.load("network n { input 1x8x8\n conv 4/3 -> relu -> fc 2 }")
    mem = m.memory(batch=2)
    # outputs kept for backward: input 64 + conv 144 + relu 144 + fc 2 = 354 elements, x2 samples x4 bytes
    assert mem.activations == 354 * 2 * 4 == 2832
    # params 40 + 290 = 330, all trainable: gradients and SGD momentum one buffer each
    assert (mem.params, mem.gradients, mem.momentum) == (1320, 1320, 1320)
    assert mem.total == 2832 + 3 * 1320
    # peak of a forward pass: conv's input and output alive at once (64 + 144), the relu's (144 + 144)
    assert mem.peak_inference == 288 * 4 * 2


def test_batch_cli_and_json(cli):
    r = cli("info", NETWORKS / "lenet5.net", "--batch", "8")
    assert r.returncode == 0, r.stderr
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("C3 "))
    assert row.split() == ["C3", "conv", "8x16x10x10", "1,516", "150,000", "14"]  # MACs stay per sample
    assert "Shapes and memory for batch 8" in r.stdout
    assert "SGD momentum, float32, batch 8" in r.stdout.replace("\n", " ")
    single = json_of("info", NETWORKS / "lenet5.net")
    data = json_of("info", NETWORKS / "lenet5.net", "--batch", "8")
    assert data["batch"] == 8 and single["batch"] == 1
    assert data["memory"]["peak_inference_bytes"] == 8 * single["totals"]["activation_bytes"]
    # LeNet-5: 60,000 trainable (LeCun et al. 1998) -> 240,000 B of gradients, 240,000 B momentum;
    # 60,840 parameters with the RBF centres -> 243,360 B
    mem = data["memory"]
    assert (mem["param_bytes"], mem["gradient_bytes"], mem["momentum_bytes"]) == (243_360, 240_000, 240_000)
    # every output kept: 1x32x32 + C1 6x28x28 (twice: conv, tanh) + ... summed by hand from the paper's maps
    kept = 1024 + 2 * (6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84) + 10
    assert mem["activations_kept_bytes"] == kept * 8 * 4
    assert mem["training_bytes"] == kept * 32 + 243_360 + 480_000
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("training memory"))
    assert line.split()[2:4] == [f"{kept * 32 + 723_360:,}", "B"]


# --------------------------------------------------------------------------- --columns
def test_columns_inputs_and_trainable(cli):
    r = cli("info", NETWORKS / "lenet5.net", "--columns", "trainable,params,inputs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert next(ln for ln in lines if ln.startswith("layer ")).split() == ["layer", "trainable", "params", "inputs"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln[:2] in ("C1", "S2", "ou")}
    assert rows["C1"] == ["yes", "156", "input"]
    assert rows["C1.scaled_tanh"] == ["-", "0", "C1"]
    assert rows["out"] == ["no", "840", "F6.scaled_tanh"]  # the RBF's centres are fixed


def test_inputs_of_a_residual():
    m = cnndsl.load("network n { input 4x8x8\n residual { conv 4/3/1/1 -> relu }\n relu }")
    assert [(r.name, r.inputs) for r in m.rows()] == [
        ("conv", ("input",)),
        ("relu", ("conv",)),
        ("residual", ("input", "relu")),  # the shortcut and the branch, like Keras' "Connected to"
        ("relu_1", ("residual",)),
    ]


def test_json_columns_keep_only_their_keys():
    data = json_of("info", NETWORKS / "lenet5.net", "--columns", "inputs,trainable,rf")
    assert data["layers"][0] == {
        "name": "C1",
        "inputs": ["input"],
        "trainable": True,
        "receptive_field": [5, 5],
        "jump": [1, 1],
    }
    assert data["layers"][1]["trainable"] is None  # no parameters


def test_the_column_lists_agree():
    from cnndsl.cli import _INFO_COLUMNS
    from cnndsl.ir.model import JSON_KEYS
    from cnndsl.tools.table import COLUMNS

    assert set(_INFO_COLUMNS) == set(COLUMNS) == set(JSON_KEYS)


def test_api_narrow_default_table_becomes_paragraphs():
    """VGG-16's fc6 has 102,764,544 parameters (Simonyan & Zisserman 2014: 7·7·512·4096 + 4096): at 40
    columns even name, params and MACs do not fit, so every default column is shown as a paragraph."""
    from cnndsl.tools.table import format_plain

    m = cnndsl.load(str(NETWORKS / "vgg16.net"), network="vgg16")
    text = format_plain(m, width=40)
    assert "40 columns: too narrow for the table; one layer per paragraph" in " ".join(text.splitlines())
    assert all(len(ln) <= 40 for ln in text.splitlines())
    assert "  params 102,764,544  MACs 102,760,448" in text  # fc6: 25,088 x 4,096 MACs
    assert "138,357,544" in text  # VGG-16's published total parameters (torchvision vgg16)


def test_api_unknown_column_is_a_value_error():
    m = cnndsl.load("network n { input 1x8x8\n relu }")
    from cnndsl.tools.table import format_plain

    with pytest.raises(ValueError, match="unknown column 'x'; choose from kind, "):
        format_plain(m, columns=("x",))
    with pytest.raises(ValueError, match="unknown column 'y'; choose from kind, "):
        m.to_json(columns=("y",))


_LONG = "FLOPs = 2 x MACs; connections = MACs without the bias; RF = receptive field (size, stride)"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "one",
        _LONG,
        "a " + "x" * 30 + " b c",  # a word wider than the line: alone on its line, whole
        "x" * 30 + " a b",
        "a " * 20 + "b",
        "double  spaces  go to textwrap",
        "  leading and trailing  ",
        "tab\there",
        "hyphen-ated words-with-dashes " * 3,
    ],
)
@pytest.mark.parametrize("width", [1, 5, 12, 20, 29, 30, 31, 80])
def test_wrap_is_textwraps(text, width):
    # the table wraps its header's paragraphs without importing textwrap (start-up): the same lines
    import textwrap

    from cnndsl.tools.table import _wrap

    options = {"break_long_words": False, "break_on_hyphens": False}
    assert _wrap(text, width, **options) == textwrap.wrap(text, width, **options)
    assert _wrap(text, width) == textwrap.wrap(text, width)
