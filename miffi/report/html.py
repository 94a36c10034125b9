"""Self-contained HTML reports: one per dataset and one across datasets.

Everything (figures, thumbnails, styles) is embedded in the HTML file, so a report opens
offline and can be mailed around; the figures are also written as PNG and PDF files.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miffi import __version__, atomic
from miffi.errors import MiffiError
from miffi.evaluate.scores import Evaluation, MethodScore, pooled_scores, summary_table
from miffi.labels import GROUPS
from miffi.preprocess.config import PreprocessConfig
from miffi.report import figures
from miffi.report.images import png, resized, side_by_side, tensor_views
from miffi.textfiles import read_tsv

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img.fig{max-width:100%;margin:.4em 0}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}.thumb{border:1px solid #ddd;padding:.3em;font-size:.78em;width:330px}
.thumb img{width:100%;display:block}.thumb .name{font-weight:600;word-break:break-all}
.good{color:#2e7d32}.bad{color:#c62828}.note{background:#fff8e1;padding:.5em .8em;border-left:3px solid #ffb300}
"""


def _img(png: bytes, alt: str, css: str = "fig") -> str:
    return f'<img class="{css}" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    head = "".join(
        f'<th class="{"l" if i == 0 else ""}">{html.escape(str(c))}</th>' for i, c in enumerate(frame.columns)
    )
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for i, value in enumerate(row):
            if isinstance(value, float):
                text = "" if np.isnan(value) else f"{value:.{digits}f}"
            else:
                text = html.escape(str(value))
            cells.append(f'<td class="{"l" if i == 0 or not isinstance(value, (int, float)) else ""}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _page(title: str, sections: Sequence[str]) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='meta'>miffi {__version__} · {stamp}</p>{''.join(sections)}</body></html>"
    )


def thumbnail(tensor: np.ndarray, size: int = 160, clip: float = PreprocessConfig.clip) -> bytes:
    """PNG of a cached tensor's first square: real-space image and power spectrum side by
    side, ``size`` pixels each, as the model sees them (:mod:`miffi.report.images`)."""
    views = tensor_views(np.asarray(tensor[:1], dtype=np.float32), clip)
    return png(side_by_side([resized(view, size) for view in views]), optimize=True)


def _cached_thumbnail(cache_dir: Path | None, micrograph: str) -> bytes | None:
    if cache_dir is None:
        return None
    path = cache_dir / f"{micrograph}.npy"
    try:
        return thumbnail(np.load(path, mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError):
        return None


def _probabilities(row: pd.Series) -> str:
    parts = []
    for group in GROUPS:
        label, confidence = row.get(group), row.get(f"{group}_confidence")
        if isinstance(label, str):
            parts.append(
                f"{group}: {html.escape(label)} ({confidence:.2f})"
                if pd.notna(confidence)
                else f"{group}: {html.escape(label)}"
            )
    return "<br>".join(parts)


def _thumb_card(row: pd.Series, cache_dir: Path | None, caption: str = "") -> str:
    png = _cached_thumbnail(cache_dir, row["micrograph"])
    image = _img(png, f"{row['micrograph']}: image and power spectrum", "t") if png else "<em>(no cached tensor)</em>"
    confidence = row.get("confidence")
    head = f"{html.escape(str(row.get('category')))} · confidence {confidence:.2f}" if pd.notna(confidence) else ""
    return (
        f"<div class='thumb'>{image}<div class='name'>{html.escape(row['micrograph'])}</div>"
        f"<div>{head}</div><div>{_probabilities(row)}</div>{caption}</div>"
    )


def _examples(results: pd.DataFrame, cache_dir: Path | None, per_category: int) -> str:
    """Examples of each category, spread over its confidence range (most confident first)."""
    blocks = []
    for name in figures.ORDER[:-1]:
        rows = results[results["category"] == name].sort_values("confidence", ascending=False)
        if rows.empty:
            continue
        picks = np.unique(np.linspace(0, len(rows) - 1, min(per_category, len(rows))).round().astype(int))
        cards = "".join(_thumb_card(rows.iloc[i], cache_dir) for i in picks)
        blocks.append(f"<h3>{name} ({len(rows)})</h3><div class='gallery'>{cards}</div>")
    return "".join(blocks)


def _errors(results: pd.DataFrame, matched: pd.DataFrame, method: str, cache_dir: Path | None, count: int) -> str:
    """The most confident disagreements of ``method`` with the labels."""
    column = f"{method}:good"
    if column not in matched:
        return ""
    wrong = matched[matched[column].notna() & (matched[column].astype(bool) != matched["true_good"].astype(bool))]
    if wrong.empty:
        return f"<p>{html.escape(method)} agrees with every label.</p>"
    rows = results.merge(wrong, on="micrograph").sort_values("confidence", ascending=False).head(count)
    cards = []
    for _, row in rows.iterrows():
        truth = ", ".join(str(row[f"true_{g}"]) for g in GROUPS if f"true_{g}" in row and pd.notna(row[f"true_{g}"]))
        verdict = "good" if row["true_good"] else "bad"
        cards.append(
            _thumb_card(row, cache_dir, f"<div class='{verdict}'>labelled {verdict}: {html.escape(truth)}</div>")
        )
    return (
        f"<p>{len(wrong)} of {len(matched)} labelled micrographs disagree; the {len(rows)} most confident "
        f"errors of {html.escape(method)}:</p><div class='gallery'>{''.join(cards)}</div>"
    )


def _method_tables(evaluation: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Good-vs-bad metrics, and per-group accuracies (exact label / good-vs-bad), per method."""
    table = summary_table({evaluation["dataset"]: evaluation}).drop(columns="dataset")
    good_bad = table[["method", "n", "TP", "FP", "TN", "FN", "accuracy", "precision", "recall", "specificity", "f1"]]
    groups = table[["method"]].copy()
    for group in GROUPS:
        groups[group] = [
            f"{a:.3f} / {b:.3f}" if pd.notna(a) else ""
            for a, b in zip(table[f"{group}_accuracy"], table[f"{group}_good_bad_accuracy"])
        ]
    return good_bad, groups


def dataset_report(
    results: pd.DataFrame,
    out: Path,
    title: str,
    evaluation: Mapping[str, Any] | None = None,
    matched: pd.DataFrame | None = None,
    cache_dir: Path | None = None,
    figure_dir: Path | None = None,
    per_category: int = 4,
    errors: int = 8,
    pdf: bool = False,
    evaluation_figures: Path | None = None,
) -> None:
    """Write the HTML report of one dataset (and its figures into ``figure_dir``, as PNG and
    with ``pdf`` as PDF too). The confusion heat maps are copied from ``evaluation_figures``
    (where ``miffi evaluate`` saved them from the same evaluation) when they are there."""
    figure_dir = figure_dir or out.parent / f"{out.stem}_figures"
    categories = figures.categories_of(results)
    counts = pd.DataFrame(
        {"category": list(figures.ORDER), "micrographs": [int((categories == c).sum()) for c in figures.ORDER]}
    )
    counts = counts[counts["micrographs"] > 0]
    counts["fraction"] = counts["micrographs"] / max(1, len(results))
    truth = None
    if matched is not None:
        truth = results["micrograph"].map(matched.set_index("micrograph")["true_good"]).dropna()
    made = {
        "categories": figures.category_counts(results),
        "confidence": figures.confidence_histograms(results),
        "acquisition": figures.acquisition_order(results),
    }
    if any(c in results for c in ("water_ring", "dark_fraction")):
        labelled = results.loc[truth.index] if truth is not None and len(truth) else results
        made["metrics"] = figures.metric_distributions(labelled, truth if truth is not None and len(truth) else None)
    scores = {name: MethodScore.from_dict(data) for name, data in (evaluation or {}).get("methods", {}).items()}
    copied: dict[str, bytes] = {}
    for name, method_score in scores.items():
        stem = f"confusion_{figures.slug(name)}"
        png = figures.copy_saved(evaluation_figures, figure_dir, stem, pdf) if evaluation_figures else None
        if png is None:
            made[stem] = figures.confusion_heat_maps(name, method_score)
        else:
            copied[stem] = png
    pngs = {**figures.save_all(made, figure_dir, pdf), **copied}

    classifier = str(results["classifier"].iloc[0]) if "classifier" in results and len(results) else "?"
    sections = [
        (
            f"<p>{len(results)} micrographs · classifier <b>{html.escape(classifier)}</b> · "
            f"{int((categories == 'good').sum())} good · {int((categories == 'failed').sum())} failed</p>"
        ),
        "<h2>Categories</h2>",
        _table(counts),
        _img(pngs["categories"], "category counts"),
        _img(pngs["confidence"], "confidence histograms"),
        "<h2>Along acquisition order</h2>",
        _img(pngs["acquisition"], "categories along acquisition order"),
    ]
    if "metrics" in pngs:
        sections += ["<h2>Fourier-space and real-space metrics</h2>", _img(pngs["metrics"], "metric distributions")]
    if evaluation is not None:
        sections += [
            "<h2>Accuracy against labels</h2>",
            (
                f"<p>{evaluation['evaluated']} labelled micrographs evaluated; good = positive "
                "(film: no/minor film; crystallinity: not crystalline).</p>"
            ),
            _table(_method_tables(evaluation)[0]),
            "<p>Per group: accuracy of the exact label / of the group's good-vs-bad call.</p>",
            _table(_method_tables(evaluation)[1]),
        ]
        if evaluation["unmatched_labels"] or evaluation["unmatched_results"]:
            examples = (evaluation["unmatched_labels"] or evaluation["unmatched_results"])[:5]
            sections.append(
                f"<p class='note'>{len(evaluation['unmatched_results'])} micrographs have no label, "
                f"{len(evaluation['unmatched_labels'])} labels no micrograph (e.g. "
                f"{html.escape(', '.join(examples))}).</p>"
            )
        sections += [_img(pngs[f"confusion_{figures.slug(name)}"], f"confusion matrices of {name}") for name in scores]
    sections += [
        "<h2>Examples (image and power spectrum, as the model sees them)</h2>",
        _examples(results, cache_dir, per_category) if cache_dir else "<p>No cache given: no thumbnails.</p>",
    ]
    if matched is not None and scores:
        primary = next(iter(scores))
        sections += ["<h2>Most confident errors</h2>", _errors(results, matched, primary, cache_dir, errors)]
    failed = results[categories == "failed"]
    if len(failed):
        sections += ["<h2>Failed micrographs</h2>", _table(failed[["micrograph", "error"]].fillna("").astype(str))]
    atomic.write_text(out, _page(title, sections))


def summary_report(
    evaluations: Sequence[Mapping[str, Any]],
    out: Path,
    title: str,
    figure_dir: Path | None = None,
    links: Mapping[str, str] | None = None,
    pdf: bool = False,
) -> pd.DataFrame:
    """Write the report across datasets (Table 4/5-style summary, pooled confusion
    matrices; figures as PNG, and with ``pdf`` as PDF too); returns the summary table, also
    written as TSV beside the report."""
    figure_dir = figure_dir or out.parent / f"{out.stem}_figures"
    by_name = {e["dataset"]: e for e in evaluations}
    if len(by_name) < len(evaluations):
        names = [e["dataset"] for e in evaluations]
        raise MiffiError(
            f"datasets named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))} "
            "(give each evaluation its own --dataset name)"
        )
    summary = summary_table(by_name)
    atomic.write_text(out.with_suffix(".tsv"), summary.to_csv(sep="\t", index=False))
    made = {"accuracy": figures.accuracy_by_dataset(summary)}
    pooled = pooled_scores(evaluations)
    for name, s in pooled.items():
        made[f"pooled_confusion_{figures.slug(name)}"] = figures.confusion_heat_maps(f"{name} (all datasets)", s)
    pngs = figures.save_all(made, figure_dir, pdf)
    good_bad = summary[
        ["dataset", "method", "n", "TP", "FP", "TN", "FN", "accuracy", "precision", "recall", "specificity", "f1"]
    ]
    groups = summary[["dataset", "method", *[f"{g}_accuracy" for g in GROUPS]]].dropna(
        subset=[f"{g}_accuracy" for g in GROUPS], how="all"
    )
    sections = [f"<p>{len(evaluations)} datasets.</p>"]
    if links:
        sections.append(
            "<p>Per-dataset reports: "
            + " · ".join(f"<a href='{html.escape(href)}'>{html.escape(name)}</a>" for name, href in links.items())
            + "</p>"
        )
    sections += [
        "<h2>Good vs bad (good = positive)</h2>",
        _table(good_bad),
        _img(pngs["accuracy"], "accuracy by dataset"),
        "<h2>Per-group accuracy (exact label)</h2>",
        _table(groups),
        "<h2>Pooled confusion matrices</h2>",
        *[_img(pngs[f"pooled_confusion_{figures.slug(name)}"], f"pooled confusion of {name}") for name in pooled],
    ]
    atomic.write_text(out, _page(title, sections))
    return summary


def write_evaluation(evaluation: Evaluation, directory: Path, pdf: bool = False) -> None:
    """``evaluation.json`` (counts, metrics, confusion matrices, unmatched names),
    ``matched.tsv`` (truth and every method's call per micrograph), ``summary.tsv`` and the
    confusion heat maps (PNG, and with ``pdf`` PDF) in ``directory``."""
    data = evaluation.to_dict()
    atomic.write_text(directory / "evaluation.json", json.dumps(data, indent=1, allow_nan=True))
    atomic.write_text(directory / "matched.tsv", evaluation.matched.to_csv(sep="\t", index=False))
    atomic.write_text(
        directory / "summary.tsv", summary_table({evaluation.dataset: data}).to_csv(sep="\t", index=False)
    )
    figures.save_all(
        {
            f"confusion_{figures.slug(name)}": figures.confusion_heat_maps(name, s)
            for name, s in evaluation.scores.items()
        },
        directory / "figures",
        pdf,
    )


def read_evaluation(directory: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The ``evaluation.json`` and ``matched.tsv`` that ``miffi evaluate`` wrote into ``directory``."""
    evaluation = json.loads((directory / "evaluation.json").read_text(encoding="utf-8"))
    matched = read_tsv(directory / "matched.tsv", ["micrograph", "path", "input", "key"], "matched table")
    return evaluation, matched
