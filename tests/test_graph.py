"""cnndsl graph: diagrams (SVG, PNG, DOT) of networks, drawn from the IR.

Expected counts are hand counts from the papers' architectures (sources in the
network files' headers), not from the code under test:
- LeNet-5 (LeCun et al. 1998): input, C1, tanh, S2, tanh, C3, tanh, S4, tanh,
  C5, tanh, F6, tanh, RBF = 14 nodes, a chain of 13 edges; C1 is 6x28x28.
- ResNet-18 (He et al. 2015, table 1, torchvision layout): stem conv, bn, relu,
  maxpool (4); 8 basic blocks of conv, bn, relu, conv, bn, residual, relu (7
  each, 56); 3 projection shortcuts conv 1x1 + bn (6); gap, fc (2); with the
  input 69 nodes. Edges: one per layer (68) plus the second input of each of
  the 8 residual adds = 76. The first conv is 64x112x112 (7x7/2, pad 3).
- ResNet-152: 50 bottlenecks of 10 nodes, 4 projections of 2, stem 4, gap + fc,
  input = 515.
- DenseNet-121 (Huang et al. 2017, table 1): 6+12+24+16 = 58 dense layers of
  bn, relu, conv, bn, relu, conv, concat (7 each, 406); 3 transitions of bn,
  relu, conv, avgpool (12); stem 4; bn, relu, gap, fc (4); input = 427.
- GoogLeNet (Szegedy et al. 2014, table 1) with every block collapsed: input,
  conv1, relu, pool1, norm1, conv2_reduce, relu, conv2, relu, norm2, pool2 (11);
  9 inception modules, 2 auxiliary classifiers, pool3, pool4, pool5, dropout,
  fc (16) = 27 boxes, plus its 3 outputs.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from itertools import pairwise

import pytest
from conftest import NETWORKS

from cnndsl import load
from cnndsl.layers.arith import fmt_shape
from cnndsl.tools.diagram import diagram, layer_op, render_diagram

SVG = "{http://www.w3.org/2000/svg}"


def all_networks():
    for path in sorted(NETWORKS.glob("*.net")):
        from cnndsl import load_module

        for name in load_module(str(path)).networks:
            yield path, name


def parse_svg(data: bytes):
    root = ET.fromstring(data)
    nodes = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    edges = [(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    return root, nodes, edges


def node_text(g) -> list[str]:
    return [t.text for t in g.iter(f"{SVG}text")]


@pytest.mark.parametrize("path,name", list(all_networks()), ids=lambda v: getattr(v, "stem", v))
def test_every_network_draws_well_formed_svg_with_every_ir_edge(path, name):
    model = load(str(path), network=name)
    g = model.graph
    root, nodes, edges = parse_svg(render_diagram(diagram(model), ".svg"))
    assert root.tag == f"{SVG}svg"
    assert len(nodes) == len(g.nodes) + len(g.outputs)
    drawn = set(edges)
    for n in g.nodes:
        for i in n.inputs:
            assert (f"n{i}", f"n{n.id}") in drawn, (n.name, g.nodes[i].name)
        texts = node_text(nodes[f"n{n.id}"])
        assert texts[0] == n.name and texts[2].startswith(fmt_shape(n.shape))
    for out, i in g.outputs:
        assert (f"n{i}", f"out:{out}") in drawn
    assert len(edges) == len(drawn)  # no edge drawn twice


@pytest.mark.parametrize(
    "file,network,depth,boxes,edges",
    [
        ("lenet5.net", None, None, 14 + 1, 13 + 1),
        ("resnet.net", "resnet18", None, 69 + 1, 76 + 1),
        ("resnet.net", "resnet152", None, 515 + 1, None),
        ("densenet121.net", None, None, 427 + 1, None),
        # collapsed: ResNet-18 = input, stem, 8 basic blocks, gap, fc, output (a chain)
        ("resnet.net", "resnet18", 0, 13, 12),
        # DenseNet-121 at depth 0: input, conv0 (conv, bn, relu), pool0, 4 dense blocks,
        # 3 transitions, norm5 (bn, relu), gap, fc, output: a chain
        ("densenet121.net", None, 0, 17, 16),
        # depth 1: the 58 dense layers collapse, the transitions (depth-1 calls) stay open
        ("densenet121.net", None, 1, 1 + 4 + 58 + 12 + 4 + 1, None),
        # GoogLeNet collapsed: 27 boxes and 3 outputs; a tree (aux heads branch off 4a, 4d)
        ("googlenet.net", None, 0, 30, 29),
    ],
)
def test_node_and_edge_counts_match_hand_counts(file, network, depth, boxes, edges):
    d = diagram(load(str(NETWORKS / file), network=network), depth)
    _, nodes, drawn = parse_svg(render_diagram(d, ".svg"))
    assert len(nodes) == boxes
    if edges is not None:
        assert len(drawn) == edges


def test_labels_carry_kind_fields_and_shapes():
    _, nodes, _ = parse_svg(render_diagram(diagram(load(str(NETWORKS / "lenet5.net"))), ".svg"))
    by_name = {node_text(g)[0]: node_text(g) for g in nodes.values()}
    assert by_name["C1"][1:] == ["conv 6/5/1/0", "6x28x28 · 156 params"]  # 6*(25+1) = 156
    assert by_name["S2"][2].startswith("6x14x14")
    assert by_name["F6"][1:] == ["fc 84", "84 · 10.2K params"]  # 84*(120+1) = 10,164
    _, nodes, _ = parse_svg(render_diagram(diagram(load(str(NETWORKS / "resnet.net"), network="resnet18")), ".svg"))
    by_name = {node_text(g)[0]: node_text(g) for g in nodes.values()}
    assert by_name["stem.conv"][1:] == ["conv 64/7/2/3", "64x112x112 · 9.4K params"]  # 64*3*49 = 9,408
    assert by_name["stem.maxpool"][1:] == ["maxpool 3/2/1", "64x56x56"]
    assert by_name["layer2.shortcut"][1:] == ["conv 128/1/2/0", "128x28x28 · 8.2K params"]  # 128*64
    assert by_name["fc"][2] == "1000 · 513.0K params"  # 512*1000 + 1000


def test_collapsed_block_shows_call_shape_and_total_params():
    d = diagram(load(str(NETWORKS / "googlenet.net")), 0)
    i3a = next(b for b in d.boxes if b.name == "i3a")
    # Szegedy et al. table 1, inception 3a: 256x28x28 and 159K params (bias included: 163,696)
    assert (i3a.role, i3a.op, i3a.shape) == ("block", "inception(64, 96, 128, 16, 32, 32)", "256x28x28")
    assert i3a.params == 64 * 193 + 96 * 193 + 128 * (96 * 9 + 1) + 16 * 193 + 32 * (16 * 25 + 1) + 32 * 193
    assert i3a.layers == 2 + 4 + 4 + 3 + 1  # the four branches of figure 2(b) and the concat


def test_layer_op_shows_non_default_keywords():
    m = load("network n { input 8x16x16\n conv 8/3/1/same groups=2 dilation=2 -> maxpool 3/2 ceil }")
    ops = [layer_op(n.kind, n.attrs) for n in m.graph.nodes[1:]]
    assert ops == ["conv 8/3/1/same groups=2 dilation=2", "maxpool 3/2/0 ceil"]


def test_layout_keeps_edges_downwards_and_boxes_apart():
    from cnndsl.tools.diagram_layout import layout

    d = diagram(load(str(NETWORKS / "googlenet.net")))
    p = layout(d)
    for a, b, points in p.edges:
        assert points[0][1] == p.boxes[a][1] + p.boxes[a][3] and points[-1][1] == p.boxes[b][1]
        assert all(q[1] >= r[1] for r, q in pairwise(points))
    rects = sorted(p.boxes.values(), key=lambda r: r[1])
    for i, (x, y, w, h) in enumerate(rects):
        for x2, y2, w2, _ in rects[i + 1 :]:
            if y2 >= y + h:
                break
            assert x2 >= x + w or x2 + w2 <= x  # same band: no overlap
        assert x >= 0 and x + w <= p.width and y + h <= p.height


def test_dot_output_is_dot_like():
    d = diagram(load(str(NETWORKS / "resnet.net"), network="resnet18"))
    text = render_diagram(d, ".dot").decode()
    assert text.startswith('digraph "resnet18" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    node_lines = [line for line in text.splitlines() if re.match(r'^  "[^"]+" \[label=', line)]
    edge_lines = [line for line in text.splitlines() if re.match(r'^  "[^"]+" -> "[^"]+";$', line)]
    assert len(node_lines) == 70 and len(edge_lines) == 77
    assert '"n1" [label="stem.conv\\nconv 64/7/2/3\\n64x112x112' in text


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cli_writes_svg_png_dot(cli, tmp_path):
    net = NETWORKS / "lenet5.net"
    r = cli("graph", net, "-o", tmp_path / "l.svg")
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout == f"wrote {tmp_path / 'l.svg'} ({(tmp_path / 'l.svg').stat().st_size:,} bytes): network lenet5, "
        "15 nodes, 14 edges, all blocks expanded\n"
    )
    ET.parse(tmp_path / "l.svg")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "l.svg").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    r = cli("graph", net, "-o", tmp_path / "l.png")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    from cnndsl.tools.diagram_layout import layout

    w, h = png_size((tmp_path / "l.png").read_bytes())
    p = layout(diagram(load(str(net))))
    assert w == round(max(p.width, 420) * 2) and 2 * p.height < h < 2 * p.height + 200  # 2x, plus the caption
    with Image.open(tmp_path / "l.png") as im:
        im.verify()
    r = cli("graph", net, "-o", tmp_path / "l.dot")
    assert r.returncode == 0 and (tmp_path / "l.dot").read_text().startswith('digraph "lenet5"')


def test_cli_default_output_and_depth(cli, tmp_path):
    r = cli("graph", NETWORKS / "resnet.net", "-n", "resnet18", "--depth", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.startswith("wrote resnet18.svg (") and "13 nodes, 12 edges, blocks below depth 0 collapsed" in r.stdout
    )
    _, nodes, _ = parse_svg((tmp_path / "resnet18.svg").read_bytes())
    assert sum(g.get("data-role") == "block" for g in nodes.values()) == 9  # stem + 8 basic blocks


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["-o", "x.jpg"], 2, "unknown format .jpg of 'x.jpg'; choose .svg, .png or .dot"),
        (["-o", "x"], 2, "unknown format (no extension)"),
        (["--depth", "-1"], 2, "expected a block depth of 0 or more"),
    ],
)
def test_usage_errors(cli, tmp_path, args, code, message):
    r = cli("graph", NETWORKS / "lenet5.net", *args, cwd=tmp_path)
    assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_user_errors_leave_existing_output_untouched(cli, tmp_path, netfile):
    out = tmp_path / "keep.svg"
    out.write_text("old")
    bad = netfile("network n { input 3x8x8\n conv 4/9 }")  # a 9x9 window on 8x8
    r = cli("graph", bad, "-o", out)
    assert r.returncode == 1 and f"{bad}:2:2: error:" in r.stderr and "Traceback" not in r.stderr
    r = cli("graph", tmp_path / "missing.net", "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = cli("graph", NETWORKS / "lenet5.net", "-o", tmp_path / "no" / "dir.svg")
    assert r.returncode == 1 and "directory" in r.stderr and "Traceback" not in r.stderr
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.svg", "t.net"]  # no temp files left


def test_output_equal_to_input_is_refused(cli, tmp_path):
    src = tmp_path / "net.svg"  # a .net file that happens to end in .svg
    text = "network n { input 3x8x8\n conv 4/3 }\n"
    src.write_text(text)
    r = cli("graph", src, "-o", src)
    assert r.returncode == 1 and "is an input of this command" in r.stderr and "[E083]" in r.stderr
    assert src.read_text() == text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_renders_the_resnet18_svg(tmp_path):
    model = load(str(NETWORKS / "resnet.net"), network="resnet18")
    d = diagram(model)
    svg = tmp_path / "r.svg"
    svg.write_bytes(render_diagram(d, ".svg"))
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [*flags, "--dump-dom", svg.as_uri()], capture_output=True, text=True, timeout=90, check=True
    ).stdout
    assert "parsererror" not in dom and dom.count('class="node"') == 70
    # the screenshot: the stem conv's box is filled with its shade where the SVG says it is
    from PIL import Image

    from cnndsl.tools.diagram_draw import _canvas, shade
    from cnndsl.tools.diagram_layout import layout

    p = layout(d)
    width, _, top = _canvas(d, p)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", f"--window-size={width:.0f},700", svg.as_uri()],
        capture_output=True,
        timeout=90,
        check=True,
    )
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        x, y, w, h = p.boxes["n1"]
        inside = rgb.getpixel((round(x + 3), round(top + y + 3)))
        outside = rgb.getpixel((round(x + w + 3), round(top + y + h / 2)))
    box = next(b for b in d.boxes if b.id == "n1")
    assert all(abs(a - b) <= 3 for a, b in zip(inside, shade(box, max(b.params for b in d.boxes))))
    assert inside != (255, 255, 255) and outside == (255, 255, 255)


def test_docstring_examples_hold():
    import doctest

    import cnndsl.tools.diagram
    import cnndsl.tools.diagram_draw
    import cnndsl.tools.diagram_layout

    for module in (cnndsl.tools.diagram, cnndsl.tools.diagram_layout, cnndsl.tools.diagram_draw):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
