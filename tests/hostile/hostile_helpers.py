"""Shared tools of the hostile-input tests: the real CLI in-process and as a process,
checksums of inputs, and markers that payloads would create."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from miffi.cli import main

BIN = Path(sys.executable).parent


@dataclass
class Outcome:
    code: int
    err: str


def cli(capsys, *argv: str) -> Outcome:
    """``miffi ARGV`` in this process (the real command line, without a torch import per case)."""
    code = main([str(a) for a in argv])
    return Outcome(code, capsys.readouterr().err)


def cli_process(*argv: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``miffi ARGV`` as its own process: real exit codes, real signals."""
    return subprocess.run(
        [str(BIN / "miffi"), *map(str, argv)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def checksums(*folders: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folders`` (inputs must come out byte-identical)."""
    sums = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_symlink():
                sums[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def one_error_line(err: str) -> str:
    """The single ``miffi: error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("miffi: error:")]
    assert len(lines) == 1, err
    return lines[0]


def is_root() -> bool:
    return os.geteuid() == 0
