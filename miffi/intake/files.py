"""Plain inputs: MRC files named directly, text lists of paths, globs and directories."""

from __future__ import annotations

import glob
from pathlib import Path

import pandas as pd

from miffi.errors import InputError
from miffi.textfiles import read_text

GLOB_CHARACTERS = set("*?[")


def is_glob(text: str) -> bool:
    return any(ch in GLOB_CHARACTERS for ch in text)


def _frame(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"raw_path": pd.Series(paths, dtype=object)})


def read_list(path: Path) -> pd.DataFrame:
    """One path per line; blank lines and ``#`` comments are skipped (Windows line ends and
    a byte-order mark too)."""
    lines = read_text(path, "list of micrograph paths").splitlines()
    paths = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not paths:
        raise InputError(path, "list contains no micrograph paths")
    return _frame(paths)


def expand_glob(pattern: str) -> pd.DataFrame:
    """Files matching ``pattern`` (``**`` recurses), in sorted order."""
    matches = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not matches:
        raise InputError(pattern, "pattern matches no files")
    return _frame([str(Path(p).resolve()) for p in matches])


def read_directory(path: Path, pattern: str) -> pd.DataFrame:
    """Files in ``path`` matching ``pattern`` (e.g. ``*.mrc``), in sorted order."""
    matches = sorted(p for p in path.glob(pattern) if p.is_file())
    if not matches:
        raise InputError(path, f"directory has no files matching {pattern!r}")
    return _frame([str(p.resolve()) for p in matches])


def single_file(path: Path) -> pd.DataFrame:
    return _frame([str(path)])
