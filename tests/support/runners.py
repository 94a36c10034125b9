"""The one way tests run the command line and the workflow, and what they check about runs.

``cli`` runs ``miffi`` in this process (no torch import per case); ``miffi`` runs it as its
own process (real exit codes, real signals); ``snakemake`` runs the real workflow. Both
process runners are bounded by ``timeout``: a hung child is killed, never the suite.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from miffi.cli import main

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: The environment of every child process: this venv's tools first on PATH.
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

needs_snakemake = pytest.mark.skipif(
    shutil.which("snakemake", path=str(BIN)) is None, reason="snakemake is not installed in this environment"
)


@dataclass
class Outcome:
    code: int
    err: str


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> Outcome:
    """``miffi ARGV`` in this process: its exit code and what it wrote to stderr."""
    code = main([str(a) for a in argv])
    return Outcome(code, capsys.readouterr().err)


def miffi(
    *argv: object, timeout: float = 600, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``miffi ARGV`` as its own process."""
    return subprocess.run(
        [str(BIN / "miffi"), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=ENV if env is None else env,
    )


@contextlib.contextmanager
def serving(*argv: object, timeout: float = 120) -> Iterator[tuple[subprocess.Popen, str]]:
    """``miffi ARGV`` started as a server (``miffi label``/``curate``): the process and the
    URL it printed (``process.output``: its lines); stopped (killed if need be) when the
    block ends."""
    process = subprocess.Popen(
        [str(BIN / "miffi"), *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV
    )
    try:
        deadline, url, seen = time.monotonic() + timeout, None, []
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            seen.append(line)
            found = re.search(r"(http://\S+)", line)
            url = found[1] if found else None
        assert url, f"no URL from miffi {' '.join(map(str, argv))}:\n{''.join(seen)}"
        process.output = seen  # type: ignore[attr-defined]  # what it prints later, kept by a reader
        threading.Thread(target=lambda: seen.extend(process.stdout), daemon=True).start()
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


def snakemake(
    workdir: Path | None,
    *args: str,
    cores: int | None = 2,
    timeout: float = 900,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """The repository's workflow run by Snakemake in ``workdir`` (``None``: in ``cwd``).

    ``timeout`` kills Snakemake and its jobs (exit code 124) instead of hanging the suite.
    """
    command = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile")]
    if workdir is not None:
        command += ["--directory", str(workdir)]
    if cores is not None:
        command += ["--cores", str(cores)]
    return subprocess.run(
        ["timeout", "-k", "10", str(int(timeout)), *command, *args],
        capture_output=True,
        text=True,
        env=ENV if env is None else env,
        cwd=cwd,
    )


def succeeded(result: subprocess.CompletedProcess) -> str:
    """The log of a run that must have succeeded (its tail in the failure message)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def jobs(log: str) -> dict[str, int]:
    """How many jobs of each rule a run executed (from Snakemake's own log)."""
    counts: dict[str, int] = {}
    for name in re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M):
        counts[name] = counts.get(name, 0) + 1
    return counts


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
