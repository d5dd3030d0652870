"""Fuzzing (first part of the robustness work): whatever the text, the compiler
answers with a model or a CnnError pointing inside the file — never another
exception. Bounded for CI; CNNDSL_FUZZ_EXAMPLES raises the count for long runs."""

import os
import re

import pytest
from conftest import NETWORKS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnndsl
from cnndsl import CnnError, compile_network, run_deep
from cnndsl.modules import Loader

EXAMPLES = int(os.environ.get("CNNDSL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCES = {p.name: p.read_text() for p in sorted(NETWORKS.glob("*.net"))}
TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+(?:x\d+)+|\d+\.\d*|\d+|->|//|.", re.S)
REPLACEMENTS = ["0", "-1", "99999999999999999999", "2.5", "1e9", "{", "}", "(", ")", "@x", "->", "*", "/", "_",
                ";", "\n", "x", "3x3", "in.c", "same", "ceil", "true", "#", '"', "repeat", "output", "input"]


def compile_all(text: str) -> None:
    """Load every network of the text; only CnnError with a location inside the text may escape."""
    lines = text.splitlines() or [""]

    def run():
        module = Loader().load_text(text, "fuzz.net")
        for name in module.networks:
            try:
                compile_network(module, name, {})
            except CnnError as err:
                check_location(err, lines)

    try:
        run_deep(run)
    except CnnError as err:
        check_location(err, lines)


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


@FUZZ
@given(
    st.sampled_from(sorted(SOURCES)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 10**6), st.sampled_from(REPLACEMENTS)),
             min_size=1, max_size=4),
)
def test_mutated_networks(name, edits):
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
    compile_all("".join(tokens))


def test_path_like_strings_are_user_errors():
    with pytest.raises(CnnError, match="not a usable path"):
        cnndsl.load("\0\0\0")


@pytest.mark.parametrize("text", [
    "",
    "\0\0\0",
    "network n {" * 50,
    "network n { input 3x8x8\n" + "{ " * 300 + "relu" + " }" * 300 + "\n}",
    "network n { input 3x8x8\n conv (" + "(" * 200 + "1" + ")" * 200 + ")/1\n}",
    "network n { input 3x8x8\n conv (99999999999 * 99999999999 * 99999999999)/1\n}",
    "network n { input 3x99999999x99999999\n conv 99999999/3 -> fc 99999999\n}",
    "network n { input 3x8x8\n repeat 100000000000 { relu }\n}",
])
def test_hostile_inputs(text):
    compile_all(text)
