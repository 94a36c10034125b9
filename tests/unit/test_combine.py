"""Combining squares (every branch of Miffi's rule, the grammar, presets) and categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miffi.classify.combine import (
    DEFAULT_THRESHOLD,
    CategorySettings,
    RuleError,
    categorise,
    combine,
    group_rules,
    parse_rule,
    parse_thresholds,
)
from miffi.labels import GROUPS, LABELS

GOOD_SQUARE = {
    "film": [0.9, 0.05, 0.03, 0.02],
    "drift": [0.95, 0.05],
    "crystallinity": [0.9, 0.07, 0.03],
    "contamination": [0.97, 0.03],
}


def squares(*per_square: dict, micrograph: str = "m") -> pd.DataFrame:
    """Per-square probability rows; each square overrides groups of GOOD_SQUARE."""
    rows = []
    for i, overrides in enumerate(per_square):
        probs = {**GOOD_SQUARE, **overrides}
        rows.append({"micrograph": micrograph, "square": i, **dict(zip(LABELS, sum(probs.values(), [])))})
    return pd.DataFrame(rows)


def one(frame: pd.DataFrame, rule: str = "miffi") -> pd.Series:
    return combine(frame, rule).iloc[0]


FILM = {  # square distributions that predict each film label
    "no_film": [0.8, 0.1, 0.05, 0.05],
    "minor_film": [0.1, 0.8, 0.05, 0.05],
    "major_film": [0.05, 0.1, 0.8, 0.05],
    "film": [0.05, 0.05, 0.1, 0.8],
}


@pytest.mark.parametrize(
    ("film_squares", "label", "confidence_from"),
    [
        (["minor_film", "major_film"], "minor_film", ("minor_film", 0)),  # any minor → minor
        (["major_film", "minor_film", "no_film"], "minor_film", ("minor_film", 1)),
        (["no_film", "major_film"], "minor_film", ("no_film", 0)),  # any no_film → minor, conf of no_film
        (["film", "no_film"], "minor_film", ("no_film", 1)),
        (["major_film", "film"], "major_film", ("major_film", 0)),  # else major
        (["film", "film"], "film", ("film", 0)),  # all agree
        (["no_film", "no_film"], "no_film", ("no_film", 0)),
    ],
)
def test_default_rule_film_branches(film_squares, label, confidence_from):
    frame = squares(*[{"film": FILM[name]} for name in film_squares])
    result = one(frame)
    assert result["film"] == label
    kept = [result[f"p_{name}"] for name in GROUPS["film"]]
    assert kept == pytest.approx(FILM[confidence_from[0]])


def test_default_rule_picks_the_most_confident_square():
    sure = [0.02, 0.95, 0.02, 0.01]
    frame = squares({"film": FILM["minor_film"]}, {"film": sure}, {"film": FILM["major_film"]})
    assert one(frame)["p_minor_film"] == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("crystal_squares", "label", "kept"),
    [
        ([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05]], "minor_crystalline", [0.1, 0.8, 0.1]),
        ([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]], "minor_crystalline", [0.8, 0.1, 0.1]),  # conf of not_crystalline
        ([[0.1, 0.1, 0.8], [0.1, 0.2, 0.7]], "major_crystalline", [0.1, 0.1, 0.8]),
    ],
)
def test_default_rule_crystallinity_branches(crystal_squares, label, kept):
    result = one(squares(*[{"crystallinity": c} for c in crystal_squares]))
    assert result["crystallinity"] == label
    assert [result[f"p_{n}"] for n in GROUPS["crystallinity"]] == pytest.approx(kept)


@pytest.mark.parametrize("group", ["drift", "contamination"])
def test_default_rule_binary_groups_take_the_good_label(group):
    bad, good = [0.2, 0.8], [0.6, 0.4]
    result = one(squares({group: bad}, {group: good}))
    assert result[group] == GROUPS[group][0]
    assert result[f"p_{GROUPS[group][0]}"] == pytest.approx(0.6)


def test_grammar_equals_default_and_custom_tokens():
    frame = squares(
        {"film": FILM["no_film"]},
        {"film": FILM["major_film"]},
        {"crystallinity": [0.1, 0.1, 0.8]},
        {"drift": [0.1, 0.9]},
    )
    pd.testing.assert_frame_equal(combine(frame, "miffi"), combine(frame, "0,111,010,222:2,111,010"))
    # drift: any crack_drift_empty → crack_drift_empty; film: any major → major
    custom = one(frame, "1,111:0,222")
    assert custom["drift"] == "crack_drift_empty" and custom["film"] == "major_film"
    assert custom["crystallinity"] == "not_crystalline"  # not listed: 000


def test_grammar_token_without_a_square_of_the_confidence_label():
    # "022": if no_film present → major_film with the confidence of major_film, which no square predicts
    frame = squares({"film": FILM["no_film"]}, {"film": FILM["minor_film"]})
    result = one(frame, "0,022")
    assert result["film"] == "major_film"
    assert result["p_major_film"] == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("7,000", "unknown group 7"),
        ("0,11", "malformed part"),
        ("0,111;2,111", "malformed part"),
        ("film,111", "malformed part"),
        ("1,222", "label 2 does not occur in group 1 \\(drift"),
        ("0,414", "label 4 does not occur in group 0 \\(film"),
        ("0,111:0,222", "given twice"),
        ("strictt", "'strictt' is not a rule: malformed part 'strictt' \\(a rule is a preset, miffi, strict"),
        ("", "malformed part ''"),
    ],
)
def test_grammar_errors(rule, message):
    with pytest.raises(RuleError, match=message):
        group_rules(rule)


def test_parse_thresholds():
    assert parse_thresholds("0.8") == parse_thresholds(0.8) == dict.fromkeys(GROUPS, 0.8)
    assert parse_thresholds(" film = 0.9, drift=1 ") == {
        **dict.fromkeys(GROUPS, DEFAULT_THRESHOLD),
        "film": 0.9,
        "drift": 1.0,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flim=0.8", "'flim=0.8': unknown group 'flim' \\(groups: film, drift, crystallinity, contamination\\)"),
        ("0.8,film=0.9", "unknown group '0.8'"),
        ("film=0.8,film=0.9", "group 'film' given twice"),
        ("film=", "'film=': film: '' is not a number"),
        ("high", "'high' is not a number"),
        ("1.5", "must lie in \\[0, 1\\], got 1.5"),
        ("drift=-0.1", "drift: a confidence threshold must lie in \\[0, 1\\], got -0.1"),
        ("nan", "got nan"),
        ("inf", "got inf"),
    ],
)
def test_threshold_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_thresholds(text)


def test_parse_rule():
    assert parse_rule("0,111,010,222:2,111,010") == {
        "film": [(1, 1, 1), (0, 1, 0), (2, 2, 2)],
        "crystallinity": [(1, 1, 1), (0, 1, 0)],
    }


def test_presets_strict_lenient_mean():
    frame = squares(
        {"film": FILM["no_film"], "drift": [0.9, 0.1]},
        {"film": FILM["major_film"], "drift": [0.45, 0.55]},
        {"film": FILM["minor_film"], "drift": [0.9, 0.1]},
    )
    strict, lenient, mean = one(frame, "strict"), one(frame, "lenient"), one(frame, "mean")
    assert (strict["film"], strict["drift"]) == ("major_film", "crack_drift_empty")
    assert (lenient["film"], lenient["drift"]) == ("no_film", "no_crack_drift")
    assert mean["drift"] == "no_crack_drift"
    assert mean["p_no_crack_drift"] == pytest.approx((0.9 + 0.45 + 0.9) / 3)
    assert mean["film"] == "minor_film"  # means: no 0.317, minor 0.333, major 0.317, film 0.033


def _categorised(**groups):
    frame = squares(groups)
    return categorise(combine(frame)).iloc[0]


def test_categories():
    good = _categorised()
    assert good["category"] == "good" and good["confidence_level"] == "high"
    assert good["film_confidence"] == pytest.approx(0.95)  # no_film + minor_film
    assert _categorised(film=FILM["major_film"])["category"] == "bad_film"
    assert _categorised(drift=[0.2, 0.8])["category"] == "bad_drift"
    assert _categorised(crystallinity=[0.1, 0.8, 0.1])["category"] == "bad_minor_crystalline"
    major = _categorised(crystallinity=[0.1, 0.15, 0.75])
    assert major["category"] == "bad_major_crystalline"
    assert major["confidence"] == pytest.approx(0.75)  # P(major) alone
    assert _categorised(contamination=[0.1, 0.9])["category"] == "bad_contamination"
    assert _categorised(film=FILM["film"], drift=[0.2, 0.8])["category"] == "bad_multiple"


def test_confidence_levels_and_thresholds():
    unsure_good = _categorised(drift=[0.6, 0.4])
    assert unsure_good["category"] == "good" and unsure_good["confidence_level"] == "low"
    unsure_bad = _categorised(contamination=[0.35, 0.65])
    assert unsure_bad["confidence_level"] == "low"
    lenient = CategorySettings(bad_thresholds={g: 0.6 for g in GROUPS})
    frame = squares({"contamination": [0.35, 0.65]})
    assert categorise(combine(frame), lenient).iloc[0]["confidence_level"] == "high"


def test_minor_crystalline_as_good_is_a_setting():
    frame = squares({"crystallinity": [0.1, 0.8, 0.1]})
    settings = CategorySettings(bad_crystallinity=("major_crystalline",))
    row = categorise(combine(frame), settings).iloc[0]
    assert row["category"] == "good"
    assert row["crystallinity_confidence"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown"):
        CategorySettings(bad_crystallinity=("very",))


def test_many_micrographs_keep_their_order():
    frame = pd.concat([squares({}, micrograph="b"), squares({"film": FILM["film"]}, {}, micrograph="a")])
    out = combine(frame)
    assert out["micrograph"].tolist() == ["b", "a"]
    assert out["squares"].tolist() == [1, 2]
    assert np.isclose(out[[f"p_{label}" for label in GROUPS["drift"]]].sum(axis=1), 1).all()


def test_each_micrograph_is_combined_and_categorised_on_its_own():
    """One table of micrographs of every category, squares interleaved, gives each the
    row it gets alone (the arrays over all micrographs keep them apart)."""
    cases = {
        "good": [{}],
        "unsure_good": [{"drift": [0.6, 0.4]}, {}],
        "film": [{"film": FILM["major_film"]}, {"film": FILM["film"]}],
        "minor_ice": [{"crystallinity": [0.1, 0.8, 0.1]}, {}],
        "major_ice": [{"crystallinity": [0.1, 0.15, 0.75]}],
        "unsure_contamination": [{"contamination": [0.35, 0.65]}],
        "multiple": [{"film": FILM["film"], "drift": [0.45, 0.55]}],
    }
    frames = [squares(*per_square, micrograph=name) for name, per_square in cases.items()]
    interleaved = pd.concat(frames).sort_values("square", kind="stable")
    together = categorise(combine(interleaved)).set_index("micrograph")
    assert together.index.tolist() == list(cases)  # the order of first appearance
    for name, frame in zip(cases, frames):
        alone = categorise(combine(frame)).set_index("micrograph").loc[name]
        pd.testing.assert_series_equal(together.loc[name], alone, check_names=False)
    assert together.loc["multiple", "category"] == "bad_multiple"
    assert together.loc["multiple", "confidence"] == pytest.approx(0.55)  # the least sure bad group
    assert together.loc["multiple", "confidence_level"] == "low"
    assert together.loc["major_ice", "confidence"] == pytest.approx(0.75)
