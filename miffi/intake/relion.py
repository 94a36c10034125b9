"""RELION star files: what kind a file is, and the micrographs of a micrographs or particles star.

RELION 3.1+ files have a ``data_optics`` block beside ``data_micrographs`` (or
``data_particles``); older files are a single block.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import starfile

from miffi.errors import InputError
from miffi.textfiles import clean_copy, read_text

NAME = "rlnMicrographName"
#: Per-micrograph columns of a particles star: the first particle's value stands for its micrograph.
MICROGRAPH_COLUMNS = (
    NAME,
    "rlnOpticsGroup",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnCtfAstigmatism",
    "rlnCtfMaxResolution",
    "rlnCtfFigureOfMerit",
    "rlnPhaseShift",
    "rlnCtfImage",
    "rlnMicrographMetadata",
    "rlnMicrographPixelSize",
)
#: How a star file that holds no micrographs is told apart, and what to give instead.
NOT_MICROGRAPHS = {
    "rlnMicrographMovieName": "lists movies, not micrographs: motion-correct them first and give the "
    "micrographs star (e.g. MotionCorr/jobNNN/corrected_micrographs.star)",
    "rlnMicrographCoordinates": "lists particle coordinate files: give the micrographs star the particles "
    "were picked on (e.g. CtfFind/jobNNN/micrographs_ctf.star), or a particles star",
    "rlnCoordinateX": "holds the particle coordinates of one micrograph: give the micrographs star the "
    "particles were picked on (e.g. CtfFind/jobNNN/micrographs_ctf.star), or a particles star",
}


def _tables(blocks: dict[str, pd.DataFrame | dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Loop blocks as tables; simple (key-value) blocks as one-row tables."""
    return {
        name: block if isinstance(block, pd.DataFrame) else pd.DataFrame([block])
        for name, block in blocks.items()
        if isinstance(block, (pd.DataFrame, dict))
    }


def star_kind(blocks: dict[str, pd.DataFrame | dict[str, Any]], path: Path) -> tuple[str, str]:
    """``("micrographs" | "particles", block name)`` of a star file's blocks.

    Raises
    ------
    InputError
        For movie, coordinate and other tables, saying what to give instead.
    """
    tables = _tables(blocks)

    def having(column: str) -> list[str]:
        return [name for name, block in tables.items() if column in block.columns]

    particles = [name for name in having(NAME) if name in having("rlnImageName")]
    if particles:
        return "particles", particles[0]
    micrographs = [name for name in having(NAME) if name not in having("rlnMicrographCoordinates")]
    if micrographs:
        return "micrographs", "micrographs" if "micrographs" in micrographs else micrographs[0]
    for column, problem in NOT_MICROGRAPHS.items():
        if having(column):
            raise InputError(path, problem)
    if having("rlnImageName"):
        raise InputError(
            path, f"a particles star without a {NAME} column: it does not say which micrographs the particles come from"
        )
    raise InputError(path, f"no data block with a {NAME} column (is this a micrograph star file?)")


def micrograph_rows(blocks: dict[str, pd.DataFrame | dict[str, Any]], path: Path) -> tuple[str, str, pd.DataFrame]:
    """Kind, block name and one row per micrograph of a star file.

    For a particles star the rows are its distinct micrographs in the order they first
    appear, with the per-micrograph columns (:data:`MICROGRAPH_COLUMNS`) of their first
    particle and a ``particles`` count. Exports index these rows by position.
    """
    kind, name = star_kind(blocks, path)
    block = _tables({name: blocks[name]})[name]  # a one-micrograph star may hold a simple block
    if kind == "micrographs":
        return kind, name, block.reset_index(drop=True)
    names = block[NAME].astype(str)
    first = ~names.duplicated()
    rows = block.loc[first, [c for c in MICROGRAPH_COLUMNS if c in block.columns]].reset_index(drop=True)
    rows["particles"] = names.value_counts(sort=False).reindex(names[first]).to_numpy()
    return kind, name, rows


def particles_of(block: pd.DataFrame, micrographs: pd.Series) -> pd.DataFrame:
    """Every particle of ``block`` whose micrograph is one of ``micrographs``, in file order."""
    return block[block[NAME].astype(str).isin(set(micrographs.astype(str)))].reset_index(drop=True)


def optics_lookup(optics: pd.DataFrame | None, groups: pd.Series, column: str, path: Path) -> np.ndarray:
    """Per-row values of an optics-group ``column`` (NaN where there is none)."""
    if optics is None or column not in optics.columns:
        return np.full(len(groups), np.nan)
    try:
        lookup = dict(zip(optics["rlnOpticsGroup"].astype(int), optics[column].astype(float)))
        numbers = groups.astype(int)
    except (ValueError, TypeError, KeyError) as exc:  # e.g. an optics group that is not a number
        raise InputError(path, f"unreadable optics group or {column} values ({exc})") from None
    unknown = sorted(set(numbers) - set(lookup))
    if unknown:
        raise InputError(path, f"rows refer to optics group(s) {unknown} not in data_optics")
    return numbers.map(lookup).to_numpy(dtype=float)


def _pixel_sizes(
    rows: pd.DataFrame, optics: pd.DataFrame | None, kind: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row micrograph pixel size (Å) and whether it is the movies' (unbinned) one.

    The row's or its optics group's ``rlnMicrographPixelSize``; else the optics group's
    ``rlnMicrographOriginalPixelSize`` (the movies' pixel: right unless motion correction
    binned, which intake checks against the MRC header); else, for old micrograph stars,
    detector pixel / magnification. Never ``rlnImagePixelSize``: that is the extracted
    particles' pixel.
    """
    unset = np.full(len(rows), np.nan)
    if "rlnMicrographPixelSize" in rows.columns:
        return rows["rlnMicrographPixelSize"].to_numpy(dtype=float), np.zeros(len(rows), bool)
    if optics is not None and "rlnOpticsGroup" in rows.columns:
        size = optics_lookup(optics, rows["rlnOpticsGroup"], "rlnMicrographPixelSize", path)
        original = optics_lookup(optics, rows["rlnOpticsGroup"], "rlnMicrographOriginalPixelSize", path)
        from_original = np.isnan(size) & ~np.isnan(original)
        return np.where(from_original, original, size), from_original
    if kind == "micrographs" and {"rlnDetectorPixelSize", "rlnMagnification"} <= set(rows.columns):
        # RELION < 3.1: detector pixel in µm, nominal magnification.
        size = 1e4 * rows["rlnDetectorPixelSize"].to_numpy(float) / rows["rlnMagnification"].to_numpy(float)
        return size, np.zeros(len(rows), bool)
    return unset, np.zeros(len(rows), bool)


def _check_loops(text: str, path: Path) -> None:
    """Every loop's last row has as many fields as the loop has columns (a file cut off
    mid-row would otherwise read as a row with missing values)."""
    lines = text.split("\n")
    columns, last = 0, None
    for number, line in enumerate([*lines, ""], start=1):
        stripped = line.strip()
        if stripped.startswith("loop_") or stripped.startswith("data_") or number > len(lines):
            if columns and last is not None:
                fields = len(shlex.split(last[1], comments=False, posix=True))
                if fields != columns:
                    raise InputError(
                        path,
                        f"line {last[0]} has {fields} of the loop's {columns} fields (the file is cut off or damaged)",
                    )
            columns, last = 0, None
        elif stripped.startswith("_") and last is None:
            columns += 1
        elif stripped and not stripped.startswith("#") and columns:
            last = (number, stripped)


def read_star(path: Path) -> dict[str, pd.DataFrame | dict[str, Any]]:
    """The blocks of a star file (Windows line ends and byte-order marks allowed)."""
    text = read_text(path, "star file")
    try:
        _check_loops(text, path)
    except ValueError as exc:  # unbalanced quotes
        raise InputError(path, f"not a readable star file ({exc})") from None
    with clean_copy(path) as clean:
        try:
            blocks: dict[str, pd.DataFrame | dict[str, Any]] = starfile.read(clean, always_dict=True)
            return blocks
        except Exception as exc:  # starfile raises assorted parser errors
            raise InputError(path, f"not a readable star file ({type(exc).__name__}: {exc})") from None


def read_relion(path: Path) -> pd.DataFrame:
    """Micrograph rows of a micrographs or particles star file.

    A micrographs star keeps every original column; a particles star gives its
    micrographs (see :func:`micrograph_rows`). Adds ``raw_path``, ``metadata_pixel_size``
    (NaN when the file has none), ``original_pixel_size`` (True where that is the movies'
    pixel size), ``optics_group`` and ``input_block`` (the block the rows came from).
    """
    blocks = read_star(path)
    kind, block_name, table = micrograph_rows(blocks, path)
    if table.empty:
        raise InputError(path, f"block data_{block_name} has no rows (no {kind})")
    optics = blocks.get("optics")
    optics = optics if isinstance(optics, pd.DataFrame) else None
    table = table.copy()
    table["raw_path"] = table[NAME].astype(str)
    try:
        table["metadata_pixel_size"], table["original_pixel_size"] = _pixel_sizes(table, optics, kind, path)
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"unreadable pixel size values ({exc})") from None
    if "rlnOpticsGroup" in table.columns:
        group = table["rlnOpticsGroup"].astype(str)
        if optics is not None and "rlnOpticsGroupName" in optics.columns:
            names = dict(zip(optics["rlnOpticsGroup"].astype(str), optics["rlnOpticsGroupName"].astype(str)))
            group = group.map(lambda g: names.get(g, g))
        table["optics_group"] = group
    table["input_block"] = block_name
    return table
