"""cryoSPARC exposures: a ``.cs`` dataset, or a ``.csg`` group file that points at several."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from cryosparc.dataset import Dataset

from miffi.errors import InputError

PATH_FIELD = "micrograph_blob/path"


def _load_dataset(path: Path) -> Dataset:
    try:
        return Dataset.load(str(path))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as exc:  # cryosparc-tools raises assorted errors on bad files
        raise InputError(path, f"not a readable cryoSPARC .cs file ({exc})") from None


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
    return _exposure_table(_load_dataset(path), path)


def csg_metafiles(path: Path) -> list[Path]:
    """The distinct ``.cs`` files a ``.csg`` refers to (``>`` = relative to the .csg)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable .csg file ({exc})") from None
    results = document.get("results") if isinstance(document, dict) else None
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


def read_csg(path: Path) -> pd.DataFrame:
    """Exposures of a ``.csg``: its ``.cs`` files joined on ``uid``."""
    datasets = [_load_dataset(cs) for cs in csg_metafiles(path)]
    try:
        merged = Dataset.innerjoin_many(*datasets)
    except Exception as exc:
        raise InputError(path, f"its .cs files cannot be joined on uid ({exc})") from None
    return _exposure_table(merged, path)
