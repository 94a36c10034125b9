"""Exports that RELION and cryoSPARC import directly, and plain lists; inputs are never touched.

For each collection of micrographs (a category, ``bad_single``, and optionally the
high/low-confidence halves) with at least one micrograph:

``relion/<name>.star``
    every block of the input star file with only the collection's rows in its
    micrograph block (columns unchanged); for non-star inputs a RELION 3.1 file with
    one optics group per pixel size.
``cryosparc/<name>.cs`` + ``.csg``
    all fields of the input exposures (joined over the input's .cs files) for the
    collection's rows, and a group file for "Import Result Group"; for other inputs a
    minimal exposures dataset (path, pixel size, shape).
``lists/<name>.txt``
    the micrographs' paths, one per line (``failed.txt``: those that could not be read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import yaml
from cryosparc.dataset import Dataset

from miffi import atomic
from miffi.combine import CATEGORIES, SINGLE_BAD
from miffi.intake.cryosparc import csg_metafiles, load_dataset
from miffi.intake.relion import read_star

FORMATS = ("relion", "cryosparc", "lists")


def collections(results: pd.DataFrame, split_confidence: bool = False) -> dict[str, pd.DataFrame]:
    """Named subsets of the usable micrographs: categories, ``bad_single`` and confidence halves."""
    usable = results[results["status"] != "failed"]
    named = {name: usable[usable["category"] == name] for name in CATEGORIES}
    named["bad_single"] = usable[usable["category"].isin(SINGLE_BAD)]
    if split_confidence:
        for name in ["good", "bad_single", *SINGLE_BAD]:
            for level in ("high", "low"):
                subset = named[name]
                named[f"{name}_{level}_conf"] = subset[subset["confidence_level"] == level]
    return {name: subset for name, subset in named.items() if len(subset)}


def _single_source(rows: pd.DataFrame, suffixes: Iterable[str]) -> str | None:
    sources = rows["input"].unique()
    if len(sources) == 1 and Path(sources[0]).suffix.lower() in suffixes:
        return str(sources[0])
    return None


def _optics_frame(pixel_sizes: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    sizes = sorted(float(v) for v in pixel_sizes.dropna().unique()) or [0.0]
    groups = {size: i + 1 for i, size in enumerate(sizes)}
    optics = pd.DataFrame({"rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups.values()],
                           "rlnOpticsGroup": list(groups.values()),
                           "rlnMicrographPixelSize": sizes})
    return optics, pixel_sizes.map(lambda v: groups.get(float(v), 1) if pd.notna(v) else 1)


def relion_source(usable: pd.DataFrame) -> dict[str, pd.DataFrame] | None:
    """The blocks of the input star file, when every usable micrograph came from one."""
    source = _single_source(usable, {".star"})
    return read_star(Path(source)) if source else None


def cryosparc_source(usable: pd.DataFrame) -> Dataset | None:
    """The input exposures (a .csg's .cs files joined on uid), when all came from one."""
    source = _single_source(usable, {".cs", ".csg"})
    if source is None:
        return None
    if source.lower().endswith(".csg"):
        return Dataset.innerjoin_many(*[load_dataset(p) for p in csg_metafiles(Path(source))])
    return load_dataset(Path(source))


def write_relion(rows: pd.DataFrame, source: dict[str, pd.DataFrame] | None, path: Path) -> None:
    if source is not None:
        blocks = dict(source)
        block = rows["input_block"].iloc[0]
        blocks[block] = source[block].iloc[rows["input_row"].to_numpy()].reset_index(drop=True)
    else:
        optics, groups = _optics_frame(rows["pixel_size"])
        blocks = {"optics": optics,
                  "micrographs": pd.DataFrame({"rlnMicrographName": rows["path"].to_numpy(),
                                               "rlnOpticsGroup": groups.to_numpy()})}
    with atomic.temporary_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)


def write_cryosparc(rows: pd.DataFrame, source: Dataset | None, cs_path: Path) -> None:
    if source is not None:
        dataset = source.take(rows["input_row"].to_numpy())
    else:
        dataset = Dataset.allocate(len(rows), fields=[("micrograph_blob/path", "O"),
                                                      ("micrograph_blob/psize_A", "f4"),
                                                      ("micrograph_blob/shape", "2u4")])
        dataset["micrograph_blob/path"] = rows["path"].tolist()
        dataset["micrograph_blob/psize_A"] = rows["pixel_size"].fillna(0).to_numpy()
        dataset["micrograph_blob/shape"] = rows[["height", "width"]].fillna(0).to_numpy(dtype=np.uint32)
    with atomic.temporary_path(cs_path) as tmp:
        dataset.save(str(tmp))
    prefixes = sorted({field.split("/")[0] for field in dataset.fields() if "/" in field})
    group = {
        "created": pd.Timestamp.now().isoformat(),
        "group": {"name": cs_path.stem, "title": cs_path.stem.replace("_", " "), "type": "exposure",
                  "description": f"miffi: {cs_path.stem} micrographs"},
        "results": {prefix: {"metafile": f">{cs_path.name}", "num_items": len(rows),
                             "type": f"exposure.{prefix}"} for prefix in prefixes},
        "version": "miffi",
    }
    atomic.write_text(cs_path.with_suffix(".csg"), yaml.safe_dump(group, sort_keys=False))


def collection_names() -> set[str]:
    """Every name an export file of ours can have (so a re-run can remove stale ones)."""
    base = {*CATEGORIES, "bad_single"}
    return base | {f"{name}_{level}_conf" for name in base for level in ("high", "low")} | {"failed"}


def _remove_stale(outdir: Path, keep: set[str]) -> None:
    """Delete export files of an earlier run whose collection is now empty or not asked for."""
    suffixes = {"relion": (".star",), "cryosparc": (".cs", ".csg"), "lists": (".txt",)}
    stale = collection_names() - keep
    for folder, endings in suffixes.items():
        for name in stale:
            for ending in endings:
                (outdir / folder / f"{name}{ending}").unlink(missing_ok=True)


def write_list(rows: pd.DataFrame, path: Path) -> None:
    atomic.write_text(path, "".join(f"{p}\n" for p in rows["path"]))


def export(
    results: pd.DataFrame,
    outdir: str | Path,
    formats: Sequence[str] = FORMATS,
    categories: Sequence[str] | None = None,
    split_confidence: bool = False,
) -> dict[str, int]:
    """Write the exports of ``results`` (one row per micrograph) under ``outdir``.

    ``categories`` limits which collections are written (default: every non-empty
    one). Returns the number of micrographs written per collection.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    outdir = Path(outdir)
    named = collections(results, split_confidence)
    if categories is not None:
        named = {name: rows for name, rows in named.items() if name in set(categories)}
    usable = results[results["status"] != "failed"]
    failed = results[results["status"] == "failed"]
    _remove_stale(outdir, set(named) | ({"failed"} if len(failed) else set()))
    star = relion_source(usable) if "relion" in formats and named else None
    exposures = cryosparc_source(usable) if "cryosparc" in formats and named else None
    for name, rows in named.items():
        if "relion" in formats:
            write_relion(rows, star, outdir / "relion" / f"{name}.star")
        if "cryosparc" in formats:
            write_cryosparc(rows, exposures, outdir / "cryosparc" / f"{name}.cs")
        if "lists" in formats:
            write_list(rows, outdir / "lists" / f"{name}.txt")
    if "lists" in formats and len(failed):
        write_list(failed, outdir / "lists" / "failed.txt")
    return {name: len(rows) for name, rows in named.items()}
