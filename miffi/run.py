"""The whole pipeline in one process: intake → preprocess (cached) → infer → combine → export."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from miffi import atomic
from miffi.batch import preprocess_table
from miffi.cache import TensorCache
from miffi.combine import CategorySettings, categorise, combine
from miffi.export import FORMATS, export
from miffi.inference import predict
from miffi.intake import read_micrographs
from miffi.labels import GROUPS, LABELS
from miffi.models import load_classifier

log = logging.getLogger(__name__)

INTAKE_COLUMNS = ["micrograph", "path", "pixel_size", "pixel_size_source", "optics_group", "height", "width",
                  "input", "input_row", "input_block"]


@dataclass
class RunOptions:
    """Settings of ``miffi run`` beyond the inputs and the output folder."""

    model: str | Path
    arch: str = "convnext_small"
    cache_dir: str | Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rule: str = "miffi"
    categories: CategorySettings = field(default_factory=CategorySettings)
    formats: Sequence[str] = FORMATS
    export_categories: Sequence[str] | None = None
    split_confidence: bool = False
    batch_size: int = 16
    bf16: bool = False
    pixel_size: float | None = None
    project_dir: str | Path | None = None
    pattern: str = "*.mrc"
    progress: bool = True


def results_table(table: pd.DataFrame, status: pd.DataFrame, categorised: pd.DataFrame) -> pd.DataFrame:
    """One row per micrograph in input order: intake facts, status, labels, category, probabilities."""
    results = table[INTAKE_COLUMNS].merge(status[["micrograph", "status", "error"]], on="micrograph", how="left")
    results = results.merge(categorised, on="micrograph", how="left")
    front = ["micrograph", *GROUPS, "category", "confidence", "confidence_level",
             *[f"{g}_confidence" for g in GROUPS], "status", "error", "squares"]
    return results[front + [c for c in results.columns if c not in front]]


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """TSV, plus a Parquet copy beside it."""
    atomic.write_text(path, frame.to_csv(sep="\t", index=False))
    with atomic.temporary_path(path.with_suffix(".parquet")) as tmp:
        frame.to_parquet(tmp, index=False)


def run_pipeline(inputs: Sequence[str | Path], outdir: str | Path, options: RunOptions) -> pd.DataFrame:
    """Run everything and write ``predictions.tsv``, ``results.tsv`` and the exports."""
    outdir = Path(outdir)
    classifier = load_classifier(options.model, options.arch, options.device)
    table = read_micrographs(inputs, options.project_dir, options.pixel_size, options.pattern)
    cache = TensorCache(options.cache_dir or outdir / "cache", classifier.config)
    status = preprocess_table(table, cache, options.device, progress=options.progress)
    usable = status.loc[status["status"] != "failed", "micrograph"].tolist()
    predictions = predict(classifier, cache, usable, options.device, options.batch_size, options.bf16,
                          options.progress)
    categorised = categorise(combine(predictions, options.rule), options.categories)
    results = results_table(table, status, categorised)
    write_table(predictions[["micrograph", "square", *LABELS]], outdir / "predictions.tsv")
    write_table(results, outdir / "results.tsv")
    written = export(results, outdir, options.formats, options.export_categories, options.split_confidence)
    log.info("categories: %s", ", ".join(f"{name} {count}" for name, count in written.items()) or "none")
    return results
