"""The review app's core: decision files, the orders, uncertainty, overrides and pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miffi.errors import InputError, OutputError
from miffi.evaluate.label_files import read_labels
from miffi.export.overrides import apply_overrides, final_category, read_overrides
from miffi.labels import GROUPS, LABELS
from miffi.report.images import GAP, grey, tensor_views
from miffi.review.decisions import label_file, override_file
from miffi.review.order import order_of, square_disagreement, uncertainty


def test_labels_file_is_what_evaluate_reads_and_survives_a_restart(tmp_path):
    path = tmp_path / "labels.csv"
    labels = label_file(path)
    bad = {"film": "major_film", "drift": "no_crack_drift", "crystallinity": "not_crystalline",
           "contamination": "minor_contamination", "labelled_at": "t1"}  # fmt: skip
    good = {**bad, "film": "no_film", "labelled_at": "t2"}
    labels.update({'a, odd "name"': bad, "NA": good})
    assert path.is_file()
    again = label_file(path)  # a restarted server
    assert again.rows == labels.rows
    read = read_labels(path).set_index("micrograph")
    assert read.loc["NA", "good"] and not read.loc['a, odd "name"', "good"]
    assert read.loc['a, odd "name"', "film"] == "major_film"
    again.update({"NA": None})
    assert list(label_file(path).keys()) == ['a, odd "name"']


def test_a_file_of_something_else_is_refused_not_rewritten(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("micrograph,good\nx,1\n")
    with pytest.raises(
        InputError, match=r"mine.csv: is not a file this command writes: its columns are micrograph, good"
    ):
        label_file(path)
    assert path.read_text() == "micrograph,good\nx,1\n"


def test_a_failed_write_leaves_file_and_memory_as_they_were(tmp_path):
    folder = tmp_path / "decisions"
    overrides = override_file(folder / "overrides.tsv")
    overrides.update({"m1": {"category_override": "good", "override_source": "me"}})
    folder.rename(tmp_path / "kept")
    folder.write_text("a file where the folder was")  # every write into it now fails
    with pytest.raises(OutputError, match="decisions"):
        overrides.update({"m2": {"category_override": "bad_film", "override_source": "me"}})
    assert list(overrides.keys()) == ["m1"]  # memory does not claim what the disk lacks
    assert read_overrides(tmp_path / "kept" / "overrides.tsv")["micrograph"].tolist() == ["m1"]


def results_frame():
    return pd.DataFrame(
        {
            "micrograph": ["a", "b", "c", "d"],
            "status": ["cached", "cached", "failed", "cached"],
            "category": ["good", "bad_film", None, "good"],
            "wf_category": ["good", "good", None, "good"],
            "confidence": [0.9, 0.8, np.nan, 0.6],
        }
    )


def test_uncertainty_adds_doubt_from_confidence_methods_and_squares():
    results = results_frame()
    squares = []
    for micrograph, film in [("a", [0, 0]), ("b", [0, 0]), ("d", [0, 3])]:  # d's squares disagree on film
        for square, label in enumerate(film):
            probabilities = np.zeros(len(LABELS))
            for group, labels in GROUPS.items():
                probabilities[LABELS.index(labels[label if group == "film" else 0])] = 1.0
            squares.append({"micrograph": micrograph, "square": square, **dict(zip(LABELS, probabilities))})
    predictions = pd.DataFrame(squares)
    spread = square_disagreement(predictions)
    assert spread.to_dict() == {"a": 0.0, "b": 0.0, "d": pytest.approx(0.5 / 4)}
    doubt = uncertainty(results, predictions)
    assert doubt.iloc[0] == pytest.approx(0.1)
    assert doubt.iloc[1] == pytest.approx(0.2 + 1.0)  # the model and the weight-free classifier disagree
    assert np.isnan(doubt.iloc[2])
    assert doubt.iloc[3] == pytest.approx(0.4 + 0.125)
    assert order_of(results, "uncertain", doubt) == [1, 3, 0, 2]  # the failed one last


def test_orders_and_overrides_decide_the_category_order(caplog):
    results = results_frame()
    assert order_of(results, "acquisition") == [0, 1, 2, 3]
    assert order_of(results, "category") == [0, 3, 1, 2]
    overrides = pd.DataFrame(
        {"micrograph": ["a", "c", "zz"], "category_override": ["bad_drift", "good", "good"], "override_source": "me"}
    )
    overridden = apply_overrides(results, overrides)
    assert final_category(overridden).fillna("").tolist() == ["bad_drift", "bad_film", "", "good"]  # c failed
    assert overridden["override_source"].fillna("").tolist() == ["me", "", "", ""]
    assert "1 override(s) name micrographs this run does not hold, left out: zz" in caplog.text
    assert order_of(overridden, "category") == [3, 1, 0, 2]
    assert apply_overrides(results, None)["category_override"].isna().all()
    with pytest.raises(ValueError, match="unknown order"):
        order_of(results, "random")


def test_overrides_file_is_checked(tmp_path):
    path = tmp_path / "o.tsv"
    path.write_text("micrograph\tcategory_override\nNA\tgood\nx\tbad_flim\n")
    with pytest.raises(InputError, match=r"micrograph 'x': 'bad_flim' is not a category \(categories: good, bad_film"):
        read_overrides(path)
    path.write_text("micrograph\tcategory_override\nNA\tgood\n")
    table = read_overrides(path)
    assert table.to_dict("records") == [
        {"micrograph": "NA", "category_override": "good", "override_source": "file:o.tsv"}
    ]


def test_tensor_views_show_what_the_model_sees():
    tensor = np.zeros((2, 2, 8, 8), np.float32)
    tensor[0, 0] = -2.5
    tensor[1, 1] = 2.5
    image, spectrum = tensor_views(tensor)
    assert image.shape == spectrum.shape == (8, 16 + GAP)
    assert (image[:, :8] == 0).all() and (image[:, 8 : 8 + GAP] == 255).all() and (image[:, -8:] == 127).all()
    assert (spectrum[:, -8:] == 255).all()
    assert grey(np.array([-10.0, 0.0, 10.0])).tolist() == [0, 127, 255]
