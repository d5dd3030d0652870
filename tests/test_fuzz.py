"""Fuzzing (issue 5, robustness): whatever the input, the compiler answers with a
model or a CnnError pointing inside the file — never another exception; and
every network that compiles exports to ONNX and runs on onnxruntime with the
output shapes inference promised.

Strategies: (a) random text and bytes, through the API, the file path and the
CLI; (b) token mutations of every file in networks/; (c) grammar-aware random
networks (fuzzgen.py); (d) the regression corpus tests/corpus/. Bounded for CI;
CNNDSL_FUZZ_EXAMPLES or ``pytest --fuzz-long`` raise the counts (docs/robustness.md).
CNNDSL_FUZZ_SAVE=DIR writes the (last, i.e. minimised) failing input of each test
to DIR/<test>.net, ready to be added to tests/corpus/.
"""

import os
import re
import subprocess
import sys
from math import prod
from pathlib import Path

import numpy as np
import pytest
from conftest import NETWORKS, run_cli
from fuzzgen import net_files
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st

import cnndsl
from cnndsl import CnnError, compile_network, run_deep
from cnndsl.lang.modules import Loader

EXAMPLES = int(os.environ.get("CNNDSL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Generated networks are exported and run: fewer of them in CI (~30 ms each).
GENERATED = settings(
    FUZZ,
    max_examples=int(os.environ.get("CNNDSL_FUZZ_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SOURCES = {p.name: p.read_text() for p in sorted(NETWORKS.glob("*.net"))}
CORPUS = Path(__file__).resolve().parent / "corpus"
TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+(?:x\d+)+|\d+\.\d*|\d+|->|//|.", re.DOTALL)
NUMBER = re.compile(r"\d+(?:x\d+)+|\d+\.\d*|\d+")
REPLACEMENTS = [
    "0",
    "-1",
    "99999999999999999999",
    "2.5",
    "1e9",
    "{",
    "}",
    "(",
    ")",
    "@x",
    "->",
    "*",
    "/",
    "_",
    ";",
    "\n",
    "x",
    "3x3",
    "in.c",
    "same",
    "ceil",
    "true",
    "#",
    '"',
    "repeat",
    "output",
    "input",
]
# Numbers put in place of a number: zero, negatives, huge, floats where integers belong, odd dimensions.
NUMBERS = [
    "0",
    "-1",
    "-3",
    "1",
    "2",
    "7",
    "65537",
    "99999999999999999999",
    "9223372036854775808",
    "0.5",
    "2.5",
    "1e9",
    "1e400",
    "1e-30",
    "0.0",
    "3x0",
    "0x3",
    "1x1x1x1x1",
    "2x2",
    "(0 - 5)",
    "(2 // 0)",
    "true",
]
# Activations (elements per sample) and parameters beyond which a network that compiles counts as
# too big to run here (a mutated VGG-16 on a tiny input still has 100M+ weights to draw).
RUN_LIMIT = 200_000
PARAM_LIMIT = 2_000_000


def save_failure(text) -> None:
    """Keep the failing input when CNNDSL_FUZZ_SAVE is set (the last call is the minimised one)."""
    folder = os.environ.get("CNNDSL_FUZZ_SAVE")
    if folder:
        name = os.environ.get("PYTEST_CURRENT_TEST", "fuzz").split("::")[-1].split(" ")[0]
        name = re.sub(r"[^\w.-]", "_", name)[:80]
        Path(folder).mkdir(parents=True, exist_ok=True)
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        (Path(folder) / f"{name}.net").write_bytes(data)


def compile_all(text: str, filename: str = "fuzz.net") -> list:
    """Compile every network of the text; returns the models that compiled.

    Only a CnnError with a location inside the text may escape; anything else
    fails the test (and is saved with CNNDSL_FUZZ_SAVE)."""
    lines = text.splitlines() or [""]
    models, errors = [], []

    def run():  # on the compiler's thread, where Hypothesis's event() is not available
        module = Loader().load_text(text, filename)
        for name in module.networks:
            try:
                models.append(compile_network(module, name, {}))
            except CnnError as err:
                errors.append(err)

    try:
        run_deep(run)
    except CnnError as err:
        errors.append(err)
    except BaseException:
        save_failure(text)
        raise
    for err in errors:
        check_location(err, lines)
        record(f"error {err.diagnostic.code}")
    return models


def export_and_run(model) -> bool:
    """Export to ONNX (checked) and run on onnxruntime CPU with a random batch of 2:
    the outputs have the inferred shapes. False when the network is too big to run here."""
    import onnxruntime as ort

    from cnndsl.lower.export import to_onnx

    if sum(prod(n.shape) for n in model.graph.nodes) > RUN_LIMIT or model.totals.params > PARAM_LIMIT:
        return False
    proto = to_onnx(model)  # the full ONNX checker, and ONNX shape inference against ours
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, *model.graph.input_shape)).astype(np.float32)
    outs = sess.run(None, {"input": x})
    assert [o.shape for o in outs] == [(2, *shape) for _, shape in model.outputs]
    # No finiteness check: random networks may overflow float32 by themselves (rbf after
    # rbf squares its input each time), which says nothing about the compiler.
    return True


def check_text(text: str, filename: str = "fuzz.net") -> None:
    """The whole property: a model or a located CnnError; every model exports and runs."""
    if currently_in_test_context():
        note(text)
    for model in compile_all(text, filename):
        try:
            ran = export_and_run(model)
        except BaseException:
            save_failure(text)
            raise
        record("compiled, exported and ran" if ran else "compiled, too big to run")


def record(what: str) -> None:
    """Count an outcome in Hypothesis's statistics (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


def check_location(err: CnnError, lines) -> None:
    span = err.diagnostic.span
    if span is None:  # file-level problems (a parameter without value...) have no line
        return
    assert 1 <= span.line <= len(lines) + 1, err
    assert span.column >= 1, err
    err.diagnostic.format()  # formatting never fails either


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    compile_all(text)


@FUZZ
@given(st.text(alphabet="network block input conv relu add {}()[]@:;,=/*x0123456789 ->_\n#.", max_size=200))
def test_random_text_from_the_language_alphabet(text):
    compile_all(text)


@pytest.mark.parametrize("name", sorted(SOURCES))
@settings(FUZZ, max_examples=max(1, EXAMPLES // 10))
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 10**6), st.sampled_from(REPLACEMENTS)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_networks(name, edits):
    """Token edits of each file: deletion, duplication, swap, replacement."""
    tokens = TOKEN.findall(SOURCES[name])
    for where, op, other, replacement in edits:
        i = where % len(tokens)
        if op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, tokens[other % len(tokens)])
        elif op == 2:
            j = other % len(tokens)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            tokens[i] = replacement
        if not tokens:
            tokens = [""]
    check_text("".join(tokens), name)


def test_path_like_strings_are_user_errors():
    with pytest.raises(CnnError, match="not a usable path"):
        cnndsl.load("\0\0\0")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\0\0\0",
        "network n {" * 50,
        "network n { input 3x8x8\n" + "{ " * 300 + "relu" + " }" * 300 + "\n}",
        "network n { input 3x8x8\n conv (" + "(" * 200 + "1" + ")" * 200 + ")/1\n}",
        "network n { input 3x8x8\n conv (99999999999 * 99999999999 * 99999999999)/1\n}",
        "network n { input 3x99999999x99999999\n conv 99999999/3 -> fc 99999999\n}",
        "network n { input 3x8x8\n repeat 100000000000 { relu }\n}",
    ],
)
def test_hostile_inputs(text):
    compile_all(text)


# -- (a) bytes: through a file, and the command line -------------------------------------------


def insert_bytes(name: str, where: int, data: bytes) -> bytes:
    """A file of networks/ with bytes inserted somewhere."""
    text = SOURCES[name].encode()
    i = where % (len(text) + 1)
    return text[:i] + data + text[i:]


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            insert_bytes, st.sampled_from(sorted(SOURCES)), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)
        ),
    )
)
def test_random_bytes_through_a_file(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.net"
    path.write_bytes(data)
    lines = data.decode("utf-8", "replace").splitlines() or [""]
    try:
        run_deep(lambda: [compile_network(m, n, {}) for m in [cnndsl.load_module(path)] for n in m.networks])
    except CnnError as err:
        check_location(err, lines)
        if b"\0" in data:
            assert err.diagnostic.code == "E042" and "binary file" in err.diagnostic.message
    except BaseException:
        save_failure(data)
        raise


# Contents a user might feed by mistake; the expected diagnostics follow read_source's contract.
BYTE_FILES = {
    "latin1.net": ("network caf\xe9 { input 3x8x8\n conv 4/3 }\n".encode("latin-1"), "not UTF-8 text (byte 11)"),
    "nul.net": (b"network n { input 3x8x8\0\n}\n", "binary file"),
    "png.net": (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary file"),
    "utf16.net": ("network n { input 3x8x8 }".encode("utf-16"), "binary file"),  # NUL in every other byte
    "lone.net": (b"network n { input 3x8x8\n conv 4/3 \xed\xa0\x80 }\n", "not UTF-8 text"),  # an encoded surrogate
    "cut.net": ("network n { input 3x8x8 } # é".encode()[:-1], "not UTF-8 text"),  # a truncated multibyte char
}


def test_bytes_through_the_command_line(tmp_path):
    for name, (data, _) in BYTE_FILES.items():
        (tmp_path / name).write_bytes(data)
    r = run_cli("check", *BYTE_FILES, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert f"checked {len(BYTE_FILES)} files: {len(BYTE_FILES)} errors" in r.stdout
    for name, (_, message) in BYTE_FILES.items():
        assert f"cnndsl: error: cannot read {name}: " in r.stderr and message in r.stderr, name
        r1 = run_cli("info", name, cwd=tmp_path)
        assert r1.returncode == 1 and message in r1.stderr and "Traceback" not in r1.stderr, name


def test_a_file_name_that_is_not_utf8(tmp_path):
    """File names are bytes on Linux: one that is not UTF-8 reaches Python as lone
    surrogates (PEP 383). Found by this fuzzing: `export` failed with an internal
    error (protobuf refused the name in the model's metadata); now U+FFFD stands for the byte."""
    import onnx

    name = os.fsdecode(b"caf\xe9.net")
    (tmp_path / name).write_text("network n { input 3x8x8\n conv 4/3 }\n")

    def cli(*args):  # bytes out: the name's byte goes back to the terminal as it came
        env = dict(os.environ, NO_COLOR="1")
        return subprocess.run(
            [sys.executable, "-m", "cnndsl", *args],
            capture_output=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
            check=False,
        )

    r = cli("info", name)
    assert r.returncode == 0 and b"network n (caf\xe9.net), input 3x8x8" in r.stdout
    r = cli("export", name, "-o", "out.onnx")
    assert r.returncode == 0, r.stderr
    props = {p.key: p.value for p in onnx.load(tmp_path / "out.onnx").metadata_props}
    assert props["cnndsl.source"] == "caf\ufffd.net"
    (tmp_path / name).write_text("network n { input 3x8x8\n conv 4/30 }\n")
    r = cli("check", name)
    assert r.returncode == 1 and b"caf\\udce9.net:2:2: error: conv 4/30 needs at least 30x30 input" in r.stderr
    r = cli("run", os.fsdecode(b"x\xff.onnx"))
    assert r.returncode == 1 and b"no such file" in r.stderr


def test_random_bytes_as_a_model_for_run(tmp_path):
    (tmp_path / "m.onnx").write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)))
    r = run_cli("run", "m.onnx", "--provider", "cpu", cwd=tmp_path)
    assert r.returncode == 1 and "onnxruntime cannot load the model" in r.stderr and "Traceback" not in r.stderr


# -- (b) number mutations of every file in networks/ ---------------------------------------------


@pytest.mark.parametrize("name", sorted(SOURCES))
@settings(FUZZ, max_examples=max(1, EXAMPLES // 10))
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(NUMBERS)), min_size=1, max_size=3))
def test_number_mutations(name, edits):
    """Each edit replaces one number (integer, float or dimensions) of the file."""
    text = SOURCES[name]
    spans = [m.span() for m in NUMBER.finditer(text)]
    for where, number in edits:
        start, end = spans[where % len(spans)]
        text = text[:start] + number + text[end:]
        spans = [m.span() for m in NUMBER.finditer(text)] or [(0, 0)]
    check_text(text, name)


# -- (c) grammar-aware random networks -----------------------------------------------------------


@GENERATED
@given(net_files())
def test_generated_networks(text):
    check_text(text)


@GENERATED
@given(net_files())
def test_generated_networks_format_and_draw(text):
    """The other tools on the same inputs: every file that compiles formats (idempotently, with
    the same syntax tree: format_text checks it) and every network draws as SVG and DOT."""
    from xml.etree import ElementTree

    from cnndsl.tools.diagram import diagram, render_diagram
    from cnndsl.tools.fmt import format_text

    models = compile_all(text)
    if not models:
        return
    once = format_text(text, "fuzz.net")
    assert format_text(once, "fuzz.net") == once
    for model in models:
        for depth in (None, 0):
            d = diagram(model, depth)
            assert ElementTree.fromstring(render_diagram(d, ".svg")).tag.endswith("svg")  # well-formed XML
            assert render_diagram(d, ".dot").decode().rstrip().endswith("}")


def test_generated_networks_mostly_compile():
    """The generator is useful only if most of what it writes compiles (the rest
    exercises the errors); measured over a fixed sample."""
    ok = total = 0

    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(net_files())
    def sample(text):
        nonlocal ok, total
        total += 1
        ok += bool(compile_all(text))

    sample()
    assert ok >= 0.6 * total, (ok, total)


# -- (d) the regression corpus ----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.net")), ids=lambda p: p.name)
def test_corpus(path):
    data = path.read_bytes()
    assert data.startswith(b"#"), "a corpus file starts with a comment: what failed and the fix"
    text = data.decode("utf-8")
    check_text(text, path.name)


# -- compiler fixes found by fuzzing, each with its own check --------------------------------------


def test_in_c_before_the_input_is_a_located_error():
    """Found by test_mutated_networks[vnet.net]: in.c in a network parameter's default crashed
    (IndexError); there is no input shape yet, since parameters decide the input."""
    with pytest.raises(CnnError) as info:
        cnndsl.load("network n(k = in.c) {\n input 3x8x8\n conv k/3\n}")
    err = info.value.diagnostic
    assert (err.code, err.span.line, err.span.column) == ("E030", 1, 15)
    assert err.message.startswith("in.c has no value here: it is the shape entering the enclosing block or branch")


def test_zero_pad_then_max_pool_keeps_its_zeros_on_onnxruntime():
    """Found by test_generated_networks: onnxruntime's PadFusion moved `pad` into the next
    pool's padding, which MaxPool fills with -inf: on an all -1 input, `pad 1 -> maxpool 2`
    must give 0 where a window meets the padding (hand computation: a 6x6 map of 0 around
    the 4x4 of -1; 2x2/2 windows: the corners and edges touch zeros, the centre does not)."""
    import onnxruntime as ort

    from cnndsl.lower.export import to_onnx

    m = cnndsl.load("network n { input 1x4x4\n pad 1 -> maxpool 2\n}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(to_onnx(m).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": -np.ones((1, 1, 4, 4), np.float32)})[0][0, 0]
    expected = np.zeros((3, 3), np.float32)
    expected[1, 1] = -1
    np.testing.assert_array_equal(y, expected)


def test_integers_beyond_64_bits_are_errors_wherever_written(cli, netfile):
    """Found by test_number_mutations[cifar_resnet.net]: a literal stride of 10^20 compiled
    and crashed the export (ONNX attributes are int64). docs/language.md §4: integers
    beyond ±2^63 are errors — literals and -D values as well as arithmetic."""
    big = "99999999999999999999"
    with pytest.raises(CnnError) as info:
        cnndsl.load(f"network n {{ input 3x8x8\n conv 4/3/{big}\n}}")
    err = info.value.diagnostic
    assert (err.code, err.span.line, err.span.column) == ("E031", 2, 11)
    assert err.message == "integer too large: the value does not fit in 64 bits"
    path = netfile("network n(k = 2) { input 3x8x8\n conv 4/3/k\n}")
    r = cli("export", path, "-o", path.with_suffix(".onnx"), "-D", f"k={big}")
    assert r.returncode == 1 and not path.with_suffix(".onnx").exists()
    assert f"cnndsl: error: -D k={big}: integer too large: the value does not fit in 64 bits" in r.stderr
    m = cnndsl.load(path, defines={"k": 2**63 - 1})  # the largest that fits is fine: one output position
    assert m.outputs == [("output", (4, 1, 1))]


def test_conv_reflect_padding_must_be_smaller_than_its_input():
    """Found by test_generated_networks: `conv ... pad_mode=reflect` on a 1-wide map compiled
    and failed inside onnxruntime. A reflection of P elements needs P + 1 of them (the pad
    layer's rule, and PyTorch's: padding must be less than the input dimension)."""
    with pytest.raises(CnnError) as info:
        cnndsl.load("network n { input 1x1x5\n conv 1/3/1/1 pad_mode=reflect\n}")
    err = info.value.diagnostic
    assert (err.span.line, err.span.column) == (2, 13)
    assert err.message == "reflect padding must be smaller than the input; received pad=1x1 on 1x1x5"
    assert cnndsl.load("network n { input 1x2x5\n conv 1/3/1/1 pad_mode=reflect\n}").outputs == [("output", (1, 2, 5))]
