"""Accuracy against labels: counts, the paper's definitions of good, label files, matching."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from miffi.cli import main
from miffi.errors import MiffiError
from miffi.evaluate.label_files import match_labels, name_key, read_labels
from miffi.evaluate.scores import (
    CTF_BASELINE,
    WEIGHTFREE,
    Counts,
    MethodScore,
    confusion,
    evaluate,
    summary_table,
)
from miffi.labels import GROUPS

DATASETS = {"10175": 1020, "10344": 2682, "10379": 1118, "10916": 1762, "11093": 1330}
GOOD = ("no_film", "no_crack_drift", "not_crystalline", "minor_contamination")


def test_counts_and_metrics_on_known_predictions():
    truth = [True] * 6 + [False] * 4
    predicted = [True, True, True, True, False, False, True, False, False, False]
    counts = Counts.of(truth, predicted)
    assert (counts.tp, counts.fn, counts.fp, counts.tn) == (4, 2, 1, 3)
    metrics = counts.metrics()
    assert metrics["accuracy"] == pytest.approx(7 / 10)
    assert metrics["precision"] == pytest.approx(4 / 5)
    assert metrics["recall"] == pytest.approx(4 / 6)
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    assert np.isnan(Counts(tn=3).metrics()["precision"])  # nothing called good


def test_confusion_matrix_rows_are_truth():
    matrix = confusion(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def _row(
    name: str,
    film="no_film",
    drift="no_crack_drift",
    crystallinity="not_crystalline",
    contamination="minor_contamination",
) -> dict:
    return {
        "micrograph": name,
        "film": film,
        "drift": drift,
        "crystallinity": crystallinity,
        "contamination": contamination,
    }


def test_paper_definitions_of_good():
    """minor film is good, minor crystalline is bad, each group decides alone."""
    truth_rows = [
        _row("a"),
        _row("b", film="minor_film"),
        _row("c", film="major_film"),
        _row("d", crystallinity="minor_crystalline"),
        _row("e", drift="crack_drift_empty"),
        _row("f", contamination="major_contamination"),
        _row("g", film="film"),
    ]
    labels = read_frame(pd.DataFrame(truth_rows))
    assert labels["good"].tolist() == [True, True, False, False, False, False, False]
    # the classifier calls everything perfect except: b → film (FN), c → minor_film (FP),
    # d → not_crystalline (FP), g → major_film (TN, but a film-label error)
    predicted = [
        _row("a"),
        _row("b", film="film"),
        _row("c", film="minor_film"),
        _row("d"),
        _row("e", drift="crack_drift_empty"),
        _row("f", contamination="major_contamination"),
        _row("g", film="major_film"),
    ]
    results = pd.DataFrame(predicted).assign(status="ok", classifier="model:test.pt")
    evaluation = evaluate([results], labels, "hand")
    score = evaluation.scores["model:test.pt"]
    assert vars(score.counts) == {"tp": 1, "fp": 2, "tn": 3, "fn": 1}
    groups = score.group_scores()
    assert groups["film"]["accuracy"] == pytest.approx(4 / 7)  # a, d, e, f right
    assert groups["film"]["good_bad_accuracy"] == pytest.approx(5 / 7)  # b, c wrong; g bad either way
    assert groups["crystallinity"]["accuracy"] == pytest.approx(6 / 7)
    assert score.confusions["film"].tolist() == [[4, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]]


def read_frame(frame: pd.DataFrame) -> pd.DataFrame:
    from miffi.evaluate.label_files import label_table

    return label_table(frame, "test")


def test_all_methods_side_by_side_and_failed_left_out():
    labels = read_frame(pd.DataFrame([_row("m1"), _row("m2", film="major_film"), _row("m3"), _row("m4")]))
    results = pd.DataFrame([_row("m1"), _row("m2"), _row("m3", drift="crack_drift_empty"), _row("m4")])
    results["status"] = ["ok", "ok", "ok", "failed"]
    results["classifier"] = "model:a.pt"
    for group in GROUPS:
        results[f"wf_{group}"] = results[group]
    results["wf_film"] = ["no_film", "major_film", "no_film", None]
    results["ctf_baseline"] = ["good", "bad", "bad", None]
    evaluation = evaluate([results], labels, "side")
    assert evaluation.failed == ["m4"]
    counts = {name: vars(s.counts) for name, s in evaluation.scores.items()}
    assert counts["model:a.pt"] == {"tp": 1, "fp": 1, "tn": 0, "fn": 1}
    assert counts[WEIGHTFREE] == {"tp": 1, "fp": 0, "tn": 1, "fn": 1}
    assert counts[CTF_BASELINE] == {"tp": 1, "fp": 0, "tn": 1, "fn": 1}
    assert evaluation.scores[CTF_BASELINE].confusions == {}  # good/bad only
    # a second model's results table is evaluated beside the first
    other = results.assign(classifier="model:b.pt", film="major_film")
    both = evaluate([results, other], labels, "side")
    assert vars(both.scores["model:b.pt"].counts) == {"tp": 0, "fp": 0, "tn": 1, "fn": 2}
    table = summary_table({"side": both.to_dict()})
    assert table["method"].tolist() == ["model:a.pt", WEIGHTFREE, CTF_BASELINE, "model:b.pt"]


def test_pooled_counts_are_sums():
    a = MethodScore(Counts(5, 1, 3, 1), {"drift": np.array([[6, 1], [0, 3]])})
    b = MethodScore(Counts(2, 0, 1, 2), {"drift": np.array([[3, 1], [1, 0]])})
    evaluations = {name: {"methods": {"m": s.to_dict()}} for name, s in (("A", a), ("B", b))}
    table = summary_table(evaluations).set_index("dataset")
    assert table.loc["pooled", ["TP", "FP", "TN", "FN"]].tolist() == [7, 1, 4, 3]
    assert table.loc["pooled", "accuracy"] == pytest.approx(11 / 15)
    assert table.loc["pooled", "drift_accuracy"] == pytest.approx(12 / 15)


# ---- label files -------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
def test_real_miffi_label_pickles_import_and_match_their_csv(realdata, dataset):
    labels = realdata / "miffi_labels"
    pkl = read_labels(labels / f"empiar_{dataset}_label_dict.pkl")
    csv = read_labels(labels / f"empiar_{dataset}_labels.csv")
    assert len(pkl) == DATASETS[dataset]
    pd.testing.assert_frame_equal(pkl, csv)
    assert 0.5 < pkl["good"].mean() < 1.0
    for group, labels in GROUPS.items():
        assert set(pkl[group]) <= set(labels)
    # a perfect classifier scores TP = the good micrographs, TN = the bad ones
    results = pkl.drop(columns=["key", "good"]).assign(status="ok", classifier="labels")
    counts = evaluate([results], pkl, dataset).scores["labels"].counts
    assert (counts.tp, counts.tn, counts.fp, counts.fn) == (pkl["good"].sum(), (~pkl["good"]).sum(), 0, 0)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "labels_dict.pkl"
    crafted.write_bytes(
        pickle.dumps(
            {
                "a.mrc": ["no_film", "no_crack_drift", "not_crystalline", "minor_contamination"],
                "b.mrc": _Exploit(marker),
            }
        )
    )
    with pytest.raises(MiffiError, match="refusing to load .*system"):
        read_labels(crafted)
    assert not marker.exists()
    # opcodes that build other types (a tuple, a set) are built but then refused
    odd = tmp_path / "odd.pkl"
    odd.write_bytes(pickle.dumps({"a.mrc": ("no_film", "no_crack_drift", "not_crystalline", "minor_contamination")}))
    with pytest.raises(MiffiError, match="list of four label strings"):
        read_labels(odd)
    assert main(["evaluate", "--results", str(odd), "--labels", str(crafted), "--out", str(tmp_path / "e")]) == 2


def test_label_typo_lists_the_allowed_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "micrograph,film,drift,crystallinity,contamination\n"
        "a.mrc,no_film,no_crack_drift,not_crystalline,minor_contamination\n"
        "b.mrc,minor_flim,no_crack_drift,not_crystalline,minor_contamination\n"
    )
    with pytest.raises(
        MiffiError,
        match=r"labels.csv: micrograph 'b.mrc': film label 'minor_flim'.*allowed: "
        r"no_film, minor_film, major_film, film",
    ):
        read_labels(path)


def test_star_labels_four_columns_or_a_good_bad_column(tmp_path):
    frame = pd.DataFrame(
        {
            "rlnMicrographName": ["MotionCorr/job002/Movies/a.mrc", "MotionCorr/job002/Movies/b.mrc"],
            "rlnMiffiFilm": ["no_film", "major_film"],
            "rlnMiffiDrift": ["no_crack_drift"] * 2,
            "rlnMiffiCrystallinity": ["not_crystalline"] * 2,
            "rlnMiffiContamination": ["minor_contamination"] * 2,
            "rlnSelected": [1, 0],
        }
    )
    path = tmp_path / "selected.star"
    starfile.write({"micrographs": frame}, path)
    four = read_labels(path)
    assert four["good"].tolist() == [True, False] and four["key"].tolist() == ["a", "b"]
    single = read_labels(path, "rlnSelected")
    assert single["good"].tolist() == [True, False] and "film" not in single
    with pytest.raises(MiffiError, match="no column 'rlnNope'"):
        read_labels(path, "rlnNope")


def test_names_match_across_paths_and_suffixes():
    assert {
        name_key(n) for n in ["./Movies/a_001.mrc", "/data/x/a_001.mrc", "a_001.tiff", "a_001", "Movies\\a_001.mrc"]
    } == {"a_001"}
    labels = read_frame(pd.DataFrame([_row("./raw/a_001.mrc"), _row("b_002.tif"), _row("only_label.mrc")]))
    results = pd.DataFrame(
        {
            "micrograph": ["a_001", "b_002", "extra"],
            "path": ["/proj/MotionCorr/a_001.mrc", "/proj/MotionCorr/b_002.mrc", "/proj/extra.mrc"],
        }
    )
    joined, no_label, no_result = match_labels(results, labels)
    assert joined["micrograph"].tolist() == ["a_001", "b_002"]
    assert no_label == ["extra"] and no_result == ["only_label.mrc"]


def test_no_match_at_all_is_a_clear_error():
    labels = read_frame(pd.DataFrame([_row("x.mrc")]))
    with pytest.raises(MiffiError, match="no result matches a labelled micrograph"):
        evaluate([pd.DataFrame([_row("y")]).assign(status="ok")], labels, "none")


def test_method_names_say_which_model():
    from miffi.pipeline import method_name

    assert method_name(None) == "weight-free"
    assert method_name("models/miffi_v1.pt") == "model:miffi_v1.pt"
    assert method_name("results/models/demo_cnn/best.safetensors") == "model:demo_cnn/best.safetensors"
    assert method_name("runs/a/checkpoints/epoch_003.safetensors") == "model:a/epoch_003.safetensors"
