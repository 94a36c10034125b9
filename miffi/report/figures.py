"""The report's figures, as matplotlib figures (saved as PNG and PDF by :func:`save`).

Each function takes the results table (one row per micrograph, as ``miffi run`` or the
workflow's combine stage writes it) or evaluation scores, and returns a figure.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from miffi import atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
from miffi.classify.combine import CATEGORIES
from miffi.evaluate.scores import MethodScore
from miffi.labels import GROUPS
from miffi.preprocess.metric_names import METRICS

ORDER = (*CATEGORIES, "failed")
COLOURS = dict(zip(ORDER, ("#2e7d32", "#1565c0", "#ef6c00", "#80deea", "#00838f", "#8e24aa", "#c62828", "#616161")))
plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def categories_of(results: pd.DataFrame) -> pd.Series:
    """Category per micrograph, ``failed`` for those that failed."""
    category = results["category"].astype("object").copy()
    if "status" in results:
        category[results["status"] == "failed"] = "failed"
    return category.fillna("failed")


def category_counts(results: pd.DataFrame) -> Figure:
    """Micrographs per category, split into high and low confidence."""
    category = categories_of(results)
    level = results.get("confidence_level", pd.Series("high", index=results.index)).fillna("high")
    present = [c for c in ORDER if (category == c).any()]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    high = np.array([((category == c) & (level == "high")).sum() for c in present])
    low = np.array([((category == c) & (level == "low")).sum() for c in present])
    colours = [COLOURS[c] for c in present]
    ax.bar(present, high, color=colours, label="high confidence")
    ax.bar(present, low, bottom=high, color=colours, alpha=0.45, hatch="//", label="low confidence")
    for x, total in enumerate(high + low):
        ax.text(x, total, str(total), ha="center", va="bottom")
    ax.set_ylabel("micrographs")
    ax.set_title(f"Categories ({len(results)} micrographs)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def confidence_histograms(results: pd.DataFrame) -> Figure:
    """Distribution of the category confidence, one step histogram per category."""
    category = categories_of(results)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(0, 1, 21).tolist()  # (the same edges, as the Sequence[float] matplotlib's types ask for)
    for name in ORDER[:-1]:
        values = results.loc[category == name, "confidence"].dropna()
        if len(values):
            ax.hist(
                values, bins=bins, histtype="step", linewidth=1.8, color=COLOURS[name], label=f"{name} ({len(values)})"
            )
    ax.set_xlabel("confidence")
    ax.set_ylabel("micrographs")
    ax.set_title("Confidence per category")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def acquisition_order(results: pd.DataFrame, window: int = 50) -> Figure:
    """Category of each micrograph along the input (acquisition) order, and the running
    fraction of good micrographs."""
    category = categories_of(results)
    present = [c for c in ORDER if (category == c).any()]
    row = category.map({c: i for i, c in enumerate(present)})
    order = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(present) + 1.8))
    ax.scatter(order, row, c=[COLOURS[c] for c in category], s=12, marker="|" if len(results) > 200 else "o")
    ax.set_yticks(range(len(present)), present)
    ax.set_xlabel("micrograph (input order)")
    ax.set_ylim(-0.6, len(present) - 0.4)
    good = (category == "good").astype(float).rolling(min(window, len(results)), min_periods=1, center=True).mean()
    twin = ax.twinx()
    twin.plot(order, good, color="black", linewidth=1)
    twin.set_ylim(0, 1.02)
    twin.set_ylabel(f"fraction good (window {min(window, len(results))})")
    ax.set_title("Categories along acquisition order")
    fig.tight_layout()
    return fig


def metric_distributions(results: pd.DataFrame, truth: pd.Series | None = None) -> Figure:
    """Histograms of the Fourier/real-space metrics, good vs bad (by label when given,
    else by category)."""
    metrics = [m for m in METRICS if m in results and results[m].notna().any()]
    if truth is not None:
        good, source = truth.astype(bool), "labels"
    else:
        good, source = categories_of(results) == "good", "category"
    columns = 4
    rows = max(1, -(-len(metrics) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(9, 2.1 * rows), squeeze=False)
    # a fixed layout and one filled outline per histogram: with ~25 panels, tight_layout
    # and a patch per bar cost seconds per report
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.3 / rows, top=1 - 0.45 / rows, hspace=0.55, wspace=0.3)
    for ax, metric in zip(axes.flat, metrics):
        values = results[metric].astype(float)
        finite = np.isfinite(values)
        if not finite.any():
            continue
        edges = np.linspace(values[finite].min(), values[finite].max() + 1e-9, 21)
        for subset, colour, name in ((good, COLOURS["good"], "good"), (~good, COLOURS["bad_multiple"], "bad")):
            counts, _ = np.histogram(values[subset & finite], bins=edges)
            ax.stairs(counts, edges, fill=True, color=colour, alpha=0.55, label=name)
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes.flat[0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"Metric distributions (good vs bad by {source})")
    return fig


def _heat_map(ax: Axes, matrix: np.ndarray, labels: list[str], title: str) -> None:
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if fraction[i, j] > 0.6 else "black")
    short = [
        label.replace("_crystalline", "")
        .replace("_contamination", "")
        .replace("crack_drift_empty", "crack/drift")
        .replace("no_crack_drift", "none")
        for label in labels
    ]
    ax.set_xticks(range(len(labels)), short, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("labelled")
    ax.set_title(title, fontsize=9)


def confusion_heat_maps(method: str, method_score: MethodScore) -> Figure:
    """Good-vs-bad and per-group confusion matrices of one method (colour: row fraction)."""
    groups = [g for g in GROUPS if g in method_score.confusions]
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(2.6 * (1 + len(groups)), 2.9), squeeze=False)
    c = method_score.counts
    metrics = method_score.counts.metrics()
    _heat_map(
        axes[0, 0],
        np.array([[c.tp, c.fn], [c.fp, c.tn]]),
        ["good", "bad"],
        f"good vs bad: acc {metrics['accuracy']:.3f}",
    )
    for ax, (group, scores) in zip(axes[0, 1:], ((g, method_score.group_scores()[g]) for g in groups)):
        _heat_map(ax, method_score.confusions[group], list(GROUPS[group]), f"{group}: acc {scores['accuracy']:.3f}")
    fig.suptitle(method)
    fig.tight_layout()
    return fig


def accuracy_by_dataset(summary: pd.DataFrame) -> Figure:
    """Good-vs-bad accuracy of every method on every dataset (and pooled)."""
    table = summary.pivot(index="dataset", columns="method", values="accuracy")
    table = table.reindex([d for d in dict.fromkeys(summary["dataset"])])
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(table) * max(1, len(table.columns)) / 2), 3.4))
    width = 0.8 / max(1, len(table.columns))
    for i, method in enumerate(table.columns):
        x = np.arange(len(table)) + (i - (len(table.columns) - 1) / 2) * width
        bars = ax.bar(x, table[method], width, label=method)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(table)), table.index, rotation=20)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("good-vs-bad accuracy")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def slug(name: str) -> str:
    """A file-name-safe version of a method name (``model:miffi_v1.pt`` → ``model_miffi_v1.pt``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_")


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG (for embedding), closing it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def save(fig: Figure, directory: Path, stem: str, pdf: bool = False) -> bytes:
    """Write ``stem.png`` (and ``stem.pdf`` with ``pdf``, else remove a stale one) atomically;
    return the PNG bytes and close the figure.

    PDFs are opt-in: drawing one costs nearly as much as its PNG again (about 0.3 s against
    0.4 s for a report figure under a profiler, 2-core EPYC), on every re-run of a report.
    """
    directory.mkdir(parents=True, exist_ok=True)
    png = png_bytes(fig)
    with atomic.atomic_open(directory / f"{stem}.png", "wb") as handle:
        handle.write(png)
    if pdf:
        with atomic.temporary_path(directory / f"{stem}.pdf") as tmp:
            fig.savefig(tmp, format="pdf")
    else:  # a PDF of an earlier --pdf run would no longer match its PNG
        (directory / f"{stem}.pdf").unlink(missing_ok=True)
    plt.close(fig)
    return png


def save_all(figures: Mapping[str, Figure], directory: Path, pdf: bool = False) -> dict[str, bytes]:
    return {stem: save(fig, directory, stem, pdf) for stem, fig in figures.items()}


def copy_saved(source: Path, directory: Path, stem: str, pdf: bool = False) -> bytes | None:
    """Copy ``stem.png`` (and with ``pdf`` ``stem.pdf``) that an earlier step saved in
    ``source`` into ``directory`` and return the PNG bytes; ``None``, copying nothing, when
    one of them is missing there. Cheaper than drawing the same figure again (~0.3 s each)."""
    suffixes = (".png", ".pdf") if pdf else (".png",)
    if not all((source / f"{stem}{suffix}").is_file() for suffix in suffixes):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    for suffix in suffixes:
        with atomic.atomic_open(directory / f"{stem}{suffix}", "wb") as handle:
            handle.write((source / f"{stem}{suffix}").read_bytes())
    if not pdf:
        (directory / f"{stem}.pdf").unlink(missing_ok=True)
    return (directory / f"{stem}.png").read_bytes()
