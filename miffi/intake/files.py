"""Plain inputs: MRC files named directly, text lists of paths, globs and directories.

Folders and globs skip RELION's ``*_PS.mrc`` and ``*_noDW.mrc`` companions of the
micrographs they find; files named directly or in a list are always taken.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import pandas as pd

from miffi.errors import InputError
from miffi.textfiles import read_text

GLOB_CHARACTERS = set("*?[")
#: Stem endings of the files RELION's MotionCorr writes beside each micrograph.
COMPANION_SUFFIXES = ("_PS", "_noDW")

log = logging.getLogger(__name__)


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


def skip_companions(paths: list[Path], source: str) -> list[Path]:
    """``paths`` without the files RELION's MotionCorr writes beside each micrograph ``X.mrc``:
    ``X_PS.mrc`` (its power spectrum) and ``X_noDW.mrc`` (the sum without dose weighting).

    A companion is dropped only when its micrograph is among ``paths`` too, so a pattern
    that asks for companions (``*_noDW.mrc``) still gets them; one line says how many went.
    """
    present = set(paths)
    skipped = {suffix: 0 for suffix in COMPANION_SUFFIXES}
    kept = []
    for path in paths:
        suffix = next((s for s in COMPANION_SUFFIXES if path.stem.endswith(s)), None)
        if suffix and path.with_name(path.stem.removesuffix(suffix) + path.suffix) in present:
            skipped[suffix] += 1
        else:
            kept.append(path)
    if len(kept) < len(paths):
        log.info(
            "%s: skipped %d RELION companion file(s) of micrographs also found (%d *_PS power spectra, "
            "%d *_noDW sums without dose weighting); name them directly or in a list file to use them",
            source,
            len(paths) - len(kept),
            skipped["_PS"],
            skipped["_noDW"],
        )
    return kept


def expand_glob(pattern: str) -> pd.DataFrame:
    """Files matching ``pattern`` (``**`` recurses), in sorted order, without RELION
    companions (see :func:`skip_companions`)."""
    matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if Path(p).is_file()]
    if not matches:
        raise InputError(pattern, "pattern matches no files")
    return _frame([str(p.resolve()) for p in skip_companions(matches, pattern)])


def read_directory(path: Path, pattern: str) -> pd.DataFrame:
    """Files in ``path`` matching ``pattern`` (e.g. ``*.mrc``), in sorted order, without
    RELION companions (see :func:`skip_companions`)."""
    matches = sorted(p for p in path.glob(pattern) if p.is_file())
    if not matches:
        raise InputError(path, f"directory has no files matching {pattern!r}")
    return _frame([str(p.resolve()) for p in skip_companions(matches, str(path))])


def single_file(path: Path) -> pd.DataFrame:
    return _frame([str(path)])
