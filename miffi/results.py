"""Results of a run: the results table, its filters, and the combine and export stages.

Free of torch, so the workflow's combine and export jobs start quickly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from miffi import atomic
from miffi.cache import SHARED_NAME, CacheConflict, TensorCache, cache_status, predict_reusing
from miffi.combine import PROBABILITY_COLUMNS, CategorySettings, categorise, combine
from miffi.config import PreprocessConfig
from miffi.ctf_baseline import ctf_baseline, fit_resolution
from miffi.errors import MiffiError
from miffi.export import FORMATS, export
from miffi.intake import TABLE_COLUMNS, TEXT_COLUMNS
from miffi.textfiles import read_tsv
from miffi.labels import GROUPS
from miffi.metrics import METRICS
from miffi.microscope import Microscope
from miffi.weightfree import WeightFreeThresholds, predict_metrics

log = logging.getLogger(__name__)


def method_name(model: str | Path | None) -> str:
    """The ``classifier`` of a results table: ``weight-free`` or ``model:<file name>``; a
    training run's ``best.safetensors``/``epoch_NNN.safetensors`` are named with their run
    folder (``model:demo_cnn/best.safetensors``)."""
    if model is None:
        return "weight-free"
    path = Path(model)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if path.suffix == ".safetensors" and (path.stem == "best" or path.stem.startswith("epoch_")) and run.name:
        return f"model:{run.name}/{path.name}"
    return f"model:{path.name}"


def result_columns(second_opinion: bool) -> list[str]:
    """The columns of a results table, in order (``wf_*``: the weight-free second opinion
    of a run with a model); known before any work, so ``--where`` can be checked early."""
    opinion = [f"wf_{c}" for c in [*GROUPS, "category"]] if second_opinion else []
    front = ["micrograph", *GROUPS, "category", "confidence", "confidence_level",
             *[f"{g}_confidence" for g in GROUPS], "status", "error", "classifier", "squares",
             *METRICS, "ctf_fit_resolution", "ctf_baseline", *opinion]
    return front + [c for c in [*TABLE_COLUMNS, *PROBABILITY_COLUMNS, "bad_groups"] if c not in front]


def results_table(table: pd.DataFrame, status: pd.DataFrame, categorised: pd.DataFrame,
                  second_opinion: pd.DataFrame | None, method: str) -> pd.DataFrame:
    """One row per micrograph in input order: intake facts, status, labels, category,
    metrics, the CTF baseline, the weight-free second opinion and probabilities."""
    results = table[TABLE_COLUMNS].merge(status[["micrograph", "status", "error", *METRICS]],
                                          on="micrograph", how="left")
    results = results.merge(categorised, on="micrograph", how="left")
    results["classifier"] = method
    results["ctf_fit_resolution"] = fit_resolution(table).to_numpy()
    results["ctf_baseline"] = ctf_baseline(results["ctf_fit_resolution"]).to_numpy()
    if second_opinion is not None:
        renamed = second_opinion[["micrograph", *GROUPS, "category"]].rename(
            columns={c: f"wf_{c}" for c in [*GROUPS, "category"]})
        results = results.merge(renamed, on="micrograph", how="left")
    return results[result_columns(second_opinion is not None)]


FILTER = re.compile(r"^\s*([A-Za-z_][\w/]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
OPERATORS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "==": "__eq__", "!=": "__ne__"}


def parse_where(expression: str, columns: Sequence[str] | None = None) -> tuple[str, str, float | str]:
    """``COLUMN OP VALUE`` (e.g. ``water_ring < 1.3``) → column, operator and value (a
    number when it reads as one); with ``columns``, the column must be one of them."""
    match = FILTER.match(expression)
    if not match:
        raise MiffiError(f"--where {expression!r}: expected COLUMN OP VALUE with OP one of "
                         f"{' '.join(OPERATORS)}, e.g. 'water_ring < 1.3'")
    column, op, raw = match.groups()
    if columns is not None and column not in columns:
        raise MiffiError(f"--where {expression!r}: no column {column!r} (columns: {', '.join(columns)})")
    try:
        return column, op, float(raw)
    except ValueError:
        return column, op, raw.strip("'\"")


def where_mask(results: pd.DataFrame, expressions: Sequence[str]) -> pd.Series:
    """Rows satisfying every ``COLUMN OP VALUE`` expression (see :func:`parse_where`)."""
    mask = pd.Series(True, index=results.index)
    for expression in expressions:
        column, op, value = parse_where(expression, list(results.columns))
        mask &= getattr(results[column], OPERATORS[op])(value).fillna(False).astype(bool)
    return mask


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """TSV, plus a Parquet copy beside it."""
    atomic.write_text(path, frame.to_csv(sep="\t", index=False))
    with atomic.temporary_path(path.with_suffix(".parquet")) as tmp:
        frame.to_parquet(tmp, index=False)


#: Columns of a results table that are names (never parsed as numbers or missing values).
RESULT_TEXT_COLUMNS = [*TEXT_COLUMNS, "status", "error", "classifier", "category", *GROUPS]


def read_results(path: str | Path) -> pd.DataFrame:
    """A results table written by :func:`write_table` (its Parquet copy when present)."""
    path = Path(path)
    parquet = path.with_suffix(".parquet")
    try:
        return pd.read_parquet(parquet) if parquet.is_file() else read_tsv(path, RESULT_TEXT_COLUMNS, "results table")
    except FileNotFoundError:
        raise MiffiError(f"{path}: results table not found") from None
    except MiffiError:
        raise
    except Exception as error:
        raise MiffiError(f"{path}: cannot read results table: {error}") from None


def weightfree_predictions(cache: TensorCache, sources: Mapping[str, str],
                           thresholds: WeightFreeThresholds) -> pd.DataFrame:
    """The weight-free classifier on the cached metrics of ``sources`` (micrograph → file)."""
    metrics = {}
    for micrograph, source in sources.items():
        meta = cache.entry(micrograph, source)
        if meta is None:
            raise CacheConflict(f"{cache.sidecar_path(micrograph)}: no cache entry made from {source} ({SHARED_NAME})")
        metrics[micrograph] = meta["square_metrics"]
    return predict_metrics(metrics, thresholds)


def usable_sources(status: pd.DataFrame) -> dict[str, str]:
    """Micrograph → file, for the micrographs of a status table that did not fail."""
    ok = status[status["status"] != "failed"]
    return dict(zip(ok["micrograph"], ok["path"]))


def weightfree_stage(table: pd.DataFrame, cache_dir: str | Path,
                     thresholds: WeightFreeThresholds) -> tuple[pd.DataFrame, int]:
    """Weight-free predictions for the preprocessed micrographs of ``table`` (stored per
    micrograph like a model's); returns them and how many were evaluated."""
    cache = TensorCache(cache_dir, PreprocessConfig())
    usable = usable_sources(cache_status(table, cache))
    text = json.dumps(dataclasses.asdict(thresholds), sort_keys=True)
    store = Path(cache_dir) / "predictions" / ("weightfree-" + hashlib.sha256(text.encode()).hexdigest()[:12])
    return predict_reusing(lambda names: weightfree_predictions(cache, {m: usable[m] for m in names}, thresholds),
                           list(usable), cache, store)


def combine_stage(table: pd.DataFrame, predictions: pd.DataFrame, cache_dir: str | Path,
                  model: str | Path | None, rule: str, categories: CategorySettings,
                  thresholds: WeightFreeThresholds) -> pd.DataFrame:
    """The results table from the micrograph table, the cache and the predictions
    (made by ``model``, or by the weight-free classifier when it is None)."""
    cache = TensorCache(cache_dir, PreprocessConfig())
    status = cache_status(table, cache)
    usable = usable_sources(status)
    categorised = categorise(combine(predictions, rule), categories)
    second_opinion = None
    if model:
        weightfree = weightfree_predictions(cache, usable, thresholds)
        second_opinion = categorise(combine(weightfree, rule), categories)
    method = method_name(model)
    return results_table(table, status, categorised, second_opinion, method)


def export_stage(results: pd.DataFrame, outdir: str | Path, formats: Sequence[str] = FORMATS,
                 categories: Sequence[str] | None = None, split_confidence: bool = False,
                 where: Sequence[str] = (), microscope: Microscope = Microscope(),
                 cryosparc_project_dir: str | Path | None = None) -> dict[str, int]:
    """Exports of the micrographs satisfying ``where`` (failed ones are always listed)."""
    selected = where_mask(results, where) | (results["status"] == "failed")
    written = export(results[selected], outdir, formats, categories, split_confidence, microscope,
                     cryosparc_project_dir)
    log.info("categories: %s", ", ".join(f"{name} {count}" for name, count in written.items()) or "none")
    return written
