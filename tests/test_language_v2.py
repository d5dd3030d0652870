"""LANGUAGE.md §10.1-10.4, the language of today's networks: expressions, fn, let, if,
repeat ... as, layer kinds as values, labels anywhere in a chain, continuation lines.

Expressions are checked against Python itself (the spec says "as in Python"): each
case is evaluated by cnndsl as a network parameter's default and by Python's ``eval``
of the same text, and the two values must be equal and of the same type.
"""

from __future__ import annotations

import math

import pytest

import cnndsl
from cnndsl.errors import CnnError
from cnndsl.tools.fmt import format_text


def value_of(expr: str, **defines):
    """What cnndsl binds ``v`` to in ``network n(v = (expr))``."""
    m = cnndsl.load(f"network n(v = ({expr})) {{\n    input 1x4x4\n}}\n", defines=defines)
    return m.graph.defines["v"]


def python_value(expr: str):
    text = expr.replace("true", "True").replace("false", "False")
    return eval(text, {"floor": math.floor, "ceil": math.ceil, "__builtins__": {}}, {
        "int": int, "round": round, "abs": abs, "min": min, "max": max
    })  # fmt: skip


EXPRESSIONS = [
    "7 / 2", "8 / 2", "7 // 2", "-7 // 2", "7 % 3", "-7 % 3", "7.5 // 2", "2 * 3 + 4 * 5", "2 - 3 - 4",
    "1 + 2 * 3 // 4 % 5", "0.1 + 0.2", "int(32 * 0.75)", "int(-3.7)", "int(3.9)", "round(2.5)", "round(3.5)",
    "round(-2.5)", "round(2.675)", "floor(-0.5)", "floor(2)", "ceil(2.1)", "ceil(-2.1)", "abs(-3)", "abs(-2.5)",
    "min(3, 2.5)", "max(1, 2, 3)", "max(8, int(20 + 8 / 2) // 8 * 8)", "1 < 2 < 3", "3 > 2 == 2", "1 < 3 < 2",
    "2 <= 2", "2 >= 3", "2 != 2.0", "2 == 2.0", "not 1 < 2", "true and false or true", "not (true and false)",
    "false or false", "4 if 2 > 1 else 2", "4 if 2 < 1 else 2 if true else 0", "1 + (2 if true else 3) * 2",
    "int(16 * 1.3 + 4) // 8 * 8", "ceil(3 * 3.1)", "ceil(4 * 1.1)", "-(3) * -2", "10 / 4 * 2", "2 ** 0 if false else 1",
]  # fmt: skip
EXPRESSIONS = [e for e in EXPRESSIONS if "**" not in e]  # (no power operator in the language)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_expressions_are_pythons(expr):
    got, want = value_of(expr), python_value(expr)
    assert (got, type(got)) == (want, type(want))


def make_divisible_torchvision(v, divisor=8, min_value=None):
    """torchvision.models._utils._make_divisible, transcribed."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


MAKE_DIVISIBLE = """
fn make_divisible(v, d = 8) {            # torchvision's _make_divisible, exactly
    let n = max(d, int(v + d / 2) // d * d)
    n + d if n < 0.9 * v else n
}
fn scaled(c, width) = make_divisible(c * width)
"""


@pytest.mark.parametrize("width", [0.25, 0.5, 0.75, 1.0, 1.3, 2.0, 3.1])
def test_make_divisible_as_in_torchvision(width):
    channels = [16, 24, 32, 40, 48, 64, 72, 80, 96, 112, 120, 160, 184, 200, 240, 320, 480, 576, 672, 960, 1280]
    body = "\n".join(f"    let c{c} = scaled({c}, w)" for c in channels)
    m = cnndsl.load(
        MAKE_DIVISIBLE + "network n(w = 1.0) {\n" + body + "\n    input 1x4x4\n    conv (" +
        " + ".join(f"c{c}" for c in channels) + ")/1\n}\n", defines={"w": width}
    )  # fmt: skip
    assert m.layers[0].output[0] == sum(make_divisible_torchvision(c * width) for c in channels)


def shapes(text: str, **defines):
    m = cnndsl.load(text, defines=defines)
    return [(r.name, r.kind, r.output) for r in m.layers]


def test_functions_defaults_named_arguments_and_imports(tmp_path):
    (tmp_path / "lib.net").write_text(MAKE_DIVISIBLE + "fn half(x) = x // 2\n")
    (tmp_path / "main.net").write_text(
        'import "lib.net"\n'
        "network n(w = 0.75) {\n    input 3x8x8\n"
        "    conv (make_divisible(20, d=4))/1 -> conv (scaled(32, w))/1 -> conv (half(in.c))/1\n}\n"
    )
    m = cnndsl.load(tmp_path / "main.net")
    # make_divisible(20, 4) = max(4, int(22) // 4 * 4) = 20; scaled(32, 0.75) = 24;
    # in.c at the network level is the input's 3 channels: 3 // 2 = 1
    assert [r.output[0] for r in m.layers] == [20, 24, 1]


def test_let_is_bound_for_the_statements_after_it_and_afresh_in_each_repeat():
    text = """
network n {
    let base = 4
    input 3x8x8
    repeat 3 as i {
        let c = base * (i + 1)
        conv c/1
    }
    { let c = 100 ; conv c/1 }
    conv base/1
}
"""
    assert [s[2][0] for s in shapes(text)] == [4, 8, 12, 100, 4]


def test_if_else_if_else_chooses_one_body_and_a_false_if_is_the_identity():
    text = """
block b(mode) {
    if mode == 1 { conv 8/1 }
    else if mode == 2 { conv 16/1 -> relu }
    else { _ }
    if false { conv 99/1 }
}
network n(mode = 1) {
    input 3x8x8
    b(mode) -> add { if mode > 0 { _ } else { conv 3/1 } ; _ }
}
"""
    assert shapes(text, mode=1) == [("b.conv", "conv", (8, 8, 8)), ("add", "add", (8, 8, 8))]
    assert [k for _, k, _ in shapes(text, mode=2)] == ["conv", "relu", "add"]
    assert shapes(text, mode=0) == [("conv", "conv", (3, 8, 8)), ("add", "add", (3, 8, 8))]


def test_an_if_body_opens_no_new_in():
    text = """
block b() {
    conv 16/1
    if true { conv (in.c)/1 }
}
network n {
    input 3x8x8
    b()
}
"""
    assert shapes(text)[-1] == ("b.conv_1", "conv", (3, 8, 8))  # in.c is still the block's input


def test_repeat_as_binds_the_round():
    text = "network n {\n    input 3x8x8\n    repeat 4 as i { conv (8 * (i + 1))/1 }\n}\n"
    assert [s[2][0] for s in shapes(text)] == [8, 16, 24, 32]


def test_layer_kinds_and_blocks_as_parameter_values():
    text = """
block se(c) { mul { _ ; gap -> conv c/1 -> sigmoid } }
block unit(act = relu, gate = se) {
    conv 8/3/1/1 -> act
    gate(8)
    act 0.1
}
network n(act = relu, dropout = 0.25) {
    input 3x8x8
    unit(act=act)
    dropout dropout
}
"""
    m = cnndsl.load(text, defines={"act": "leaky_relu"})
    names = [(r.name, r.kind) for r in m.layers]
    assert names[1] == ("unit.leaky_relu", "leaky_relu")  # named after the kind invoked
    assert names[-2] == ("unit.leaky_relu_1", "leaky_relu")
    assert names[-1] == ("dropout", "dropout")  # a numeric parameter leaves the name to the kind
    assert [r.kind for r in m.layers[2:6]] == ["gap", "conv", "sigmoid", "mul"]
    with pytest.raises(CnnError) as err:
        cnndsl.load(text)  # relu takes no field: `act 0.1` with act = relu
    assert err.value.diagnostic.message == "act (relu) takes at most 0 fields (no fields); received 1"


def test_labels_anywhere_in_a_chain_and_continuation_lines():
    text = """
block double(c) { conv c/3/1/1 -> relu -> conv c/3/1/1 -> relu }
network n {
    input 1x16x16
    e1: double(8)
    maxpool 2/2 -> e2: double(16)
        -> relu
    # a comment between
    -> maxpool 2
    @e2 -> conv 4/1
}
"""
    m = cnndsl.load(text)
    names = [r.name for r in m.layers]
    # the layers right of a label are named after it, the continuation lines' too
    assert names[5:] == ["e2.conv", "e2.relu", "e2.conv_1", "e2.relu_1", "e2.relu_2", "e2.maxpool", "conv"]
    assert m.layer("conv").output == (4, 4, 4)  # @e2 is the value at the end of its chain (after maxpool 2)


def test_network_floats_and_booleans_from_the_command_line():
    text = "network n(w = 1.0, se = false) {\n    input 3x8x8\n    conv (int(32 * w))/1\n    if se { relu }\n}\n"
    assert shapes(text, w="0.75", se="true") == [("conv", "conv", (24, 8, 8)), ("relu", "relu", (24, 8, 8))]
    assert shapes(text, w=0.5, se=False) == [("conv", "conv", (16, 8, 8))]


def test_language_md_inverted_residual_example():
    text = (
        MAKE_DIVISIBLE
        + """
block inverted_residual(out, k, t, s, se = false, act = relu) {
    let hidden = make_divisible(in.c * t)
    if hidden != in.c { conv hidden/1 -> bn -> act }
    conv hidden/k/s/(k // 2) groups=hidden -> bn -> act
    if se { mul { _ ; gap -> conv (make_divisible(hidden // 4))/1 -> relu -> conv hidden/1 -> sigmoid } }
    conv out/1 -> bn
}
network n {
    input 16x56x56
    inverted_residual(24, 3, 1, 1)
    inverted_residual(40, 5, 3, 2, se=true, act=hardswish)
}
"""
    )
    got = shapes(text)
    # t = 1: no expansion conv; hidden = make_divisible(24 * 3) = 72, SE squeeze make_divisible(18) = 24
    assert [k for _, k, _ in got[:5]] == ["conv", "bn", "relu", "conv", "bn"]
    assert got[5] == ("inverted_residual_1.conv", "conv", (72, 56, 56))
    assert ("inverted_residual_1.conv_2", "conv", (24, 1, 1)) in got
    assert got[-1] == ("inverted_residual_1.bn_2", "bn", (40, 28, 28))
    assert format_text(format_text(text)) == format_text(text)


ERRORS = [
    ("    conv (32 * w)/3", "3:11: error: filters must be an integer; received filters=24.0 (a float: convert it with int(), round(), floor() or ceil())"),
    ("    conv act/3", "3:10: error: filters must be an integer; received filters=relu ('act' holds the layer kind or block 'relu', not a value)"),
    ("    conv (act * 2)/3", "3:11: error: 'act' holds the layer kind or block 'relu'; expected a number"),
    ("    conv (true + 1)/3", "3:11: error: a boolean in arithmetic; expected a number"),
    ("    if 3 { relu }", "3:8: error: the condition of if must be true or false; received 3 (compare it: x != 0)"),
    ("    conv (1 if w else 2)/3", "3:16: error: the condition of 'x if c else y' must be true or false; received 0.75 (compare it: x != 0, x == true)"),
    ("    if not 2 { relu }", "3:12: error: 'not' needs true or false; received 2 (compare it: x != 0, x == true)"),
    ("    repeat (2 > 1) { relu }", "3:13: error: a repeat count must be an integer of at least 0; received true (a condition: write if ... { })"),
    ("    conv (mx(2, 3))/3", "3:11: error: unknown function 'mx'; did you mean 'max'?"),
    ("    conv (max(2))/3", "3:11: error: max() takes at least 2 arguments; received 1"),
    ("    conv (int(2, 3))/3", "3:11: error: int() takes 1 argument; received 2"),
    ("    conv (int(1e308 * 10))/3", "3:11: error: int(inf): cannot convert inf to an integer"),
    ("    conv (2 / 0)/3", "3:11: error: division by zero in '/'"),
    ("    let w = 2", "3:9: error: let w: 'w' is a parameter here; choose another name"),
    ("    let a = 1\n    let a = 2", "4:9: error: let a: 'a' is already bound in this body; choose another name"),
    ("    repeat 2 as w { relu }", "3:17: error: let w: 'w' is a parameter here; choose another name"),
    ("    conv (2 < true)/3", "3:15: error: a boolean in '<'; expected a number"),
    ("    act2", "3:5: error: unknown layer kind or block 'act2'; did you mean 'act'?"),
    ("    word", "3:5: error: 'word' holds 'nothing', which is not a layer kind or block"),
]  # fmt: skip


@pytest.mark.parametrize("line, expected", ERRORS, ids=[e[1].split("error: ")[1][:40] for e in ERRORS])
def test_diagnostics(line, expected):
    text = f"network n(w = 0.75, act = relu, word = nothing) {{\n    input 3x8x8\n{line}\n}}\n"
    with pytest.raises(CnnError) as err:
        cnndsl.load(text)
    assert err.value.diagnostic.format().split("\n")[0] == "<string>:" + expected


def test_recursion_names_the_call_chain():
    text = "fn f(x) = g(x) + 1\nfn g(x) = f(x)\nnetwork n {\n    input 3x8x8\n    conv (f(2))/3\n}\n"
    with pytest.raises(CnnError) as err:
        cnndsl.load(text)
    assert err.value.diagnostic.format().split("\n")[0] == "<string>:2:11: error: function f calls itself: f -> g -> f"


def test_a_fn_sees_its_file_not_the_caller():
    text = "fn f(x) = x + k\nnetwork n(k = 2) {\n    input 3x8x8\n    conv (f(2))/3\n}\n"
    with pytest.raises(CnnError) as err:
        cnndsl.load(text)
    assert err.value.diagnostic.message == "unknown name 'k'; expected a number"


def test_a_fn_result_depends_on_its_arguments_types_not_only_their_values():
    # f(2) is the integer 4 and f(2.0) the float 4.0 (Python: 2 * 2 and 2.0 * 2); a result
    # reused by value alone would give the second conv an integer, or the first a float
    text = "fn f(x) = x * 2\nnetwork n {\n    input 3x8x8\n    conv (f(2))/1 -> conv (f(2.0))/1\n}\n"
    with pytest.raises(CnnError) as err:
        cnndsl.load(text)
    assert err.value.diagnostic.format().split("\n")[0] == (
        "<string>:4:28: error: filters must be an integer; received filters=4.0 "
        "(a float: convert it with int(), round(), floor() or ceil())"
    )
    ok = (
        "fn f(x) = x * 2\nnetwork n {\n    input 3x8x8\n    conv (f(2))/1 -> conv (int(f(2.0)))/1 -> conv (f(3))/1\n}\n"
    )
    assert [r.output[0] for r in cnndsl.load(ok).layers] == [4, 4, 6]
