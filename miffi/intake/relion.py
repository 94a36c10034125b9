"""RELION micrograph star files: 3.1+ (data_optics + data_micrographs) and older single-block ones."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from miffi.errors import InputError
from miffi.textfiles import clean_copy, read_text

NAME = "rlnMicrographName"


def _micrograph_block(blocks: dict[str, pd.DataFrame], path: Path) -> tuple[str, pd.DataFrame]:
    candidates = [
        (name, block)
        for name, block in blocks.items()
        if isinstance(block, pd.DataFrame) and NAME in block.columns
    ]
    if not candidates:
        raise InputError(path, f"no data block with a {NAME} column (is this a micrograph star file?)")
    for name, block in candidates:
        if name == "micrographs":
            return name, block
    return candidates[0]


def _pixel_sizes(block: pd.DataFrame, optics: pd.DataFrame | None, path: Path) -> np.ndarray:
    """Per-row pixel size (Å) from the row, its optics group, or detector pixel / magnification."""
    size = np.full(len(block), np.nan)
    if "rlnMicrographPixelSize" in block.columns:
        size = block["rlnMicrographPixelSize"].to_numpy(dtype=float)
    elif optics is not None and "rlnOpticsGroup" in block.columns:
        column = next(
            (c for c in ("rlnMicrographPixelSize", "rlnImagePixelSize") if c in optics.columns), None
        )
        if column is not None:
            lookup = dict(zip(optics["rlnOpticsGroup"].astype(int), optics[column].astype(float)))
            groups = block["rlnOpticsGroup"].astype(int)
            unknown = sorted(set(groups) - set(lookup))
            if unknown:
                raise InputError(path, f"rows refer to optics group(s) {unknown} not in data_optics")
            size = groups.map(lookup).to_numpy(dtype=float)
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(block.columns):
        # RELION < 3.1: detector pixel in µm, nominal magnification.
        size = 1e4 * block["rlnDetectorPixelSize"].to_numpy(float) / block["rlnMagnification"].to_numpy(float)
    return size


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
                    raise InputError(path, f"line {last[0]} has {fields} of the loop's {columns} fields "
                                           "(the file is cut off or damaged)")
            columns, last = 0, None
        elif stripped.startswith("_") and last is None:
            columns += 1
        elif stripped and not stripped.startswith("#") and columns:
            last = (number, stripped)


def read_star(path: Path) -> dict[str, pd.DataFrame | dict]:
    """The blocks of a star file (Windows line ends and byte-order marks allowed)."""
    text = read_text(path, "star file")
    try:
        _check_loops(text, path)
    except ValueError as exc:  # unbalanced quotes
        raise InputError(path, f"not a readable star file ({exc})") from None
    with clean_copy(path) as clean:
        try:
            return starfile.read(clean, always_dict=True)
        except Exception as exc:  # starfile raises assorted parser errors
            raise InputError(path, f"not a readable star file ({type(exc).__name__}: {exc})") from None


def read_relion(path: Path) -> pd.DataFrame:
    """Micrograph rows of a RELION star file, every original column kept.

    Adds ``raw_path``, ``metadata_pixel_size`` (NaN when the file has none),
    ``optics_group`` and ``input_block`` (the block the rows came from).
    """
    blocks = read_star(path)
    block_name, block = _micrograph_block(blocks, path)
    if block.empty:
        raise InputError(path, f"block data_{block_name} has no rows (no micrographs)")
    optics = blocks.get("optics")
    table = block.reset_index(drop=True).copy()
    table["raw_path"] = table[NAME].astype(str)
    try:
        table["metadata_pixel_size"] = _pixel_sizes(table, optics, path)
    except (ValueError, TypeError) as exc:  # e.g. an optics group that is not a number
        raise InputError(path, f"unreadable optics group or pixel size values ({exc})") from None
    if "rlnOpticsGroup" in table.columns:
        group = table["rlnOpticsGroup"].astype(str)
        if optics is not None and "rlnOpticsGroupName" in optics.columns:
            names = dict(zip(optics["rlnOpticsGroup"].astype(str), optics["rlnOpticsGroupName"].astype(str)))
            group = group.map(lambda g: names.get(g, g))
        table["optics_group"] = group
    table["input_block"] = block_name
    return table
