"""RELION micrograph star files: 3.1+ (data_optics + data_micrographs) and older single-block ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from miffi.errors import InputError

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


def read_relion(path: Path) -> pd.DataFrame:
    """Micrograph rows of a RELION star file, every original column kept.

    Adds ``raw_path``, ``metadata_pixel_size`` (NaN when the file has none),
    ``optics_group`` and ``input_block`` (the block the rows came from).
    """
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors
        raise InputError(path, f"not a readable star file ({exc})") from None
    block_name, block = _micrograph_block(blocks, path)
    optics = blocks.get("optics")
    table = block.reset_index(drop=True).copy()
    table["raw_path"] = table[NAME].astype(str)
    table["metadata_pixel_size"] = _pixel_sizes(table, optics, path)
    if "rlnOpticsGroup" in table.columns:
        group = table["rlnOpticsGroup"].astype(str)
        if optics is not None and "rlnOpticsGroupName" in optics.columns:
            names = dict(zip(optics["rlnOpticsGroup"].astype(str), optics["rlnOpticsGroupName"].astype(str)))
            group = group.map(lambda g: names.get(g, g))
        table["optics_group"] = group
    table["input_block"] = block_name
    return table
