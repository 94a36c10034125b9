"""``miffi png``: a PNG per micrograph, image and power spectrum as the model saw them,
in one folder per category, for looking through a run without a browser."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from miffi import atomic
from miffi.export.overrides import final_category
from miffi.preprocess.cache import TensorCache
from miffi.report.images import png, side_by_side, tensor_views

log = logging.getLogger(__name__)


def write_pngs(
    results: pd.DataFrame,
    cache: TensorCache,
    outdir: str | Path,
    categories: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """``outdir/<category>/<micrograph>.png`` for every usable micrograph of ``results``
    (those of ``categories`` only, when given), by the category exports follow; returns
    how many each folder got. A micrograph missing from the cache is reported and skipped."""
    outdir = Path(outdir)
    usable = results[results["status"] != "failed"].assign(final=lambda frame: final_category(frame))
    if categories is not None:
        usable = usable[usable["final"].isin(categories)]
    written: dict[str, int] = {}
    missing = []
    for micrograph, path, category in tqdm(
        list(zip(usable["micrograph"], usable["path"], usable["final"])), desc="png", unit="mic", disable=not progress
    ):
        try:
            views = tensor_views(cache.load(micrograph, path))
        except FileNotFoundError:
            missing.append(micrograph)
            continue
        with atomic.atomic_open(outdir / category / f"{micrograph}.png", "wb") as handle:
            handle.write(png(side_by_side(views)))
        written[category] = written.get(category, 0) + 1
    if missing:
        log.warning(
            "%d micrograph(s) not in the cache %s, no PNG: %s", len(missing), cache.directory, ", ".join(missing[:5])
        )
    return written
