"""Exports that RELION and cryoSPARC import directly, and plain lists; inputs are never touched.

For each collection of micrographs (a category, ``bad_single``, and optionally the
high/low-confidence halves) with at least one micrograph:

``relion/<name>.star``
    every block of the input star file with only the collection's micrographs (of a
    particles star: all their particles); for other inputs a RELION 3.1 micrographs
    star with full optics groups and the input's CTF fit (:mod:`miffi.export.relion`).
``cryosparc/<name>.cs`` + ``.csg``
    all fields of the input exposures (joined over the input's .cs files) for the
    collection's rows, and a group file for "Import Result Group"; for other inputs
    exposures with the fields cryoSPARC's own have (:mod:`miffi.export.cryosparc`).
``lists/<name>.txt``
    the micrographs' paths, one per line (``failed.txt``: those that could not be read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from miffi import atomic
from miffi.classify.combine import CATEGORIES, SINGLE_BAD
from miffi.errors import SettingError
from miffi.export.cryosparc import VERSION, ExposureSource, exposures, write_cryosparc
from miffi.export.microscope import Microscope, complete, unknown
from miffi.export.overrides import final_category
from miffi.export.relion import StarSource, optics_groups, write_relion
from miffi.mrc import MrcHeader

FORMATS = ("relion", "cryosparc", "lists")
#: Collections that a confidence split halves into ``<name>_high_conf`` and ``<name>_low_conf``.
CONFIDENCE_SPLIT = ("good", "bad_single", *SINGLE_BAD)


def _choose(values: str | Sequence[str], what: str, known: Sequence[str], choices: str = "") -> list[str]:
    """The names of ``values`` (comma-separated, or a sequence), each one of ``known``
    (described as ``choices`` in the error, by default listed)."""
    names = [name.strip() for name in (values.split(",") if isinstance(values, str) else values)]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        given = f"unknown {what} {', '.join(map(repr, unknown))}" if unknown else f"no {what} given"
        raise SettingError(f"{given}; choose from {choices or ', '.join(known)}")
    return list(dict.fromkeys(names))


def check_formats(formats: str | Sequence[str]) -> list[str]:
    """Export formats, e.g. ``relion,lists``, each checked (so a typo fails before any work)."""
    return _choose(formats, "export format", FORMATS)


def export_names(split_confidence: bool = False) -> list[str]:
    """The collections :func:`export` can write (besides ``failed``)."""
    names = [*CATEGORIES, "bad_single"]
    if split_confidence:
        names += [f"{name}_{level}_conf" for name in CONFIDENCE_SPLIT for level in ("high", "low")]
    return names


def check_categories(categories: str | Sequence[str], split_confidence: bool = False) -> list[str]:
    """Collections to export, e.g. ``good,bad_single``, each one :func:`export` can write."""
    halves = f"<name>_high_conf and <name>_low_conf for <name> {', '.join(CONFIDENCE_SPLIT)}"
    choices = ", ".join(export_names()) + (
        f"; {halves}" if split_confidence else f" (with --split-confidence also {halves})"
    )
    return _choose(categories, "category", export_names(split_confidence), choices)


def collections(results: pd.DataFrame, split_confidence: bool = False) -> dict[str, pd.DataFrame]:
    """Named subsets of the usable micrographs: categories (overrides applied), ``bad_single``
    and confidence halves."""
    usable = results[results["status"] != "failed"]
    category = final_category(usable)  # the user's override where there is one
    named = {name: usable[category == name] for name in CATEGORIES}
    named["bad_single"] = usable[category.isin(SINGLE_BAD)]
    if split_confidence:
        for name in CONFIDENCE_SPLIT:
            for level in ("high", "low"):
                subset = named[name]
                named[f"{name}_{level}_conf"] = subset[subset["confidence_level"] == level]
    return {name: subset for name, subset in named.items() if len(subset)}


def _single_source(rows: pd.DataFrame, suffixes: Iterable[str]) -> str | None:
    sources = rows["input"].unique()
    if len(sources) == 1 and Path(sources[0]).suffix.lower() in suffixes:
        return str(sources[0])
    return None


def _sources(usable: pd.DataFrame, formats: Sequence[str]) -> tuple[StarSource | None, ExposureSource | None]:
    """The input star file or exposures, when every usable micrograph came from one."""
    star = _single_source(usable, {".star"})
    cs = _single_source(usable, {".cs", ".csg"})
    wanted = {"relion", "cryosparc"} & set(formats)
    return (
        StarSource.read(Path(star)) if star and wanted else None,
        ExposureSource.read(Path(cs)) if cs and wanted else None,
    )


def _facts(
    usable: pd.DataFrame, star: StarSource | None, exposures: ExposureSource | None, microscope: Microscope
) -> pd.DataFrame:
    """Optics and CTF facts of the usable micrographs (index aligned with ``usable``)."""
    source = star or exposures
    facts = source.facts(usable) if source is not None else unknown(len(usable))
    facts.index = usable.index
    return complete(facts, microscope)


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
    microscope: Microscope = Microscope(),
    cryosparc_project_dir: str | Path | None = None,
) -> dict[str, int]:
    """Write the exports of ``results`` (one row per micrograph) under ``outdir``.

    ``categories`` limits which collections are written (default: every non-empty
    one). ``microscope`` states the optics the input does not (else :data:`DEFAULTS`
    are written, with a warning); ``cryosparc_project_dir`` makes the paths of cryoSPARC
    exposures relative to that project. Returns the number of micrographs written per
    collection.
    """
    formats = check_formats(formats)
    if categories is not None:
        categories = check_categories(categories, split_confidence)
    outdir = Path(outdir)
    named = collections(results, split_confidence)
    if categories is not None:
        named = {name: rows for name, rows in named.items() if name in set(categories)}
    usable = results[results["status"] != "failed"]
    failed = results[results["status"] == "failed"]
    _remove_stale(outdir, set(named) | ({"failed"} if len(failed) else set()))
    star, cs = _sources(usable, formats) if named else (None, None)
    facts = _facts(usable, star, cs, microscope) if named and {"relion", "cryosparc"} & set(formats) else None
    groups = optics_groups(usable, facts) if facts is not None else None
    headers: dict[str, MrcHeader] = {}  # read once, shared by every collection's exposures
    for name, rows in named.items():
        if "relion" in formats:
            assert facts is not None and groups is not None  # (made above for relion and cryosparc exports)
            write_relion(rows, star, facts.loc[rows.index], groups.loc[rows.index], outdir / "relion" / f"{name}.star")
        if "cryosparc" in formats:
            assert facts is not None and groups is not None
            dataset = (
                cs.dataset.take(rows["input_row"].to_numpy())
                if cs is not None
                else exposures(rows, facts.loc[rows.index], groups.loc[rows.index], cryosparc_project_dir, headers)
            )
            write_cryosparc(dataset, cs.version if cs is not None else VERSION, outdir / "cryosparc" / f"{name}.cs")
        if "lists" in formats:
            write_list(rows, outdir / "lists" / f"{name}.txt")
    if "lists" in formats and len(failed):
        write_list(failed, outdir / "lists" / "failed.txt")
    return {name: len(rows) for name, rows in named.items()}
