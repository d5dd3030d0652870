"""Robustness (issue 5): resource bounds, files and paths, semantic edge cases.

Every bound is an error with a location, never a hang or a MemoryError, RecursionError
or OverflowError traceback. Expected shapes are computed by hand in the comments;
messages are the text users should read (docs/errors.md lists every code).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import cnndsl
from cnndsl import CnnError
from cnndsl.cli import main
from cnndsl.ir.elaborate import MAX_DEPTH, MAX_LAYERS

INT64_MAX = 2**63 - 1


def net(*lines, shape="3x8x8"):
    return "network n {\n" + f"    input {shape}\n" + "".join(f"    {ln}\n" for ln in lines) + "}\n"


def error(source, **kw) -> tuple[str, str, int, int]:
    """(code, first message line, line, column) of the error compiling ``source``."""
    with pytest.raises(CnnError) as err:
        cnndsl.load(source, **kw)
    d = err.value.diagnostic
    assert d.span is not None, d.format()
    return d.code, d.message.split("\n")[0], d.span.line, d.span.column


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """Run ``cnndsl ARGS`` in-process in tmp_path; returns (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def go(*args):
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse usage errors
            rc = exit_.code
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return rc, out.out, out.err

    return go


# ----------------------------------------------------------------------------- layer counts


def test_default_layer_limit_is_documented(run):
    assert MAX_LAYERS == 1_000_000
    rc, out, _ = run("info", "--help")
    assert rc == 0 and "default 1,000,000" in " ".join(out.split())


def test_max_layers_is_overridable_on_the_command_line(run, tmp_path):
    (tmp_path / "t.net").write_text(net("repeat 4 { relu * 3 }"))  # 12 layers
    rc, _, err = run("check", "t.net", "--max-layers", 11)
    assert rc == 1
    assert "t.net:3:16: error: the network unrolls to more than 11 layers" in err  # at the 12th relu
    rc, out, _ = run("info", "t.net", "--max-layers", 12, "--json")
    assert rc == 0 and '"kind": "relu"' in out


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_max_layers_below_one_is_a_usage_error(run, tmp_path, value):
    (tmp_path / "t.net").write_text(net("relu"))
    rc, _, err = run("info", "t.net", "--max-layers", value)
    assert rc == 2 and "--max-layers" in err


def test_repeat_count_over_the_limit_is_refused_before_unrolling():
    t0 = time.perf_counter()
    assert error(net("relu * (1000 * 1000 * 1000 * 1000)")) == (
        "E062",
        "repeat count 1,000,000,000,000 exceeds the limit of 1,000,000 layers",
        3,
        13,
    )
    assert time.perf_counter() - t0 < 5


def test_nested_repeats_of_nothing_do_not_spin():
    # 10^12 rounds of an identity: one round shows that the body adds no layer.
    t0 = time.perf_counter()
    m = cnndsl.load(net("repeat 1000000 { repeat 1000000 { _ } }", "relu"))
    assert [layer.kind for layer in m.layers] == ["relu"]
    assert time.perf_counter() - t0 < 5


def test_100000_layer_chain_compiles():
    m = cnndsl.load(net("relu * 100000", shape="4x2x2"))
    assert len(m.layers) == 100_000 and m.outputs == [("output", (4, 2, 2))]


# ----------------------------------------------------------------------------- sizes


def test_layer_output_beyond_int64_elements():
    # 3 filters x 2e9 x 2e9 = 1.2e19 elements > 2^63 - 1 = 9.22e18; the input (4e18) still fits.
    assert error(net("conv 3/1", shape="1x2000000000x2000000000")) == (
        "E064",
        "tensor of shape 3x2000000000x2000000000 has more elements than fit in 64 bits",
        3,
        5,
    )


def test_parameters_beyond_int64_in_total():
    # Each branch: fc from 1 input, (1 + 1) * 2^61 = 2^62 parameters; together 2^63 > 2^63 - 1.
    n = 2**61
    code, message, line, _ = error(net(f"add {{ fc {n} ; fc {n} }}", shape="1"))
    assert (code, line) == ("E300", 3)
    assert (
        message
        == f"the parameters up to this layer bring the network to {2**63:,} parameters, more than fit in 64 bits"
    )


def test_parameters_just_below_the_limit_compile():
    # fc from 1 input: 2 * N parameters; N = (2^63 - 1) // 2 fits exactly.
    n = INT64_MAX // 2
    assert cnndsl.load(net(f"fc {n}", shape="1")).totals.params == 2 * n


def test_huge_integer_literal_is_an_error_at_once():
    t0 = time.perf_counter()
    assert error(net("conv 8/" + "9" * 100_000)) == (
        "E031",
        "integer too large: the value does not fit in 64 bits",
        3,
        12,
    )
    assert time.perf_counter() - t0 < 5


def test_largest_int64_literal_is_accepted_and_one_more_is_not():
    assert cnndsl.load(net(f"repeat ({INT64_MAX} - {INT64_MAX}) {{ relu }}")).layers == []
    assert error(net(f"repeat ({INT64_MAX + 1} - 1) {{ relu }}"))[0] == "E031"


def test_products_beyond_int64_are_errors():
    assert error(net("conv (4294967296 * 4294967296)/3")) == (
        "E031",
        "integer too large: the value does not fit in 64 bits",
        3,
        11,
    )
    # (2^32)^64 would be a 2,049-bit number: refused without computing it
    big = " * ".join(["4294967296"] * 64)
    assert error(net(f"conv ({big})/3"))[0] == "E031"


@pytest.mark.parametrize("op", ["//", "%"])
def test_division_by_zero(op):
    assert error(net(f"conv (8 {op} (2 - 2))/3")) == ("E033", f"division by zero in '{op}'", 3, 11)


def test_file_over_the_size_limit(run, tmp_path):
    (tmp_path / "big.net").write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    rc, _, err = run("check", "big.net")
    assert rc == 1
    assert "error: cannot read big.net: the file has 16,777,217 bytes, more than the limit of 16,777,216" in err


# ----------------------------------------------------------------------------- nesting and cycles


def test_5000_nested_groups_compile():
    depth = 5000
    m = cnndsl.load(net("{ " * depth + "conv 8/3" + " }" * depth))
    assert [(layer.kind, layer.output) for layer in m.layers] == [("conv", (8, 6, 6))]


def test_nesting_limit_is_an_error_not_a_recursion_error():
    assert MAX_DEPTH == 10_000
    depth = MAX_DEPTH + 1
    code, message, line, _ = error(net("{ " * depth + "relu" + " }" * depth))
    assert (code, message, line) == ("E060", "nesting deeper than 10000 levels", 3)


def test_1000_nested_block_calls_compile():
    depth = 1000
    src = "".join(f"block b{i}() {{\n    b{i + 1}()\n}}\n" for i in range(depth))
    src += f"block b{depth}() {{\n    conv 8/3\n}}\n" + net("b0()")
    (layer,) = cnndsl.load(src).layers
    assert layer.output == (8, 6, 6) and layer.name.count(".") == depth + 1  # b0. ... b1000.conv


def test_indirect_block_recursion(run, tmp_path):
    (tmp_path / "t.net").write_text(
        "block a() {\n    b()\n}\nblock b() {\n    c()\n}\nblock c() {\n    a()\n}\n" + net("a()")
    )
    rc, _, err = run("check", "t.net")
    assert rc == 1
    assert "t.net:8:5: error: block a calls itself: a -> b -> c -> a" in err
    assert "in block c called at t.net:5:5" in err  # the chain that led there


def test_file_importing_itself(run, tmp_path):
    (tmp_path / "t.net").write_text('import "t.net"\n' + net("relu"))
    rc, _, err = run("check", "t.net")
    assert rc == 1 and "t.net:1:1: error: import cycle: t.net -> t.net" in err


# ----------------------------------------------------------------------------- files and paths


def test_imports_resolve_relative_to_the_importing_file(run, tmp_path):
    lib = tmp_path / "lib"
    (lib / "deep").mkdir(parents=True)
    (lib / "blocks.net").write_text('import "deep/more.net"\nblock two(c) {\n    one(c) -> relu\n}\n')
    (lib / "deep" / "more.net").write_text("block one(c) {\n    conv c/3/1/1\n}\n")
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "t.net").write_text('import "../lib/blocks.net"\n' + net("two(4)"))
    rc, out, err = run("info", "nets/t.net", "--json")  # from tmp_path: neither file is relative to it
    assert rc == 0, err
    assert '"output": [\n        4,\n        8,\n        8\n      ]' in out


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "cannot read lib.net: it is a directory, not a .net file"),
        (lambda p: None, "cannot read lib.net: no such file"),
        (
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"),
            "cannot read lib.net: it is a binary file, not a .net text file",
        ),
        (
            lambda p: p.write_bytes(b"block b() {\n    relu # caf\xe9\n}\n"),
            "cannot read lib.net: it is not UTF-8 text (byte 26)",
        ),
    ],
    ids=["directory", "missing", "binary", "latin-1"],
)
def test_bad_imports_point_at_the_import_statement(run, tmp_path, make, message):
    make(tmp_path / "lib.net")
    (tmp_path / "t.net").write_text('# first line\nimport "lib.net"\n' + net("relu"))
    rc, _, err = run("check", "t.net")
    assert rc == 1
    code = "E040" if "binary" not in message and "UTF-8" not in message else "E042"
    assert f"t.net:2:1: error: {message} [{code}]" in err
    assert '    import "lib.net"\n    ^~~~~~~~~~~~~~~~' in err


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_failure_leaves_an_existing_output_untouched(run, tmp_path):
    (tmp_path / "t.net").write_text(net("conv 8/30"))  # kernel larger than the input: E019
    (tmp_path / "t.onnx").write_bytes(b"previous model")
    rc, _, err = run("export", "t.net", "-o", "t.onnx")
    assert rc == 1 and "[E019]" in err
    assert (tmp_path / "t.onnx").read_bytes() == b"previous model"
    assert _listing(tmp_path) == ["t.net", "t.onnx"]  # no temporary file left behind


@pytest.mark.parametrize(
    "args",
    [
        ("export", "t.net", "-o", "t.net"),
        ("export", "t.net", "-o", "w.npz", "--weights", "w.npz"),
        ("train", "t.net", "--data", "d.npz", "--out", "d.npz"),
        ("train", "t.net", "--data", "digits", "--out", "./t.net"),
        ("run", "t.net", "--output", "t.net", "--iterations", "0"),
        ("run", "t.net", "--data", "x.npy", "--output", "x.npy", "--iterations", "0"),
    ],
    ids=[
        "export -o input",
        "export -o weights",
        "train --out data",
        "train --out input",
        "run --output input",
        "run --output data",
    ],
)
def test_output_equal_to_an_input_is_refused(run, tmp_path, args):
    (tmp_path / "t.net").write_text(net("c: conv 4/3", shape="1x8x8"))
    np.savez(tmp_path / "w.npz", **{"c.weight": np.zeros((4, 1, 3, 3), np.float32), "c.bias": np.zeros(4, np.float32)})
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    rc, _, err = run(*args)
    assert rc == 1
    assert "[E083]" in err and "is an input of this command" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_train_default_output_name_never_overwrites_the_data(run, tmp_path):
    # network d writes d.npz by default, which here is the data file
    (tmp_path / "t.net").write_text("network d {\n    input 64\n    fc 10\n}\n")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 64), np.float32), y=np.arange(4))
    before = (tmp_path / "d.npz").read_bytes()
    rc, _, err = run("train", "t.net", "--data", "d.npz", "--epochs", "1")
    assert rc == 1 and "--out d.npz is an input of this command (d.npz)" in err
    assert (tmp_path / "d.npz").read_bytes() == before


def test_run_failure_leaves_an_existing_output_untouched(run, tmp_path):
    (tmp_path / "t.net").write_text(net("conv 4/3"))
    # 5 channels for a 3-channel input cannot be fitted as train fits data (a smaller 3x5x5 would be padded): E103
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 8, 8), np.float32))
    (tmp_path / "out.npy").write_bytes(b"previous outputs")
    rc, _, err = run("run", "t.net", "--data", "x.npy", "--output", "out.npy", "--iterations", "0")
    assert rc == 1 and "[E103]" in err
    assert (tmp_path / "out.npy").read_bytes() == b"previous outputs"


def test_train_failure_leaves_an_existing_checkpoint_untouched(run, tmp_path):
    (tmp_path / "t.net").write_text(net("conv 10/3", shape="1x8x8"))  # 10x6x6 output: E086
    (tmp_path / "w.npz").write_bytes(b"previous weights")
    rc, _, err = run("train", "t.net", "--data", "digits", "--epochs", "1", "--out", "w.npz")
    assert rc == 1 and "[E086]" in err
    assert (tmp_path / "w.npz").read_bytes() == b"previous weights"


# ----------------------------------------------------------------------------- semantic edge cases


def test_negative_channels():
    assert error(net("conv (0 - 4)/3")) == ("E018", "filters must be at least 1; received filters=-4", 3, 11)


def test_padding_larger_than_the_kernel_is_allowed_for_conv():
    # (8 + 2*3 - 3) / 1 + 1 = 12: as in PyTorch and ONNX, conv padding is not bounded by the kernel
    (layer,) = cnndsl.load(net("conv 8/3/1/3")).layers
    assert layer.output == (8, 12, 12)


def test_dilation_makes_the_kernel_larger_than_the_input():
    assert error(net("conv 8/3 dilation=5")) == (
        "E019",
        "conv 8/3 dilation=5 needs at least 11x11 input, got 3x8x8 (padding 0); dilation 5x5 widens the kernel to 11x11",
        3,
        5,
    )


def test_ceil_pooling_drops_a_window_starting_in_the_padding():
    # 5 wide, F=2, S=2, P=1, ceil: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the 4th starts at
    # (4 - 1) * 2 = 6 >= 5 + 1, inside the right padding, so it is dropped (PyTorch's rule): 3.
    (layer,) = cnndsl.load(net("maxpool 2/2/1 ceil", shape="3x5x5")).layers
    assert layer.output == (3, 3, 3)
    # 6 wide, F=3, S=2, P=1: ceil((6 + 2 - 3) / 2) + 1 = 4, the 4th starts at 6 < 6 + 1: kept
    (layer,) = cnndsl.load(net("maxpool 3/2/1 ceil", shape="3x6x6")).layers
    assert layer.output == (3, 4, 4)


def test_mul_broadcasts_axes_of_size_one():
    # 8x8x8 * 1x8x8 (one channel, equal sizes) and 3x8x8 * 3x1x1 (SE gating) both broadcast
    m = cnndsl.load(net("mul { conv 8/1 ; conv 1/1 }"))
    assert m.layers[-1].output == (8, 8, 8)
    m = cnndsl.load(net("mul { _ ; gap -> conv 3/1 -> sigmoid }"))
    assert m.layers[-1].output == (3, 8, 8)


def test_add_of_mismatched_channels():
    assert error(net("add { conv 4/1 ; conv 5/1 }"))[:2] == (
        "E019",
        (
            "add { conv 4/1 ; conv 5/1 }: branches must have equal shapes: branch 1 (conv 4/1) gives 4x8x8; "
            "branch 2 (conv 5/1) gives 5x8x8"
        ),
    )


def test_label_inside_another_block_instance():
    src = "block b() {\n    inner: conv 4/1\n}\n" + net("b()", "@inner -> relu")
    with pytest.raises(CnnError) as err:
        cnndsl.load(src)
    d = err.value.diagnostic
    assert (d.code, d.message, d.span.line) == ("E020", "unknown label @inner", 7)
    assert d.notes == [("a label 'inner' exists inside block instance b; labels are local to their block", None)]


def _warnings(source):
    return [(w.code, w.message, w.span.line) for w in cnndsl.load(source).warnings]


def test_labels_that_name_layers_are_never_unused():
    # AlexNet-style: every layer labelled, none referenced
    assert _warnings(net("conv1: conv 8/3 -> relu", "pool1: maxpool 2", "fc6: fc 10")) == []


def test_labels_that_name_nothing_and_are_never_read_warn():
    assert _warnings(net("x: _", "y: { conv 4/3 }", "z: repeat 2 { relu }", "a: relu", "b: @a")) == [
        ("W300", "label 'x' is never used: no @x reads it and it names no layer", 3),
        ("W300", "label 'y' is never used: no @y reads it and it names no layer", 4),
        ("W300", "label 'z' is never used: no @z reads it and it names no layer", 5),
        ("W300", "label 'b' is never used: no @b reads it and it names no layer", 7),
    ]


def test_labels_read_by_reference_keyword_or_output_do_not_warn():
    assert _warnings(net("x: _", "concat { _ ; @x }")) == []
    assert _warnings(net("p: { maxpool 2 }", "unpool 2 of=@p")) == []
    assert _warnings(net("a: _", "relu", "output a")) == []


def test_unused_label_in_a_block_warns_once_for_all_instances():
    src = "block b() {\n    x: _\n    relu\n}\n" + net("b() -> b() -> b()")
    assert _warnings(src) == [("W300", "label 'x' is never used: no @x reads it and it names no layer", 2)]


def test_unknown_define_through_the_cli(run, tmp_path):
    (tmp_path / "t.net").write_text("network n(classes = 10) {\n    input 3x8x8\n    fc classes\n}\n")
    rc, _, err = run("info", "t.net", "-D", "clases=3")
    assert rc == 1
    assert (
        "t.net:1:1: error: -D clases: network n has no parameter 'clases'; did you mean 'classes'? "
        "(its parameters: classes)"
    ) in err


def test_check_reports_a_define_no_network_has(run, tmp_path):
    (tmp_path / "a.net").write_text("network a(classes = 10) {\n    input 3x8x8\n    fc classes\n}\n")
    (tmp_path / "b.net").write_text("network b(width = 4) {\n    input 3x8x8\n    conv width/3\n}\n")
    rc, out, err = run("check", "a.net", "b.net", "-D", "classes=3", "-D", "widht=2")
    assert rc == 1
    assert "cnndsl: error: -D widht: no network checked has a parameter 'widht'; did you mean 'width'?" in err
    assert "checked 2 files: 1 error, 0 warnings" in out
    rc, out, _ = run("check", "a.net", "b.net", "-D", "classes=3", "-D", "width=2")
    assert rc == 0, out


def test_output_over_an_imported_file_is_refused(tmp_path, cli):
    """A file the network imports is an input too: -o/--out/--output naming it is refused
    (exit 1, E083) and the file is left as it was."""
    blocks = tmp_path / "blocks.net"
    blocks.write_text("block b(c) { conv c/3/1/1 -> relu }\n")
    (tmp_path / "a.net").write_text('import "blocks.net"\nnetwork n {\n    input 3x8x8\n    b(4)\n}\n')
    before = blocks.read_bytes()
    for command in (
        ["export", "a.net", "-o", "blocks.net"],
        ["run", "a.net", "--output", "blocks.net"],
        ["train", "a.net", "--data", "digits", "--epochs", "1", "--out", "blocks.net"],
    ):
        r = cli(*command, cwd=tmp_path)
        assert r.returncode == 1 and "is an input of this command" in r.stderr and "[E083]" in r.stderr, command
        assert blocks.read_bytes() == before
