"""The code checks CI enforces, as configured in pyproject.toml: ruff's lint rules, its
formatter, and mypy (strict) on the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.runners import BIN, ROOT

CODE = ["miffi", "tests", "benchmarks", "scripts"]
CHECKS = {
    "ruff lint": [str(BIN / "ruff"), "check", "--output-format", "concise", *CODE],
    "ruff format": [str(BIN / "ruff"), "format", "--check", *CODE],
    "mypy": [sys.executable, "-m", "mypy"],
}


@pytest.mark.parametrize("check", CHECKS)
def test_code_passes(check):
    command = CHECKS[check]
    if command[0] != sys.executable and not (BIN / "ruff").exists():
        pytest.skip("ruff is not installed in this environment (scripts/setup-venv.sh installs it)")
    if check == "mypy" and subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True).returncode:
        pytest.skip("mypy is not installed in this environment (scripts/setup-venv.sh installs it)")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
