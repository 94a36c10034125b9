"""The Miffi paper's numbers (Xu & Ando): `miffi evaluate` reproduces the printed
accuracies from the printed counts, and the five published label files hold exactly the
paper's good (TP + FN) and total counts under our definition of good."""

from __future__ import annotations

import itertools
import json
import logging

import pandas as pd
import pytest

from miffi.cli import main
from miffi.evaluate.label_files import read_labels
from miffi.labels import GROUPS

#: Printed accuracy and TP, FP, TN, FN (good = positive). Table 4: the validation set.
TABLE_4 = {
    "scratch 1-channel": ("0.780", 1749, 418, 1371, 462),
    "fine-tune 1-channel": ("0.961", 2178, 122, 1667, 33),
    "fine-tune 2-channel": ("0.986", 2183, 27, 1762, 28),
}
#: Table 5: the EMPIAR test sets, whose labels were published with the paper.
TABLE_5 = {
    "10175": ("0.954", 802, 31, 171, 16),
    "10344": ("0.979", 2348, 26, 278, 30),
    "10379": ("0.996", 884, 2, 230, 2),
    "10916": ("0.971", 1684, 0, 27, 51),
    "11093": ("0.973", 1123, 16, 171, 20),
}

#: Label sets that are good (every group good) and bad (one group bad each), cycled through.
GOOD_LABELS = [
    ("no_film", "no_crack_drift", "not_crystalline", "minor_contamination"),
    ("minor_film", "no_crack_drift", "not_crystalline", "minor_contamination"),
]
BAD_LABELS = [
    ("major_film", "no_crack_drift", "not_crystalline", "minor_contamination"),
    ("film", "no_crack_drift", "not_crystalline", "minor_contamination"),
    ("no_film", "crack_drift_empty", "not_crystalline", "minor_contamination"),
    ("no_film", "no_crack_drift", "minor_crystalline", "minor_contamination"),
    ("no_film", "no_crack_drift", "major_crystalline", "minor_contamination"),
    ("no_film", "no_crack_drift", "not_crystalline", "major_contamination"),
]


def _tables(tp: int, fp: int, tn: int, fn: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels and predictions with exactly these good-vs-bad counts; the group labels vary
    (a TN may be called bad for another reason than its label's), so only the good/bad
    call decides."""
    truth, called = [], []
    for n, true_pool, called_pool in (
        (tp, GOOD_LABELS, GOOD_LABELS[::-1]),
        (fn, GOOD_LABELS, BAD_LABELS),
        (fp, BAD_LABELS, GOOD_LABELS),
        (tn, BAD_LABELS, BAD_LABELS[::-1]),
    ):
        truth += list(itertools.islice(itertools.cycle(true_pool), n))
        called += list(itertools.islice(itertools.cycle(called_pool), n))
    names = [f"mic_{i:05d}.mrc" for i in range(len(truth))]
    labels = pd.DataFrame(truth, columns=list(GROUPS)).assign(micrograph=names)
    results = pd.DataFrame(called, columns=list(GROUPS)).assign(
        micrograph=[n.removesuffix(".mrc") for n in names], status="ok", classifier="model:paper.pt"
    )
    return labels, results


@pytest.mark.parametrize("row", [*TABLE_4, *TABLE_5])
def test_evaluate_reproduces_the_printed_accuracy(tmp_path, caplog, row):
    accuracy, tp, fp, tn, fn = {**TABLE_4, **TABLE_5}[row]
    labels, results = _tables(tp, fp, tn, fn)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    results.to_csv(tmp_path / "results.tsv", sep="\t", index=False)
    with caplog.at_level(logging.INFO):
        assert (
            main(
                [
                    "evaluate",
                    "--results",
                    str(tmp_path / "results.tsv"),
                    "--labels",
                    str(tmp_path / "labels.csv"),
                    "--out",
                    str(tmp_path / "eval"),
                ]
            )
            == 0
        )
    method = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["methods"]["model:paper.pt"]
    assert method["counts"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": tp + fp + tn + fn}
    assert f"{method['metrics']['accuracy']:.3f}" == accuracy
    assert f"model:paper.pt: accuracy {accuracy} (TP {tp} FP {fp} TN {tn} FN {fn})" in caplog.text
    summary = pd.read_csv(tmp_path / "eval" / "summary.tsv", sep="\t").iloc[0]
    assert [summary[k] for k in ("TP", "FP", "TN", "FN")] == [tp, fp, tn, fn]


@pytest.mark.parametrize("suffix", ["_labels.csv", "_label_dict.pkl"])
@pytest.mark.parametrize("dataset", TABLE_5)
def test_published_label_files_give_the_papers_good_counts(realdata, dataset, suffix):
    """Good = no or minor film, no crack/drift/empty, not crystalline (minor crystalline is
    bad), minor contamination: the definition that reproduces Table 5 exactly."""
    _, tp, fp, tn, fn = TABLE_5[dataset]
    labels = read_labels(realdata / "miffi_labels" / f"empiar_{dataset}{suffix}")
    assert (int(labels["good"].sum()), len(labels)) == (tp + fn, tp + fp + tn + fn)
