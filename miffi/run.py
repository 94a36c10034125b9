"""The whole pipeline in one process: intake → preprocess (cached) → infer → combine → export."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from miffi import atomic
from miffi.batch import cache_status, preprocess_table
from miffi.cache import TensorCache
from miffi.combine import CategorySettings, categorise, combine
from miffi.config import PreprocessConfig
from miffi.ctf_baseline import ctf_baseline, fit_resolution
from miffi.errors import MiffiError
from miffi.export import FORMATS, export
from miffi.inference import predict, predict_reusing
from miffi.intake import read_micrographs
from miffi.labels import GROUPS, LABELS
from miffi.metrics import METRICS
from miffi.models import load_classifier
from miffi.weightfree import WeightFreeThresholds, predict_metrics

log = logging.getLogger(__name__)

INTAKE_COLUMNS = ["micrograph", "path", "pixel_size", "pixel_size_source", "optics_group", "height", "width",
                  "input", "input_row", "input_block"]


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


def results_table(table: pd.DataFrame, status: pd.DataFrame, categorised: pd.DataFrame,
                  second_opinion: pd.DataFrame | None, method: str) -> pd.DataFrame:
    """One row per micrograph in input order: intake facts, status, labels, category,
    metrics, the CTF baseline, the weight-free second opinion and probabilities."""
    results = table[INTAKE_COLUMNS].merge(status[["micrograph", "status", "error", *METRICS]],
                                          on="micrograph", how="left")
    results = results.merge(categorised, on="micrograph", how="left")
    results["classifier"] = method
    results["ctf_fit_resolution"] = fit_resolution(table).to_numpy()
    results["ctf_baseline"] = ctf_baseline(results["ctf_fit_resolution"]).to_numpy()
    opinion = []
    if second_opinion is not None:
        renamed = second_opinion[["micrograph", *GROUPS, "category"]].rename(
            columns={c: f"wf_{c}" for c in [*GROUPS, "category"]})
        results = results.merge(renamed, on="micrograph", how="left")
        opinion = list(renamed.columns[1:])
    front = ["micrograph", *GROUPS, "category", "confidence", "confidence_level",
             *[f"{g}_confidence" for g in GROUPS], "status", "error", "classifier", "squares",
             *METRICS, "ctf_fit_resolution", "ctf_baseline", *opinion]
    return results[front + [c for c in results.columns if c not in front]]


FILTER = re.compile(r"^\s*([A-Za-z_][\w/]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
OPERATORS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "==": "__eq__", "!=": "__ne__"}


def where_mask(results: pd.DataFrame, expressions: Sequence[str]) -> pd.Series:
    """Rows satisfying every ``COLUMN OP VALUE`` expression (e.g. ``water_ring < 1.3``)."""
    mask = pd.Series(True, index=results.index)
    for expression in expressions:
        match = FILTER.match(expression)
        if not match:
            raise MiffiError(f"--where {expression!r}: expected COLUMN OP VALUE with OP one of "
                             f"{' '.join(OPERATORS)}, e.g. 'water_ring < 1.3'")
        column, op, raw = match.groups()
        if column not in results:
            raise MiffiError(f"--where {expression!r}: no column {column!r} (columns: {', '.join(results.columns)})")
        try:
            value: object = float(raw)
        except ValueError:
            value = raw.strip("'\"")
        mask &= getattr(results[column], OPERATORS[op])(value).fillna(False).astype(bool)
    return mask


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """TSV, plus a Parquet copy beside it."""
    atomic.write_text(path, frame.to_csv(sep="\t", index=False))
    with atomic.temporary_path(path.with_suffix(".parquet")) as tmp:
        frame.to_parquet(tmp, index=False)


def weightfree_predictions(cache: TensorCache, micrographs: Sequence[str],
                           thresholds: WeightFreeThresholds) -> pd.DataFrame:
    return predict_metrics({m: cache.read_sidecar(m)["square_metrics"] for m in micrographs}, thresholds)


def model_key(options: RunOptions) -> str:
    """Names the stored predictions of one model (file, size, mtime, arch) or of the weight-free thresholds."""
    if options.model is None:
        text = json.dumps(dataclasses.asdict(options.thresholds), sort_keys=True)
        return "weightfree-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    stat = Path(options.model).stat()
    text = f"{Path(options.model).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{options.arch}|{options.bf16}"
    return f"{Path(options.model).stem}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def infer_stage(table: pd.DataFrame, options: RunOptions) -> tuple[pd.DataFrame, int]:
    """Predictions for the preprocessed micrographs of ``table`` (model, or weight-free),
    reusing stored per-micrograph results; returns them and how many were evaluated."""
    classifier = load_classifier(options.model, options.arch, options.device) if options.model else None
    cache = TensorCache(options.cache_dir, classifier.config if classifier else PreprocessConfig())
    usable = cache_status(table, cache).query("status != 'failed'")["micrograph"].tolist()
    if classifier:
        def run(names: list[str]) -> pd.DataFrame:
            return predict(classifier, cache, names, options.device, options.batch_size, options.bf16,
                           options.progress)
    else:
        def run(names: list[str]) -> pd.DataFrame:
            return weightfree_predictions(cache, names, options.thresholds)
    store = Path(options.cache_dir) / "predictions" / model_key(options)
    return predict_reusing(run, usable, cache, store)


def combine_stage(table: pd.DataFrame, predictions: pd.DataFrame, options: RunOptions) -> pd.DataFrame:
    """The results table from the micrograph table, the cache and the predictions."""
    cache = TensorCache(options.cache_dir, PreprocessConfig())
    status = cache_status(table, cache)
    usable = status.loc[status["status"] != "failed", "micrograph"].tolist()
    categorised = categorise(combine(predictions, options.rule), options.categories)
    second_opinion = None
    if options.model:
        weightfree = weightfree_predictions(cache, usable, options.thresholds)
        second_opinion = categorise(combine(weightfree, options.rule), options.categories)
    method = "weight-free" if options.model is None else f"model:{Path(options.model).name}"
    return results_table(table, status, categorised, second_opinion, method)


def export_stage(results: pd.DataFrame, outdir: str | Path, options: RunOptions) -> dict[str, int]:
    selected = where_mask(results, options.where) | (results["status"] == "failed")
    written = export(results[selected], outdir, options.formats, options.export_categories,
                     options.split_confidence)
    log.info("categories: %s", ", ".join(f"{name} {count}" for name, count in written.items()) or "none")
    return written


def run_pipeline(inputs: Sequence[str | Path], outdir: str | Path, options: RunOptions) -> pd.DataFrame:
    """Run everything and write ``predictions.tsv``, ``results.tsv`` and the exports.

    With a model, the weight-free classifier's labels are added as a second opinion
    (``wf_*`` columns); without one, it is the classifier.
    """
    outdir = Path(outdir)
    classifier = load_classifier(options.model, options.arch, options.device) if options.model else None
    config = classifier.config if classifier else PreprocessConfig()
    table = read_micrographs(inputs, options.project_dir, options.pixel_size, options.pattern)
    cache = TensorCache(options.cache_dir or outdir / "cache", config)
    status = preprocess_table(table, cache, options.device, progress=options.progress)
    usable = status.loc[status["status"] != "failed", "micrograph"].tolist()
    weightfree = weightfree_predictions(cache, usable, options.thresholds)
    if classifier:
        predictions = predict(classifier, cache, usable, options.device, options.batch_size, options.bf16,
                              options.progress)
        second_opinion = categorise(combine(weightfree, options.rule), options.categories)
    else:
        predictions, second_opinion = weightfree, None
    categorised = categorise(combine(predictions, options.rule), options.categories)
    method = "weight-free" if classifier is None else f"model:{Path(options.model).name}"
    results = results_table(table, status, categorised, second_opinion, method)
    write_table(predictions[["micrograph", "square", *LABELS]], outdir / "predictions.tsv")
    write_table(results, outdir / "results.tsv")
    export_stage(results, outdir, options)
    return results
