"""Diagnostics: exact message text, line and column for each error kind (LANGUAGE.md §9).

Each case is a small file and the first line of the diagnostic it must produce,
written by hand as the message we want users to read.
"""

import pytest

import cnndsl
from cnndsl import CnnError
from cnndsl.lang.parser import SYNTAX_EXAMPLES, UNCLOSED, parse_text


def net(*lines, shape="3x8x8"):
    return "network n {\n" + f"    input {shape}\n" + "".join(f"    {ln}\n" for ln in lines) + "}\n"


CASES = [
    # --- syntax
    ("syntax: unexpected token", net("conv 8/3 )"), "3:14: error: unexpected ')'; expected"),
    (
        "syntax: chain ends with ->",
        net("conv 8/3 ->"),
        "4:1: error: unexpected '}'; expected '@', '_', 'if', 'repeat', '{', a name\n  hint: a chain cannot end with '->'",
    ),
    # said at the '{' left open (issue 14), with where the file ends as a note
    (
        "syntax: unclosed brace",
        "network n {\n    input 3x8x8\n    relu\n",
        "1:11: error: this '{' is not closed: '}' is missing",
    ),
    ("syntax: unexpected character", net("conv 8/3 $"), "3:14: error: unexpected character '$'"),
    (
        "syntax: integer division outside parentheses",
        net("conv 64//3"),
        "3:13: error: unexpected '/'; expected '(', '-', '@', 'false', 'in', 'true', a name, a number, ...\n"
        "  hint: '//' (integer division) needs parentheses: conv (in.c // 2)/1",
    ),
    (
        "syntax: misspelt top-level keyword",
        "networks n {\n}\n",
        "1:1: error: unexpected 'networks'; expected 'block', 'default', 'fn', 'import', 'network', 'table', end of file",
    ),
    # --- names and arguments
    ("unknown layer kind", net("conb 8/3"), "3:5: error: unknown layer kind or block 'conb'; did you mean 'conv'?"),
    ("unknown keyword", net("conv 8/3 strid=2"), "3:14: error: conv has no keyword 'strid'; did you mean 'stride'?"),
    (
        "stray field",
        net("conv 64 3"),
        "3:13: error: unexpected field '3'; fields are separated by '/' (conv 64/3/1/1) and keywords are written name=value",
    ),
    (
        "too many fields",
        net("maxpool 2/2/0/1"),
        "3:19: error: maxpool takes at most 3 fields (size/stride/pad); received 4",
    ),
    ("missing required field", net("conv"), "3:5: error: conv needs filters: conv filters/size/stride/pad"),
    ("keyword given twice", net("conv 8/3 filters=4"), "3:14: error: filters is given twice"),
    ("keyword without value", net("conv 8/3 groups"), "3:14: error: keyword groups needs a value: groups=..."),
    ("wrong argument type", net("conv 8/3 bias=3"), "3:14: error: bias must be true or false; received bias=3"),
    (
        "unknown parameter name",
        net("conv k/3"),
        "3:10: error: filters must be an integer; received filters=k (unknown name 'k')",
    ),
    (
        "bad enum value",
        net("upsample 2 mode=cubic"),
        "3:16: error: mode must be nearest or linear; received mode=cubic",
    ),
    (
        "dimension literal of the wrong rank",
        net("conv 8/3x3x3"),
        "3:12: error: size has 3 values but the input has 2 spatial axes; received size=3x3x3",
    ),
    ("zero filters", net("conv 0/3"), "3:10: error: filters must be at least 1; received filters=0"),
    ("division by zero", net("conv (4 // 0)/3"), "3:11: error: division by zero in '//'"),
    (
        "in.h on a 1-D input",
        net("conv (in.h)/3", shape="3x8"),
        "3:11: error: in.h does not exist for the input 3x8; expected one of in.c, in.l",
    ),
    # --- shapes
    (
        "kernel larger than the input",
        net("conv 256/5", shape="256x3x3"),
        "3:5: error: conv 256/5 needs at least 5x5 input, got 256x3x3 (padding 0)",
    ),
    (
        "groups do not divide",
        net("conv 8/3 groups=2"),
        "3:14: error: groups must divide both the input channels and the filters; received groups=2, input channels=3, filters=8",
    ),
    (
        "spatial layer after fc",
        net("fc 10 -> conv 3/3"),
        "3:14: error: conv 3/3 needs an input with spatial axes (CxL, CxHxW or CxDxHxW); received 10",
    ),
    (
        "add of mismatched shapes names every branch",
        net("add { _ ; conv 16/3/1/1 }"),
        "3:5: error: add { _ ; conv 16/3/1/1 }: branches must have equal shapes: branch 1 (_) gives 3x8x8; branch 2 (conv 16/3/1/1) gives 16x8x8",
    ),
    (
        "concat of mismatched spatial sizes",
        net("concat { conv 8/3 ; _ }"),
        "3:5: error: concat { conv 8/3 ; _ }: spatial sizes differ (concat(crop=center) crops them to the smallest): branch 1 (conv 8/3) gives 8x6x6; branch 2 (_) gives 3x8x8",
    ),
    (
        "mul that does not broadcast",
        net("mul { _ ; conv 4/1 }"),
        "3:5: error: mul { _ ; conv 4/1 }: shapes do not broadcast (each axis must be equal or 1): branch 1 (_) gives 3x8x8; branch 2 (conv 4/1) gives 4x8x8",
    ),
    (
        "identity shortcut that changes shape",
        net("residual(shortcut=identity) { conv 8/3/1/1 }"),
        "3:5: error: residual(shortcut=identity) needs the body to keep the shape; input 3x8x8, body gives 8x8x8",
    ),
    (
        "pooling padding over half the window",
        net("maxpool 3/2/2"),
        "3:17: error: pooling padding must be at most half the window; received pad=2 with size=3",
    ),
    ("dropout probability", net("dropout 1.5"), "3:13: error: p must be in [0, 1); received p=1.5"),
    (
        "unpool of something that is not a maxpool",
        net("a: conv 3/1", "unpool of=@a"),
        "4:12: error: of=@a must name a maxpool layer, but it names a conv layer",
    ),
    # --- labels and outputs
    ("unknown label", net("@foo -> conv 8/3"), "3:5: error: unknown label @foo"),
    (
        "label used before definition",
        net("@x -> relu", "x: conv 3/1"),
        "3:5: error: label @x is used before it is defined",
    ),
    ("duplicate label", net("x: conv 8/3", "x: conv 8/3"), "4:5: error: label 'x' is defined twice"),
    (
        "reference in the middle of a chain",
        net("conv 8/3 -> @x"),
        "3:17: error: @x can only start a chain; to continue from it, start a new line with @x",
    ),
    ("output of an unknown label", net("a: relu", "output b"), "4:12: error: unknown label @b"),
    # --- networks, blocks, tables
    (
        "network without input",
        "network n {\n    conv 8/3\n}\n",
        "2:5: error: network n must start with its input shape; expected input CxHxW (e.g. input 3x224x224)",
    ),
    (
        "block calling itself",
        "block b(c) {\n    conv c/3\n    b(c)\n}\nnetwork n {\n    input 3x8x8\n    b(4)\n}\n",
        "3:5: error: block b calls itself: b -> b",
    ),
    (
        "unknown block parameter",
        "block b(c) {\n    conv c/3\n}\nnetwork n {\n    input 3x8x8\n    b(4, d=1)\n}\n",
        "6:10: error: block b has no parameter 'd'",
    ),
    (
        "missing block argument",
        "block b(c) {\n    conv c/3\n}\nnetwork n {\n    input 3x8x8\n    b()\n}\n",
        "6:5: error: block b(c) needs a value for 'c'",
    ),
    (
        "table index out of range",
        "table t = [[0, 9]]\nnetwork n {\n    input 3x8x8\n    conv 1/3 table=t\n}\n",
        "4:14: error: table t row 0 lists input map 9, but the input has 3 maps (0..2)",
    ),
    (
        "negative repeat count",
        net("repeat (0 - 1) { relu }"),
        "3:13: error: a repeat count must be an integer of at least 0; received -1",
    ),
    (
        "unknown kind in default",
        "default conf bias=false\nnetwork n {\n    input 3x8x8\n}\n",
        "1:9: error: unknown layer kind 'conf' in default; did you mean 'conv'?",
    ),
    (
        "import of a missing file",
        'import "nothere.net"\nnetwork n {\n    input 3x8x8\n}\n',
        "1:1: error: cannot read nothere.net: no such file",
    ),
    (
        "output outside a network",
        "block b() {\n    output x\n}\nnetwork n {\n    input 3x8x8\n    b()\n}\n",
        "2:5: error: output is only allowed in the body of a network",
    ),
    # --- the kinds of LANGUAGE.md §10.5
    (
        "slice outside the channels",
        net("slice 0/40", shape="32x8x8"),
        "3:13: error: slice takes channels FROM/TO with FROM < TO ≤ 32 (the input's channels); "
        "received slice 0/40 on 32 channels",
    ),
    (
        "slice FROM not before TO",
        net("slice 16/8", shape="32x8x8"),
        "3:11: error: slice takes channels FROM/TO with FROM < TO ≤ 32 (the input's channels); "
        "received slice 16/8 on 32 channels",
    ),
    (
        "space_to_depth on a size it does not divide",
        net("space_to_depth 2", shape="3x7x8"),
        "3:20: error: space_to_depth 2 needs every spatial size divisible by 2; received 3x7x8",
    ),
    (
        "adaptive pooling to a larger size",
        net("adaptive_maxpool 3x8", shape="3x4x4"),
        "3:22: error: adaptive_maxpool to 3x8 needs an input of at least 3x8; received 3x4x4",
    ),
    ("softplus beta not positive", net("softplus beta=0"), "3:14: error: beta must be positive; received beta=0.0"),
    ("drop_path rate out of range", net("drop_path 1"), "3:15: error: p must be in [0, 1); received p=1.0"),
    ("drop_path without rate", net("drop_path"), "3:5: error: drop_path needs p: drop_path p"),
    ("ln over unknown", net("ln over=space"), "3:8: error: over must be all or channels; received over=space"),
]


@pytest.mark.parametrize("what, source, expected", CASES, ids=[c[0] for c in CASES])
def test_error_message(what, source, expected, netfile):
    path = netfile(source)
    with pytest.raises(CnnError) as err:
        cnndsl.load(path)
    text = err.value.diagnostic.format()
    assert text.startswith(f"{path}:{expected}"), text
    # Every error quotes its line and puts a caret under the culprit.
    lines = text.split("\n")
    quoted = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("^")]
    assert quoted, text


def test_at_least_25_distinct_error_kinds():
    assert len({c[0] for c in CASES}) >= 25


def test_caret_sits_under_the_culprit(netfile):
    path = netfile(net("conv 8/3 strid=2"))
    with pytest.raises(CnnError) as err:
        cnndsl.load(path)
    lines = err.value.diagnostic.format().split("\n")
    assert lines[1] == "        conv 8/3 strid=2"
    assert lines[2] == "                 ^~~~~~~"


def test_block_call_chain_is_noted(netfile):
    src = (
        "block inner(k) {\n    conv k/5\n}\n"
        "block outer() {\n    inner(4)\n}\n"
        "network n {\n    input 3x4x4\n    outer()\n}\n"
    )
    path = netfile(src)
    with pytest.raises(CnnError) as err:
        cnndsl.load(path)
    text = err.value.diagnostic.format()
    assert f"  in block inner called at {path}:5:5" in text
    assert f"  in block outer called at {path}:9:5" in text
    assert text.index("inner called") < text.index("outer called")  # innermost first


def test_duplicate_label_points_at_the_first():
    with pytest.raises(CnnError) as err:
        cnndsl.load(net("x: conv 8/3", "x: conv 8/3"))
    assert err.value.diagnostic.notes[0][1].line == 3


def test_unknown_define(netfile):
    path = netfile("network n(classes = 10) {\n    input 3x8x8\n}\n")
    with pytest.raises(CnnError, match=r"-D clases: network n has no parameter 'clases'; did you mean 'classes'\?"):
        cnndsl.load(path, defines={"clases": "3"})


def test_import_cycle(tmp_path):
    (tmp_path / "a.net").write_text('import "b.net"\n')
    (tmp_path / "b.net").write_text('import "a.net"\n')
    with pytest.raises(CnnError, match="import cycle: a.net -> b.net -> a.net"):
        cnndsl.load_module(tmp_path / "a.net")


@pytest.mark.parametrize("hint, examples", list(SYNTAX_EXAMPLES.items()))
def test_syntax_example_table(hint, examples):
    """Every malformed example in the table fails to parse and gets its hint."""
    for text in examples:
        with pytest.raises(CnnError) as err:
            parse_text(text, "x.net")
        d = err.value.diagnostic
        if hint == UNCLOSED:  # said at the '{' left open instead of a hint at the end of the file
            assert d.message == "this '{' is not closed: '}' is missing", (text, d.message)
            assert text.splitlines()[d.span.line - 1][d.span.column - 1] == "{", (text, d.span)
            assert d.notes[0][0] == "the file ends with it still open"
        else:
            assert f"hint: {hint}" in d.message, (text, d.message)


# Issue 14: what a newcomer needed to read. Each case: the file (t.net), the whole of
# `cnndsl info t.net`'s standard error (exit status 1).
NEWCOMER_HINTS = [
    (
        "input written HxWxC",
        "network n {\n    input 32x32x3\n    conv 16/3/1/1 -> relu\n    maxpool 2\n    conv 32/3/1/1 -> relu\n"
        "    maxpool 2\n    fc 10\n}\n",
        "t.net:6:5: error: maxpool 2 needs at least 2x2 input, got 32x16x1 (padding 0)\n"
        "  hint: the input is CxHxW (channels first): input 32x32x3 is 32 channels of 32x3; "
        "for 3 channels of 32x32 write input 3x32x32 [E019]\n"
        "        maxpool 2\n"
        "        ^~~~~~~~~\n",
    ),
    (
        "missing '}': said at the '{' left open",
        "network n {\n    input 3x8x8\n    add {\n        _\n        conv 3/3/1/1\n\n    relu\n}\n",
        "t.net:3:9: error: this '{' is not closed: '}' is missing [E001]\n"
        "        add {\n"
        "            ^\n"
        "  the file ends with it still open at t.net:8:2\n",
    ),
    (
        "activation as a keyword",
        "network n {\n    input 3x8x8\n    conv 8/3 activation=relu\n}\n",
        "t.net:3:14: error: conv has no keyword 'activation'; relu is a layer of its own, chained after: "
        "conv 8/3 -> relu [E011]\n"
        "        conv 8/3 activation=relu\n"
        "                 ^~~~~~~~~~~~~~~\n",
    ),
    *[
        (
            f"{word}: another framework's name",
            f"network n {{\n    input 3x8x8\n    {word} 8\n}}\n",
            f"t.net:3:5: error: unknown layer kind or block '{word}'; did you mean '{kind}'? [E010]\n"
            f"        {word} 8\n"
            f"        ^{'~' * (len(word) - 1)}\n",
        )
        for word, kind in [
            ("dense", "fc"),
            ("linear", "fc"),
            ("Linear", "fc"),
            ("batchnorm", "bn"),
            ("BatchNorm2d", "bn"),
            ("Conv2d", "conv"),
        ]
    ],
    (
        "default with another framework's name",
        "default dense bias=false\nnetwork n {\n    input 3x8x8\n}\n",
        "t.net:1:9: error: unknown layer kind 'dense' in default; did you mean 'fc'? [E010]\n"
        "    default dense bias=false\n"
        "            ^~~~~\n",
    ),
    (
        "Python's False",
        "network n {\n    input 3x8x8\n    conv 8/3 bias=False\n}\n",
        "t.net:3:14: error: bias must be true or false; received bias=False (unknown name 'False'; "
        "did you mean 'false'?) [E018]\n"
        "        conv 8/3 bias=False\n"
        "                 ^~~~~~~~~~\n",
    ),
    (
        "'//' comment after a step",
        "network n {\n    input 3x8x8\n    conv 8/3 // first layer\n}\n",
        "t.net:3:15: error: unexpected '/'; expected '(', '-', '@', 'false', 'in', 'true', a name, a number, ...\n"
        "  hint: comments start with '#', not '//': # first layer [E001]\n"
        "        conv 8/3 // first layer\n"
        "                  ^\n",
    ),
    (
        "'//' comment on its own line",
        "network n {\n    input 3x8x8\n    // a comment\n    conv 8/3\n}\n",
        "t.net:3:5: error: unexpected '//'; expected '@', '_', 'default', 'if', 'input', 'let', 'output', 'repeat', ...\n"
        "  hint: comments start with '#', not '//': # a comment [E001]\n"
        "        // a comment\n"
        "        ^~\n",
    ),
    (
        "'//' as integer division keeps its hint",
        "network n {\n    input 3x8x8\n    conv (in.c) // 2\n}\n",
        "t.net:3:18: error: unexpected '/'; expected '(', '-', '@', 'false', 'in', 'true', a name, a number, ...\n"
        "  hint: '//' (integer division) needs parentheses: conv (in.c // 2)/1 [E001]\n"
        "        conv (in.c) // 2\n"
        "                     ^\n",
    ),
    (
        "residual whose shortcut cannot map the shapes, in a block",
        "block unit(c) {\n    residual {\n        conv c/3\n    }\n}\nnetwork n {\n    input 3x8x8\n    unit(8)\n}\n",
        "t.net:2:5: error: residual: no strided shortcut maps 3x8x8 to the body's 8x6x6\n"
        "  hint: a 1x1 shortcut of stride s gives ceil(8/s), never 6: pad the body's convs to keep the size "
        "(conv c/3/1/1), or write both branches: add { shortcut ; body } [E071]\n"
        "        residual {\n"
        "        ^~~~~~~~~~\n"
        "  in block unit called at t.net:8:5\n",
    ),
]


@pytest.mark.parametrize("what, source, stderr", NEWCOMER_HINTS, ids=[c[0] for c in NEWCOMER_HINTS])
def test_newcomer_hints(what, source, stderr, cli, tmp_path):
    (tmp_path / "t.net").write_text(source)
    r = cli("info", "t.net", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == stderr
