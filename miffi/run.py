"""The whole pipeline in one process (intake → preprocess → infer → combine → export),
and the inference stage of the workflow."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from miffi import atomic
from miffi.batch import preprocess_table
from miffi.cache import TensorCache, cache_status, predict_reusing
from miffi.combine import CategorySettings, categorise, combine
from miffi.config import PreprocessConfig
from miffi.export import FORMATS, check_categories, check_formats
from miffi.inference import predict
from miffi.intake import read_micrographs
from miffi.labels import LABELS
from miffi.microscope import Microscope
from miffi.models import load_classifier
from miffi.results import (export_stage, method_name, parse_where, result_columns, results_table, usable_sources,
                           weightfree_predictions, write_table)
from miffi.weightfree import WeightFreeThresholds

log = logging.getLogger(__name__)

@dataclass
class RunOptions:
    """Settings of ``miffi run`` beyond the inputs and the output folder."""

    model: str | Path | None = None  # None: the weight-free classifier
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
    thresholds: WeightFreeThresholds = field(default_factory=WeightFreeThresholds)
    where: Sequence[str] = ()
    allow_outside_project: bool = False
    full_hash: bool = False
    microscope: Microscope = field(default_factory=Microscope)
    cryosparc_project_dir: str | Path | None = None


def model_key(options: RunOptions) -> str:
    """Names the stored predictions of one model: its file (path, size, mtime), arch and precision."""
    stat = Path(options.model).stat()
    text = f"{Path(options.model).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{options.arch}|{options.bf16}"
    return f"{Path(options.model).stem}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def infer_stage(table: pd.DataFrame, options: RunOptions) -> tuple[pd.DataFrame, int]:
    """Model predictions for the preprocessed micrographs of ``table``, reusing stored
    per-micrograph results; returns them and how many were evaluated. (Without a model,
    :func:`miffi.results.weightfree_stage` does this without torch.)"""
    classifier = load_classifier(options.model, options.arch, options.device)
    cache = TensorCache(options.cache_dir, classifier.config)
    usable = usable_sources(cache_status(table, cache))

    def run(names: list[str]) -> pd.DataFrame:
        return predict(classifier, cache, names, options.device, options.batch_size, options.bf16, options.progress,
                       [usable[m] for m in names])

    store = Path(options.cache_dir) / "predictions" / model_key(options)
    return predict_reusing(run, list(usable), cache, store)


def run_pipeline(inputs: Sequence[str | Path], outdir: str | Path, options: RunOptions) -> pd.DataFrame:
    """Run everything and write ``predictions.tsv``, ``results.tsv`` and the exports.

    With a model, the weight-free classifier's labels are added as a second opinion
    (``wf_*`` columns); without one, it is the classifier.
    """
    check_formats(options.formats)  # the export settings first: a typo must not cost a run
    if options.export_categories is not None:
        check_categories(options.export_categories, options.split_confidence)
    for expression in options.where:
        parse_where(expression, result_columns(second_opinion=bool(options.model)))
    outdir = Path(outdir)
    classifier = load_classifier(options.model, options.arch, options.device) if options.model else None
    config = classifier.config if classifier else PreprocessConfig()
    atomic.ensure_folder(outdir)
    table = read_micrographs(inputs, options.project_dir, options.pixel_size, options.pattern,
                             allow_outside_project=options.allow_outside_project)
    cache = TensorCache(options.cache_dir or outdir / "cache", config, full_hash=options.full_hash)
    status = preprocess_table(table, cache, options.device, progress=options.progress)
    usable = usable_sources(status)
    weightfree = weightfree_predictions(cache, usable, options.thresholds)
    if classifier:
        predictions = predict(classifier, cache, list(usable), options.device, options.batch_size, options.bf16,
                              options.progress, list(usable.values()))
        second_opinion = categorise(combine(weightfree, options.rule), options.categories)
    else:
        predictions, second_opinion = weightfree, None
    categorised = categorise(combine(predictions, options.rule), options.categories)
    method = method_name(options.model if classifier is not None else None)
    results = results_table(table, status, categorised, second_opinion, method)
    write_table(predictions[["micrograph", "square", *LABELS]], outdir / "predictions.tsv")
    write_table(results, outdir / "results.tsv")
    export_stage(results, outdir, options.formats, options.export_categories, options.split_confidence,
                 options.where, microscope=options.microscope, cryosparc_project_dir=options.cryosparc_project_dir)
    return results
