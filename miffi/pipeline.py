"""The pipeline: the stages every orchestration calls, and ``miffi run``.

The workflow's commands (``miffi infer``, ``combine``, ``export``) and ``miffi run`` call
the same stage functions — :func:`predict_stage`, :func:`combine_stage`,
:func:`export_stage` — so the two cannot disagree. Also the results table: its columns,
its ``--where`` filters, and reading and writing it.

Free of torch at import, so the workflow's combine and export jobs start quickly; only a
model's inference imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from miffi import atomic
from miffi.classify import registry
from miffi.classify.combine import CATEGORIES, PROBABILITY_COLUMNS, CategorySettings, categorise, combine
from miffi.classify.ctf_baseline import ctf_baseline, fit_resolution
from miffi.classify.weightfree import VERSION as WEIGHTFREE_VERSION
from miffi.classify.weightfree import WeightFreeThresholds, predict_metrics, shifted_thresholds, without_spectra
from miffi.errors import InputError, MiffiError
from miffi.export import FORMATS, check_categories, check_formats, export
from miffi.export.microscope import Microscope
from miffi.export.overrides import apply_overrides, read_overrides
from miffi.intake import TABLE_COLUMNS, TEXT_COLUMNS, read_micrographs
from miffi.labels import GROUPS, LABELS
from miffi.preprocess.cache import (
    SHARED_NAME,
    CacheConflict,
    Sidecars,
    TensorCache,
    cache_status,
    finished_entry,
    predict_reusing,
)
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.metric_names import METRICS
from miffi.textfiles import read_tsv

if TYPE_CHECKING:
    import torch

    from miffi.classify.models import Classifier

log = logging.getLogger(__name__)


def method_name(model: str | Path | None) -> str:
    """The ``classifier`` of a results table: ``weight-free`` or ``model:<file name>``; a
    training run's ``best.safetensors``/``epoch_NNN.safetensors`` are named with their run
    folder (``model:demo_cnn/best.safetensors``)."""
    if model is None:
        return "weight-free"
    path = Path(registry.get_model(str(model)).key) if registry.is_model_name(model) else Path(model)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if path.suffix == ".safetensors" and (path.stem == "best" or path.stem.startswith("epoch_")) and run.name:
        return f"model:{run.name}/{path.name}"
    return f"model:{path.name}"


def result_columns(second_opinion: bool) -> list[str]:
    """The columns of a results table, in order (``wf_*``: the weight-free second opinion
    of a run with a model); known before any work, so ``--where`` can be checked early."""
    opinion = [f"wf_{c}" for c in [*GROUPS, "category"]] if second_opinion else []
    front = [
        "micrograph",
        *GROUPS,
        "category",
        "category_override",
        "override_source",
        "confidence",
        "confidence_level",
        *[f"{g}_confidence" for g in GROUPS],
        "status",
        "error",
        "classifier",
        "squares",
        *METRICS,
        "ctf_fit_resolution",
        "ctf_baseline",
        *opinion,
    ]
    return front + [c for c in [*TABLE_COLUMNS, *PROBABILITY_COLUMNS, "bad_groups"] if c not in front]


def results_table(
    table: pd.DataFrame,
    status: pd.DataFrame,
    categorised: pd.DataFrame,
    second_opinion: pd.DataFrame | None,
    method: str,
    overrides: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per micrograph in input order: intake facts, status, labels, category (and
    the user's override of it), metrics, the CTF baseline, the weight-free second opinion
    and probabilities."""
    results = table[TABLE_COLUMNS].merge(
        status[["micrograph", "status", "error", *METRICS]], on="micrograph", how="left"
    )
    results = results.merge(categorised, on="micrograph", how="left")
    results["classifier"] = method
    results["ctf_fit_resolution"] = fit_resolution(table).to_numpy()
    results["ctf_baseline"] = ctf_baseline(results["ctf_fit_resolution"]).to_numpy()
    if second_opinion is not None:
        renamed = second_opinion[["micrograph", *GROUPS, "category"]].rename(
            columns={c: f"wf_{c}" for c in [*GROUPS, "category"]}
        )
        results = results.merge(renamed, on="micrograph", how="left")
    results = apply_overrides(results, overrides)
    return results[result_columns(second_opinion is not None)]


FILTER = re.compile(r"^\s*([A-Za-z_][\w/]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
OPERATORS = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "==": "__eq__", "!=": "__ne__"}


def parse_where(expression: str, columns: Sequence[str] | None = None) -> tuple[str, str, float | str]:
    """``COLUMN OP VALUE`` (e.g. ``water_ring < 1.3``) → column, operator and value (a
    number when it reads as one); with ``columns``, the column must be one of them."""
    match = FILTER.match(expression)
    if not match:
        raise MiffiError(
            f"--where {expression!r}: expected COLUMN OP VALUE with OP one of "
            f"{' '.join(OPERATORS)}, e.g. 'water_ring < 1.3'"
        )
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


#: Parquet metadata key: the SHA-256 of the TSV written beside it (to see a hand edit).
TSV_DIGEST = b"miffi.tsv_sha256"


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """TSV, plus a Parquet copy beside it that records the TSV's digest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = frame.to_csv(sep="\t", index=False)
    atomic.write_text(path, text)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    digest = hashlib.sha256(text.encode()).hexdigest().encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), TSV_DIGEST: digest})
    with atomic.temporary_path(path.with_suffix(".parquet")) as tmp:
        pq.write_table(table, tmp)


def edited_by_hand(path: Path, parquet: Path) -> bool:
    """Whether the TSV beside a Parquet copy changed after both were written: its digest
    differs from the one recorded (copies from before digests: it is the newer file)."""
    import pyarrow.parquet as pq

    recorded = (pq.read_schema(parquet).metadata or {}).get(TSV_DIGEST)
    if recorded is None:
        return path.stat().st_mtime > parquet.stat().st_mtime + 1
    return bool(hashlib.sha256(path.read_bytes()).hexdigest().encode() != recorded)


def check_categories_of(results: pd.DataFrame, path: Path) -> pd.DataFrame:
    """An edited results table whose categories are all known (else refused)."""
    for column in ("category", "category_override"):
        if column in results:
            values = results[column].dropna()
            unknown = values[~values.isin(CATEGORIES)]
            if len(unknown):
                row = results.loc[unknown.index[0]]
                raise InputError(
                    path,
                    f"micrograph {row['micrograph']!r}: {column} {unknown.iloc[0]!r} is not a category "
                    f"(categories: {', '.join(CATEGORIES)})",
                )
    return results


#: Columns of a results table that are names (never parsed as numbers or missing values).
RESULT_TEXT_COLUMNS = [
    *TEXT_COLUMNS,
    "status",
    "error",
    "classifier",
    "category",
    "category_override",
    "override_source",
    *GROUPS,
]


def read_results(path: str | Path) -> pd.DataFrame:
    """A results table written by :func:`write_table`: its Parquet copy when present,
    unless the TSV was edited by hand since — then the edited TSV is read (with a warning),
    its categories checked, so an edit is honoured and never silently ignored."""
    path = Path(path)
    parquet = path.with_suffix(".parquet")
    try:
        if parquet.is_file() and not (path.is_file() and edited_by_hand(path, parquet)):
            return pd.read_parquet(parquet)
        if parquet.is_file():
            log.warning(
                "%s was edited after miffi wrote it: the edited table is used (its category and "
                "category_override columns decide the exports); record decisions in an overrides file "
                "(miffi curate) to keep them when the run is made again",
                path,
            )
        return check_categories_of(read_tsv(path, RESULT_TEXT_COLUMNS, "results table"), path)
    except FileNotFoundError:
        raise MiffiError(f"{path}: results table not found") from None
    except MiffiError:
        raise
    except Exception as error:
        raise MiffiError(f"{path}: cannot read results table: {error}") from None


def cached_square_metrics(
    cache: TensorCache, sources: Mapping[str, str], sidecars: Sidecars | None = None, unscaled: Collection[str] = ()
) -> dict[str, list[dict[str, float]]]:
    """The cached per-square metrics of ``sources`` (micrograph → file), from ``sidecars``
    when already read. The spectral metrics of the ``unscaled`` micrographs (pixel size
    only a header's default) are left out (NaN): at an unknown scale they measure the
    wrong frequencies."""
    metrics = {}
    for micrograph, source in sources.items():
        meta = cache.entry(micrograph, source) if sidecars is None else finished_entry(sidecars.get(micrograph), source)
        if meta is None:
            raise CacheConflict(f"{cache.sidecar_path(micrograph)}: no cache entry made from {source} ({SHARED_NAME})")
        squares = meta["square_metrics"]
        metrics[micrograph] = without_spectra(squares) if micrograph in unscaled else squares
    return metrics


def dataset_shift(
    metrics: Mapping[str, Sequence[Mapping[str, float]]], thresholds: WeightFreeThresholds
) -> dict[str, tuple[float, float]]:
    """The weight-free thresholds this dataset's typical micrograph lies beyond
    (:func:`miffi.classify.weightfree.shifted_thresholds`), each said in the log."""
    shifted = shifted_thresholds(metrics, thresholds)
    for name, (median, spread) in shifted.items():
        log.warning(
            "weight-free threshold %s = %g: the dataset's median square is beyond it (%.4g); "
            "its decisions are relative to the dataset (outliers beyond %.4g ± %.3g) and not confident",
            name,
            getattr(thresholds, name),
            median,
            median,
            spread,
        )
    return shifted


def unscaled_micrographs(table: pd.DataFrame) -> set[str]:
    """Micrographs whose pixel size is only a header's unset default (1.0 Å)."""
    if "pixel_size_source" not in table:
        return set()
    return set(table.loc[table["pixel_size_source"] == "header_default", "micrograph"])


def usable_sources(status: pd.DataFrame) -> dict[str, str]:
    """Micrograph → file, for the micrographs of a status table that did not fail."""
    ok = status[status["status"] != "failed"]
    return dict(zip(ok["micrograph"], ok["path"]))


def weightfree_stage(
    table: pd.DataFrame, cache_dir: str | Path, thresholds: WeightFreeThresholds, sidecars: Sidecars | None = None
) -> tuple[pd.DataFrame, int]:
    """Weight-free predictions for the preprocessed micrographs of ``table`` (stored per
    micrograph like a model's); returns them and how many were evaluated. ``sidecars``:
    the cache's sidecars already read (else read here, once)."""
    cache = TensorCache(cache_dir, PreprocessConfig())
    sidecars = cache.read_sidecars(table["micrograph"]) if sidecars is None else sidecars
    usable = usable_sources(cache_status(table, cache, sidecars))
    metrics = cached_square_metrics(cache, usable, sidecars, unscaled_micrographs(table))
    shifted = dataset_shift(metrics, thresholds)
    settings = {**dataclasses.asdict(thresholds), "version": WEIGHTFREE_VERSION}
    if shifted:  # (only then: a dataset that grows keeps its stored predictions)
        settings["relative"] = sorted(shifted)
    text = json.dumps(settings, sort_keys=True)
    store = Path(cache_dir) / "predictions" / ("weightfree-" + hashlib.sha256(text.encode()).hexdigest()[:12])
    return predict_reusing(
        lambda names: predict_metrics({m: metrics[m] for m in names}, thresholds, shifted),
        list(usable),
        cache,
        store,
        sidecars,
    )


def combine_stage(
    table: pd.DataFrame,
    predictions: pd.DataFrame,
    cache_dir: str | Path,
    model: str | Path | None,
    rule: str,
    categories: CategorySettings,
    thresholds: WeightFreeThresholds,
    sidecars: Sidecars | None = None,
    overrides: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The results table from the micrograph table, the cache and the predictions
    (made by ``model``, or by the weight-free classifier when it is None), with the user's
    ``overrides`` recorded. ``sidecars``: the cache's sidecars already read (else read
    here, once)."""
    cache = TensorCache(cache_dir, PreprocessConfig())
    sidecars = cache.read_sidecars(table["micrograph"]) if sidecars is None else sidecars
    status = cache_status(table, cache, sidecars)
    usable = usable_sources(status)
    categorised = categorise(combine(predictions, rule), categories)
    second_opinion = None
    if model:
        metrics = cached_square_metrics(cache, usable, sidecars, unscaled_micrographs(table))
        weightfree = predict_metrics(metrics, thresholds, dataset_shift(metrics, thresholds))
        second_opinion = categorise(combine(weightfree, rule), categories)
    method = method_name(model)
    return results_table(table, status, categorised, second_opinion, method, overrides)


def export_stage(
    results: pd.DataFrame,
    outdir: str | Path,
    formats: Sequence[str] = FORMATS,
    categories: Sequence[str] | None = None,
    split_confidence: bool = False,
    where: Sequence[str] = (),
    microscope: Microscope = Microscope(),
    cryosparc_project_dir: str | Path | None = None,
    overrides: pd.DataFrame | None = None,
) -> dict[str, int]:
    """Exports of the micrographs satisfying ``where`` (failed ones are always listed),
    following ``overrides`` where given (they replace those the table records)."""
    if overrides is not None:
        results = apply_overrides(results, overrides)
    selected = where_mask(results, where) | (results["status"] == "failed")
    written = export(
        results[selected], outdir, formats, categories, split_confidence, microscope, cryosparc_project_dir
    )
    log.info("categories: %s", ", ".join(f"{name} {count}" for name, count in written.items()) or "none")
    return written


@dataclass
class RunOptions:
    """Settings of ``miffi run`` beyond the inputs and the output folder."""

    model: str | Path | None = None  # None: the weight-free classifier; a registry name: its downloaded file
    arch: str = registry.DEFAULT_ARCH
    cache_dir: str | Path | None = None
    device: torch.device | str = "cpu"  # a name is resolved (miffi.device) when a stage needs the device
    rule: str = "miffi"
    categories: CategorySettings = field(default_factory=CategorySettings)
    formats: Sequence[str] = FORMATS
    export_categories: Sequence[str] | None = None
    split_confidence: bool = False
    batch_size: int | None = None  # None: inference.default_batch_size of the device
    bf16: bool = False
    fast: bool = False  # the fastest precision on this device (inference.choose_bf16)
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
    overrides: str | Path | None = None  # the user's category overrides (miffi curate), applied

    def __post_init__(self) -> None:
        # A published model's name (`--model miffi_v1`) is its downloaded file from here on.
        if self.model and registry.is_model_name(self.model):
            self.model = registry.resolve_model(self.model)


def model_key(options: RunOptions) -> str:
    """Names the stored predictions of one model: its file (path, size, mtime), arch and precision."""
    assert options.model is not None  # (only a model's predictions are stored under a key)
    stat = Path(options.model).stat()
    text = f"{Path(options.model).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{options.arch}|{options.bf16}"
    return f"{Path(options.model).stem}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _with_device(options: RunOptions) -> RunOptions:
    """``options`` with its device name resolved (imports torch)."""
    from miffi.device import resolve_device

    return (
        options
        if not isinstance(options.device, str)
        else dataclasses.replace(options, device=resolve_device(options.device))
    )


def predict_stage(
    table: pd.DataFrame, options: RunOptions, classifier: Classifier | None = None, sidecars: Sidecars | None = None
) -> tuple[pd.DataFrame, int]:
    """Per-square predictions for the preprocessed micrographs of ``table``: the model's
    (``classifier`` when already loaded), or without one the weight-free classifier's
    (no torch). Stored per micrograph, so only new micrographs are evaluated; returns the
    predictions and how many were evaluated. ``sidecars``: the cache's sidecars already
    read (else read here, once)."""
    cache_dir = options.cache_dir
    assert cache_dir is not None, "predict_stage needs the cache folder (options.cache_dir)"
    if not options.model:
        return weightfree_stage(table, cache_dir, options.thresholds, sidecars)
    from miffi.classify.inference import inference_bf16, predict
    from miffi.classify.models import load_classifier

    options = _with_device(options)
    device, model = options.device, options.model
    assert not isinstance(device, str) and model is not None  # (resolved just now; a model: see above)
    options = dataclasses.replace(options, bf16=inference_bf16(device, options.bf16, options.fast), fast=False)
    log.info("model %s on %s, %s", Path(model).name, device, "bfloat16 autocast" if options.bf16 else "float32")
    classifier = classifier or load_classifier(model, options.arch, device)
    cache = TensorCache(cache_dir, classifier.config)
    sidecars = cache.read_sidecars(table["micrograph"]) if sidecars is None else sidecars
    usable = usable_sources(cache_status(table, cache, sidecars))

    def run(names: list[str]) -> pd.DataFrame:
        return predict(
            classifier,
            cache,
            names,
            device,
            options.batch_size,
            options.bf16,
            options.progress,
            [usable[m] for m in names],
        )

    store = Path(cache_dir) / "predictions" / model_key(options)
    return predict_reusing(run, list(usable), cache, store, sidecars)


def run_pipeline(inputs: Sequence[str | Path], outdir: str | Path, options: RunOptions) -> pd.DataFrame:
    """Run every stage in one process and write ``predictions.tsv``, ``results.tsv`` and
    the exports: the workflow's stages (intake, preprocess, :func:`predict_stage`,
    :func:`combine_stage`, :func:`export_stage`), called the same way.

    With a model, the weight-free classifier's labels are added as a second opinion
    (``wf_*`` columns); without one, it is the classifier.
    """
    check_formats(options.formats)  # the export settings first: a typo must not cost a run
    if options.export_categories is not None:
        check_categories(options.export_categories, options.split_confidence)
    for expression in options.where:
        parse_where(expression, result_columns(second_opinion=bool(options.model)))
    overrides = read_overrides(options.overrides) if options.overrides else None
    from miffi.classify.models import load_classifier
    from miffi.preprocess.batch import preprocess_table

    outdir = Path(outdir)
    cache_dir = options.cache_dir or outdir / "cache"
    options = dataclasses.replace(_with_device(options), cache_dir=cache_dir)
    device = options.device
    assert not isinstance(device, str)  # (resolved just now)
    classifier = load_classifier(options.model, options.arch, device) if options.model else None
    atomic.ensure_folder(outdir)
    table = read_micrographs(
        inputs,
        options.project_dir,
        options.pixel_size,
        options.pattern,
        allow_outside_project=options.allow_outside_project,
    )
    cache = TensorCache(cache_dir, classifier.config if classifier else PreprocessConfig(), full_hash=options.full_hash)
    preprocessed = usable_sources(preprocess_table(table, cache, device, progress=options.progress))
    sidecars = cache.read_sidecars(table["micrograph"])  # once, for both stages
    predictions, _ = predict_stage(table, options, classifier, sidecars)
    results = combine_stage(
        table,
        predictions,
        cache_dir,
        options.model,
        options.rule,
        options.categories,
        options.thresholds,
        sidecars,
        overrides,
    )
    replaced = sorted(set(preprocessed) - set(usable_sources(results)))
    if replaced:  # another run took over their entries meanwhile: never a mix of two datasets
        raise CacheConflict(
            f"{cache.directory}: the entries of {len(replaced)} micrograph(s) ({', '.join(replaced[:5])}) were "
            f"replaced while this run used them ({SHARED_NAME})"
        )
    write_table(predictions[["micrograph", "square", *LABELS]], outdir / "predictions.tsv")
    write_table(results, outdir / "results.tsv")
    export_stage(
        results,
        outdir,
        options.formats,
        options.export_categories,
        options.split_confidence,
        options.where,
        microscope=options.microscope,
        cryosparc_project_dir=options.cryosparc_project_dir,
    )
    return results
