import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "networks"

# GoogLeNet's inception module as LANGUAGE.md §8 writes it (Szegedy et al. 2014, figure 2b),
# shared by the tests that use it
INCEPTION_BLOCK = """
block inception(c1, c3r, c3, c5r, c5, pp) {
    concat {
        conv c1/1 -> relu
        conv c3r/1 -> relu -> conv c3/3/1/1 -> relu
        conv c5r/1 -> relu -> conv c5/5/1/2 -> relu
        maxpool 3/1/1 -> conv pp/1 -> relu
    }
}
"""


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-long", action="store_true", help="long fuzz run: CNNDSL_FUZZ_EXAMPLES=5000 unless that variable is set"
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run only when ``-m`` names them (``pytest -m slow``); otherwise they
    are reported as skipped, so the default run stays within minutes on two cores."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


def pytest_configure(config):
    # before test_fuzz.py is imported, which reads the count
    if config.getoption("--fuzz-long"):
        os.environ.setdefault("CNNDSL_FUZZ_EXAMPLES", "5000")


def run_cli(*args, cwd=None, input=None):
    """Run the installed `cnndsl` as a user would; returns CompletedProcess."""
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "cnndsl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=input,
        env=env,
        timeout=120,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def netfile(tmp_path):
    """Write a .net file and return its path: netfile("network n { ... }")."""

    def write(text, name="t.net"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    return write
