"""The code is ruff-formatted and ruff-clean (rules and version in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

PATHS = ["cnndsl", "tests", "benchmarks"]


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "check"])
def test_ruff(command):
    pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")
    r = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", *PATHS], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
