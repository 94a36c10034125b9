"""Accuracy against human labels, as the Miffi paper measures it, for every method that ran.

Good-vs-bad: a micrograph is *good* (the positive class) when every group is good (film:
no or minor film; drift: no crack/drift; crystallinity: not crystalline; contamination:
minor). TP = good called good, FP = bad called good, TN = bad called bad, FN = good
called bad. Per group: the accuracy of the exact label, of the group's good/bad call, and
the confusion matrix (rows: true label, columns: predicted label).

The methods are read from a results table: its classifier (a CNN model or the weight-free
classifier), the weight-free second opinion (``wf_*`` columns) and the CTF-resolution
baseline (good/bad only). Results of several models are evaluated side by side by
passing several tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from miffi.errors import MiffiError
from miffi.evaluate.label_files import match_labels
from miffi.labels import GOOD, GROUPS

WEIGHTFREE = "weight-free"
CTF_BASELINE = "CTF baseline"


@dataclass(frozen=True)
class Counts:
    """Good-vs-bad counts, good = positive."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @classmethod
    def of(cls, truth_good: npt.ArrayLike, predicted_good: npt.ArrayLike) -> Counts:
        truth, predicted = np.asarray(truth_good, bool), np.asarray(predicted_good, bool)
        return cls(
            tp=int((truth & predicted).sum()),
            fp=int((~truth & predicted).sum()),
            tn=int((~truth & ~predicted).sum()),
            fn=int((truth & ~predicted).sum()),
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def metrics(self) -> dict[str, float]:
        """accuracy, precision (of good), recall (of good), specificity, F1; NaN when undefined."""

        def ratio(a: int, b: int) -> float:
            return a / b if b else float("nan")

        precision, recall = ratio(self.tp, self.tp + self.fp), ratio(self.tp, self.tp + self.fn)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
        return {
            "accuracy": ratio(self.tp + self.tn, self.n),
            "precision": precision,
            "recall": recall,
            "specificity": ratio(self.tn, self.tn + self.fp),
            "f1": f1,
        }


def confusion(truth: Iterable[str], predicted: Iterable[str], labels: Sequence[str]) -> np.ndarray:
    """Counts ``[true label, predicted label]`` in the order of ``labels``."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted):
        matrix[index[t], index[p]] += 1
    return matrix


@dataclass
class MethodScore:
    """One method on one dataset (or pooled): counts and, where it predicts groups, per-group matrices."""

    counts: Counts
    confusions: dict[str, np.ndarray] = field(default_factory=dict)

    def __add__(self, other: MethodScore) -> MethodScore:
        groups = self.confusions.keys() & other.confusions.keys()
        return MethodScore(self.counts + other.counts, {g: self.confusions[g] + other.confusions[g] for g in groups})

    def group_scores(self) -> dict[str, dict[str, float]]:
        """Per group: exact-label accuracy and good/bad accuracy."""
        out = {}
        for group, matrix in self.confusions.items():
            good = np.array([label in GOOD[group] for label in GROUPS[group]])
            total = matrix.sum()
            good_bad = matrix[np.ix_(good, good)].sum() + matrix[np.ix_(~good, ~good)].sum()
            out[group] = {
                "accuracy": np.trace(matrix) / total if total else float("nan"),
                "good_bad_accuracy": good_bad / total if total else float("nan"),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": vars(self.counts) | {"n": self.counts.n},
            "metrics": self.counts.metrics(),
            "groups": {
                g: s | {"labels": list(GROUPS[g]), "confusion": self.confusions[g].tolist()}
                for g, s in self.group_scores().items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodScore:
        counts = {k: v for k, v in data["counts"].items() if k != "n"}
        return cls(Counts(**counts), {g: np.array(s["confusion"]) for g, s in data["groups"].items()})


def method_predictions(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each method's predictions in a results table: ``micrograph``, group labels (when the
    method has them) and ``good``. Failed micrographs are left out."""
    usable = results[results["status"] != "failed"] if "status" in results else results
    methods: dict[str, pd.DataFrame] = {}
    classifier = str(usable["classifier"].iloc[0]) if "classifier" in usable and len(usable) else WEIGHTFREE
    for name, prefix in ((classifier, ""), (WEIGHTFREE, "wf_")):
        columns = [f"{prefix}{g}" for g in GROUPS]
        if name in methods or not all(c in usable for c in columns) or usable[columns].isna().all().all():
            continue
        frame = usable[["micrograph", *columns]].dropna().rename(columns=dict(zip(columns, GROUPS)))
        frame["good"] = np.logical_and.reduce([frame[g].isin(GOOD[g]) for g in GROUPS])
        methods[name] = frame.reset_index(drop=True)
    if "ctf_baseline" in usable and usable["ctf_baseline"].notna().any():
        frame = usable[["micrograph", "ctf_baseline"]].dropna()
        methods[CTF_BASELINE] = pd.DataFrame(
            {"micrograph": frame["micrograph"], "good": frame["ctf_baseline"] == "good"}
        )
    return methods


def score(truth: pd.DataFrame, predictions: pd.DataFrame) -> MethodScore:
    """Score predictions against truth rows (``true_*`` columns), joined on ``micrograph``."""
    joined = truth.merge(predictions, on="micrograph")
    confusions = {}
    for group in GROUPS:
        if group in joined and f"true_{group}" in joined:
            confusions[group] = confusion(joined[f"true_{group}"], joined[group], GROUPS[group])
    return MethodScore(Counts.of(joined["true_good"], joined["good"]), confusions)


@dataclass
class Evaluation:
    """The evaluation of one dataset: the matched rows and a score per method."""

    dataset: str
    matched: pd.DataFrame
    scores: dict[str, MethodScore]
    unmatched_results: list[str]
    unmatched_labels: list[str]
    failed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "labelled": len(self.matched) + len(self.failed),
            "evaluated": len(self.matched),
            "failed": self.failed,
            "unmatched_results": self.unmatched_results,
            "unmatched_labels": self.unmatched_labels,
            "methods": {name: s.to_dict() for name, s in self.scores.items()},
        }


def evaluate(results: Sequence[pd.DataFrame], labels: pd.DataFrame, dataset: str = "dataset") -> Evaluation:
    """Evaluate every method in ``results`` (one table per run over the same micrographs)."""
    if not results:
        raise MiffiError("evaluate: no results tables given")
    joined, unmatched_results, unmatched_labels = match_labels(results[0], labels)
    if joined.empty:
        raise MiffiError(
            f"{dataset}: no result matches a labelled micrograph "
            f"(results e.g. {results[0]['micrograph'].head(3).tolist()}, "
            f"labels e.g. {labels['micrograph'].head(3).tolist()})"
        )
    failed_mask = joined["status"] == "failed" if "status" in joined else pd.Series(False, index=joined.index)
    truth = joined.loc[~failed_mask, ["micrograph", *[c for c in joined.columns if c.startswith("true_")]]]
    per_table = [method_predictions(table) for table in results]
    scores: dict[str, MethodScore] = {}
    for methods in per_table:
        for name, predictions in methods.items():
            scores.setdefault(name, score(truth, predictions))
    matched = truth.copy()
    for name, predictions in per_table[0].items():
        renamed = {c: f"{name}:{c}" for c in predictions.columns if c != "micrograph"}
        matched = matched.merge(predictions.rename(columns=renamed), on="micrograph", how="left")
    return Evaluation(
        dataset,
        matched.reset_index(drop=True),
        scores,
        unmatched_results,
        unmatched_labels,
        joined.loc[failed_mask, "micrograph"].tolist(),
    )


def pooled_scores(evaluations: Iterable[Mapping[str, Any]]) -> dict[str, MethodScore]:
    """Each method's score summed over evaluation dicts (the ``pooled`` rows and matrices).

    Parameters
    ----------
    evaluations
        Evaluation dicts (:meth:`Evaluation.to_dict`), in order.

    Returns
    -------
    dict
        Method name → pooled score, in order of first appearance.
    """
    pooled: dict[str, MethodScore] = {}
    for evaluation in evaluations:
        for method, data in evaluation["methods"].items():
            method_score = MethodScore.from_dict(data)
            pooled[method] = pooled[method] + method_score if method in pooled else method_score
    return pooled


def summary_table(evaluations: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Table 4/5-style rows (dataset × method, plus ``pooled``) from evaluation dicts."""
    rows = [
        _summary_row(dataset, method, MethodScore.from_dict(data))
        for dataset, evaluation in evaluations.items()
        for method, data in evaluation["methods"].items()
    ]
    if len(evaluations) > 1:
        rows += [_summary_row("pooled", method, s) for method, s in pooled_scores(evaluations.values()).items()]
    return pd.DataFrame(rows)


def _summary_row(dataset: str, method: str, method_score: MethodScore) -> dict[str, Any]:
    counts = method_score.counts
    row = {
        "dataset": dataset,
        "method": method,
        "n": counts.n,
        "TP": counts.tp,
        "FP": counts.fp,
        "TN": counts.tn,
        "FN": counts.fn,
        **counts.metrics(),
    }
    group_scores = method_score.group_scores()
    for group in GROUPS:
        scores = group_scores.get(group, {})
        row[f"{group}_accuracy"] = scores.get("accuracy", float("nan"))
        row[f"{group}_good_bad_accuracy"] = scores.get("good_bad_accuracy", float("nan"))
    return row
