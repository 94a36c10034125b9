"""cryoSPARC exposures: a ``.cs`` dataset, or a ``.csg`` group file that points at several."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from cryosparc.dataset import Dataset

from miffi.errors import InputError
from miffi.textfiles import read_yaml_mapping

PATH_FIELD = "micrograph_blob/path"


def _check_npy_size(path: Path) -> None:
    """A .cs file in NumPy format must hold the rows its header claims (checked before
    loading, so a damaged header cannot make us allocate what it claims)."""
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            return
        handle.seek(0)
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
        except (ValueError, SyntaxError, TypeError) as exc:
            raise InputError(path, f"damaged .cs header ({exc})") from None
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        available = os.fstat(handle.fileno()).st_size - handle.tell()
    if dtype.hasobject:
        raise InputError(path, "holds Python objects (a .cs file holds plain fields only)")
    if claimed > available:
        raise InputError(
            path,
            f"truncated or damaged: its header claims {shape[0] if shape else 0} rows "
            f"({claimed} bytes) but the file holds {available} bytes of data",
        )


def load_dataset(path: Path, referenced_by: Path | None = None) -> Dataset:
    """A cryoSPARC .cs file; ``referenced_by`` names the .csg that points at it."""
    if not path.is_file():
        if referenced_by is not None:
            raise InputError(referenced_by, f"refers to a missing .cs file: {path}")
        raise InputError(path, "file not found")
    _check_npy_size(path)
    try:
        return Dataset.load(str(path))
    except Exception as exc:  # cryosparc-tools raises assorted errors on bad files
        raise InputError(path, f"not a readable cryoSPARC .cs file ({type(exc).__name__}: {exc})") from None


def _to_frame(dataset: Dataset) -> pd.DataFrame:
    """Flatten a dataset: vector fields become ``field[0]``, ``field[1]``, ..."""
    columns: dict[str, np.ndarray] = {}
    for field in dataset.fields():
        values = np.asarray(dataset[field])
        if values.ndim == 1:
            columns[field] = values
        else:
            for i in range(values.shape[1]):
                columns[f"{field}[{i}]"] = values[:, i]
    return pd.DataFrame(columns)


def _exposure_table(dataset: Dataset, path: Path) -> pd.DataFrame:
    if PATH_FIELD not in dataset.fields():
        raise InputError(path, f"no {PATH_FIELD} field (is this an exposures .cs file?)")
    table = _to_frame(dataset)
    table["raw_path"] = table[PATH_FIELD].astype(str)
    psize = "micrograph_blob/psize_A"
    table["metadata_pixel_size"] = table[psize].astype(float) if psize in table else np.nan
    if "micrograph_blob/shape[0]" in table:
        table["height"] = table["micrograph_blob/shape[0]"].astype("Int64")
        table["width"] = table["micrograph_blob/shape[1]"].astype("Int64")
    if "mscope_params/exp_group_id" in table:
        table["optics_group"] = table["mscope_params/exp_group_id"].astype(str)
    return table


def read_cs(path: Path) -> pd.DataFrame:
    """Rows of an exposures ``.cs`` file with ``raw_path``, pixel size and shape added."""
    return _exposure_table(load_dataset(path), path)


def csg_metafiles(path: Path) -> list[Path]:
    """The distinct ``.cs`` files a ``.csg`` refers to (``>`` = relative to the .csg)."""
    document = read_yaml_mapping(path, "cryoSPARC .csg file")
    results = document.get("results")
    if not isinstance(results, dict) or not results:
        raise InputError(path, "no 'results' section (is this a cryoSPARC .csg file?)")
    files: list[Path] = []
    for name, entry in results.items():
        metafile = entry.get("metafile") if isinstance(entry, dict) else None
        if not isinstance(metafile, str):
            raise InputError(path, f"result {name!r} has no metafile")
        target = path.parent / metafile[1:] if metafile.startswith(">") else Path(metafile)
        if target not in files:
            files.append(target)
    return files


def load_group(path: Path) -> Dataset:
    """The exposures of a ``.csg``: its ``.cs`` files joined on ``uid``."""
    datasets = [load_dataset(cs, path) for cs in csg_metafiles(path)]
    try:
        return Dataset.innerjoin_many(*datasets)
    except Exception as exc:
        raise InputError(path, f"its .cs files cannot be joined on uid ({exc})") from None


def read_csg(path: Path) -> pd.DataFrame:
    """Rows of a ``.csg``'s exposures (see :func:`load_group`), like :func:`read_cs`."""
    return _exposure_table(load_group(path), path)
