"""The code style CI enforces: ruff's lint rules and its formatter, as configured in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.runners import ROOT

RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.skipif(not RUFF.exists() and shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_finds_nothing():
    ruff = str(RUFF) if RUFF.exists() else "ruff"
    result = subprocess.run(
        [ruff, "check", "--output-format", "concise", "miffi", "tests", "benchmarks", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
