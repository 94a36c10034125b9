"""What the workflow benchmarks share: their options, the workflow config they write and
the ``snakemake`` command they time (not a benchmark itself)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def parse_args(doc: str, n: int, chunks: int, rounds: int | None = None) -> argparse.Namespace:
    """``--n`` micrographs, ``--chunks``, ``--workdir`` and, where ``rounds`` is given,
    ``--rounds`` (the defaults given)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--chunks", type=int, default=chunks)
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--workdir", type=Path)
    return parser.parse_args()


def environment() -> dict[str, str]:
    """This environment with the virtual environment's ``bin`` first on ``PATH`` (for ``miffi``)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def write_config(work: Path, outdir: str, dataset: str, table: str, chunks: int) -> None:
    """``work/config.yaml``: one dataset of ``table`` in ``chunks`` chunks, on the CPU."""
    (work / "config.yaml").write_text(
        yaml.safe_dump({"outdir": outdir, "datasets": {dataset: {"input": [table], "chunks": chunks, "device": "cpu"}}})
    )


def snakemake(work: Path, cores: int) -> list[str]:
    """The quiet ``snakemake`` command running the workflow in ``work`` on ``cores`` cores."""
    return [
        str(BIN / "snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--cores",
        str(cores),
        "--quiet",
    ]
