"""The user's overrides of a run's categories, and the category every export follows.

An overrides file (TSV, written by ``miffi curate``, or by hand) has one row per overruled
micrograph: ``micrograph``, ``category_override`` (one of the categories) and
``override_source`` (who decided, and when). Applied to a results table, it fills the
table's ``category_override`` and ``override_source`` columns; :func:`final_category` is
then what every export collects by. The model's own ``category`` is kept beside it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from miffi.classify.combine import CATEGORIES
from miffi.errors import InputError
from miffi.textfiles import read_tsv

log = logging.getLogger(__name__)

OVERRIDE_COLUMNS = ("micrograph", "category_override", "override_source")


def read_overrides(path: str | Path) -> pd.DataFrame:
    """An overrides file, checked: its columns, known categories, one row per micrograph."""
    path = Path(path)
    table = read_tsv(path, OVERRIDE_COLUMNS, "overrides file")
    missing = [c for c in OVERRIDE_COLUMNS[:2] if c not in table]
    if missing:
        raise InputError(
            path, f"no column {', '.join(missing)} (an overrides file has {', '.join(OVERRIDE_COLUMNS)}, tab-separated)"
        )
    if "override_source" not in table:
        table["override_source"] = f"file:{path.name}"
    table["override_source"] = table["override_source"].fillna(f"file:{path.name}")
    unknown = table[~table["category_override"].isin(CATEGORIES)]
    if len(unknown):
        first = unknown.iloc[0]
        raise InputError(
            path,
            f"micrograph {first['micrograph']!r}: {first['category_override']!r} is not a category "
            f"(categories: {', '.join(CATEGORIES)}; {len(unknown)} such rows)",
        )
    twice = table["micrograph"][table["micrograph"].duplicated()]
    if len(twice):
        raise InputError(path, f"micrographs overridden twice: {', '.join(twice.unique()[:5])}")
    return table[list(OVERRIDE_COLUMNS)].reset_index(drop=True)


def apply_overrides(results: pd.DataFrame, overrides: pd.DataFrame | None) -> pd.DataFrame:
    """``results`` with ``category_override`` and ``override_source`` from ``overrides``
    (empty where a micrograph is not overruled, or when there are none). Overrides of
    micrographs the table does not hold are reported and left out; a failed micrograph
    cannot be overruled (it has no image to decide on)."""
    results = results.drop(columns=["category_override", "override_source"], errors="ignore")
    if overrides is None or overrides.empty:
        # missing as in any other empty column of the table (NaN: what its TSV reads back as)
        return results.assign(category_override=math.nan, override_source=math.nan)
    known = set(results["micrograph"])
    unmatched = [m for m in overrides["micrograph"] if m not in known]
    if unmatched:
        log.warning(
            "%d override(s) name micrographs this run does not hold, left out: %s",
            len(unmatched),
            ", ".join(unmatched[:5]),
        )
    failed = set(results.loc[results["status"] == "failed", "micrograph"])
    usable = overrides[overrides["micrograph"].isin(known - failed)]
    if len(usable) < len(overrides) - len(unmatched):
        log.warning("overrides of failed micrographs left out: they stay in the failed list")
    merged = results.merge(usable, on="micrograph", how="left")
    merged.index = results.index
    return merged


def final_category(results: pd.DataFrame) -> pd.Series:
    """The category exports follow: the user's override where there is one, else the run's."""
    if "category_override" not in results:
        return results["category"]
    return results["category_override"].where(results["category_override"].notna(), results["category"])
