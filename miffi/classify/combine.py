"""Combining the squares of a micrograph into one label per group, and Miffi's categories.

Rules
-----
``miffi`` (default)
    Miffi's rule, ``0,111,010,222:2,111,010`` in its grammar: film → minor_film if any
    square says minor_film, else minor_film (confidence from no_film) if any says
    no_film, else major_film; crystallinity → minor_crystalline; drift and
    contamination → their first (good) label.
``strict``
    the worst label any square predicts (a group is bad if any square is bad).
``lenient``
    the best label any square predicts (a group is good if any square is good).
``mean``
    the argmax of the squares' mean probabilities.
a grammar string
    ``group,abc,abc:group,...``: for each group (0 film, 1 drift, 2 crystallinity,
    3 contamination) tokens ``abc`` are tried in order; ``abc`` means "if label ``a``
    is among the squares' predictions, the result is ``b``, with the confidence of the
    square with the highest probability for ``c``". A group not listed, or one whose
    tokens all fail, uses ``000``.

In every rule, when all squares agree, that label wins, with the confidence of the
square most sure of it. The probabilities kept for a group are those of that square
(``mean``: the mean over squares).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from miffi.classify import DEFAULT_THRESHOLD
from miffi.errors import SettingError
from miffi.labels import GOOD, GROUPS, LABELS, SLICES

GROUP_ORDER = tuple(GROUPS)
MIFFI_RULE = "0,111,010,222:2,111,010"
PRESETS = ("miffi", "strict", "lenient", "mean")
#: The confidence threshold of every group unless told otherwise.
PROBABILITY_COLUMNS = tuple(f"p_{label}" for label in LABELS)

#: A rule for one group: square probabilities ``[k, n]`` → (label index, probabilities kept).
GroupRule = Callable[[np.ndarray], tuple[int, np.ndarray]]


class RuleError(ValueError):
    """A combination rule that cannot be parsed; the message says where."""


def _most_sure(probs: np.ndarray, predicted: np.ndarray, label: int) -> np.ndarray:
    """Probabilities of the square most sure of ``label`` among those predicting it (else all)."""
    candidates = np.nonzero(predicted == label)[0]
    if candidates.size == 0:
        candidates = np.arange(len(probs))
    best: np.ndarray = probs[candidates[np.argmax(probs[candidates, label])]]
    return best


def _token_rule(tokens: list[tuple[int, int, int]]) -> GroupRule:
    def rule(probs: np.ndarray) -> tuple[int, np.ndarray]:
        predicted = probs.argmax(axis=1)
        if (predicted == predicted[0]).all():
            return int(predicted[0]), _most_sure(probs, predicted, int(predicted[0]))
        for present, result, confidence in [*tokens, (0, 0, 0)]:
            if present in predicted:
                return result, _most_sure(probs, predicted, confidence)
        return 0, _most_sure(probs, predicted, 0)

    return rule


def _extreme_rule(pick: Callable[[np.ndarray], int]) -> GroupRule:
    def rule(probs: np.ndarray) -> tuple[int, np.ndarray]:
        predicted = probs.argmax(axis=1)
        label = int(pick(predicted))
        return label, _most_sure(probs, predicted, label)

    return rule


def _mean_rule(probs: np.ndarray) -> tuple[int, np.ndarray]:
    mean = probs.mean(axis=0)
    return int(mean.argmax()), mean


def parse_rule(text: str) -> dict[str, list[tuple[int, int, int]]]:
    """Parse Miffi's grammar into tokens per group name, validating every part."""
    parsed: dict[str, list[tuple[int, int, int]]] = {}
    for part in text.strip().split(":"):
        if not re.fullmatch(r"\d+(,\d{3})*", part.strip()):
            raise RuleError(
                f"{text!r} is not a rule: malformed part {part!r} (a rule is a preset, "
                f"{', '.join(PRESETS)}, or Miffi's grammar 'group,abc,abc:...', e.g. {MIFFI_RULE!r})"
            )
        head, *tokens = part.strip().split(",")
        index = int(head)
        if index >= len(GROUP_ORDER):
            names = ", ".join(f"{i} {g}" for i, g in enumerate(GROUP_ORDER))
            raise RuleError(f"{text!r} is not a rule: unknown group {index} (groups: {names})")
        group = GROUP_ORDER[index]
        if group in parsed:
            raise RuleError(f"{text!r} is not a rule: group {index} ({group}) given twice")
        count = len(GROUPS[group])
        triples = []
        for token in tokens:
            digits = (int(token[0]), int(token[1]), int(token[2]))  # three digits: matched above
            bad = [d for d in digits if d >= count]
            if bad:
                raise RuleError(
                    f"{text!r} is not a rule: label {bad[0]} does not occur in group {index} ({group}: "
                    f"labels 0–{count - 1}: {', '.join(GROUPS[group])})"
                )
            triples.append(digits)
        parsed[group] = triples
    return parsed


def group_rules(rule: str = "miffi") -> dict[str, GroupRule]:
    """The rule for each group from a preset name or a grammar string."""
    if rule == "strict":
        return {g: _extreme_rule(np.max) for g in GROUPS}
    if rule == "lenient":
        return {g: _extreme_rule(np.min) for g in GROUPS}
    if rule == "mean":
        return {g: _mean_rule for g in GROUPS}
    tokens = parse_rule(MIFFI_RULE if rule == "miffi" else rule)
    return {g: _token_rule(tokens.get(g, [])) for g in GROUPS}


def combine(predictions: pd.DataFrame, rule: str = "miffi") -> pd.DataFrame:
    """Per-square probabilities (``micrograph``, ``square``, 11 labels) → one row per micrograph.

    Columns: ``micrograph``, ``squares``, the four group labels, and ``p_<label>``: the
    11 label probabilities each group kept (see the module docs). (Prefixed because
    the label ``film`` is also a group name.)
    """
    rules = group_rules(rule)
    # one array and the row range of each micrograph, not a pandas group per micrograph
    # (~1.3 ms each, measured at 2,000 micrographs, on every combine of the workflow)
    codes, micrographs = pd.factorize(predictions["micrograph"], sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(micrographs) + 1))
    probs = predictions[list(LABELS)].to_numpy(dtype=np.float64)[order]
    chosen = {group: np.zeros(len(micrographs), dtype=int) for group in GROUPS}
    kept = np.zeros((len(micrographs), len(LABELS)))
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        for group, group_rule in rules.items():
            chosen[group][i], kept[i, SLICES[group]] = group_rule(probs[start:stop, SLICES[group]])
    combined = pd.DataFrame({"micrograph": np.asarray(micrographs, dtype=object), "squares": np.diff(bounds)})
    for group, labels in GROUPS.items():
        combined[group] = np.asarray(labels, dtype=object)[chosen[group]]
    combined[list(PROBABILITY_COLUMNS)] = kept
    return combined


# --- categories --------------------------------------------------------------------------

CATEGORIES = (
    "good",
    "bad_film",
    "bad_drift",
    "bad_minor_crystalline",
    "bad_major_crystalline",
    "bad_contamination",
    "bad_multiple",
)
SINGLE_BAD = CATEGORIES[1:-1]


def check_threshold(value: str | float) -> float:
    """A confidence threshold: a number (or its text) in [0, 1]; NaN is refused too."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{value!r} is not a number") from None
    if not 0 <= number <= 1:
        raise SettingError(f"a confidence threshold must lie in [0, 1], got {value}")
    return number


def parse_thresholds(text: str | float) -> dict[str, float]:
    """Per-group thresholds from ``0.8`` (every group) or ``film=0.8,drift=0.9`` (the
    groups not named keep :data:`DEFAULT_THRESHOLD`)."""
    text = str(text).strip()
    if "=" not in text:
        return dict.fromkeys(GROUPS, check_threshold(text))
    values: dict[str, float] = {}
    for part in text.split(","):
        group, _, value = (piece.strip() for piece in part.partition("="))
        if group not in GROUPS:
            raise SettingError(f"{text!r}: unknown group {group!r} (groups: {', '.join(GROUPS)})")
        if group in values:
            raise SettingError(f"{text!r}: group {group!r} given twice")
        try:
            values[group] = check_threshold(value)
        except ValueError as exc:
            raise SettingError(f"{text!r}: {group}: {exc}") from None
    return {**dict.fromkeys(GROUPS, DEFAULT_THRESHOLD), **values}


@dataclass(frozen=True)
class CategorySettings:
    """Confidence thresholds and what counts as bad.

    ``good_threshold``: a good micrograph is low-confidence when any group's good
    probability is below it. ``bad_thresholds``: per group, a singly-bad micrograph
    is low-confidence below it. ``bad_crystallinity``: crystallinity labels that count
    as bad (Miffi: minor and major).
    """

    good_threshold: float = DEFAULT_THRESHOLD
    bad_thresholds: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(GROUPS, DEFAULT_THRESHOLD))
    bad_crystallinity: tuple[str, ...] = ("minor_crystalline", "major_crystalline")

    def __post_init__(self) -> None:
        unknown = set(self.bad_thresholds) - set(GROUPS) or set(self.bad_crystallinity) - set(GROUPS["crystallinity"])
        if unknown:
            raise SettingError(f"unknown group or label(s) in category settings: {sorted(unknown)}")
        for value in [self.good_threshold, *self.bad_thresholds.values()]:
            check_threshold(value)

    @classmethod
    def from_options(
        cls,
        good_threshold: float = DEFAULT_THRESHOLD,
        bad_thresholds: Mapping[str, float] | None = None,
        minor_crystalline_good: bool = False,
    ) -> CategorySettings:
        """The settings of ``--good-threshold``, ``--bad-threshold`` and ``--minor-crystalline-good``
        (without it minor crystalline ice counts as bad, as in Miffi)."""
        bad_crystallinity = (
            ("major_crystalline",) if minor_crystalline_good else ("minor_crystalline", "major_crystalline")
        )
        if bad_thresholds is None:
            bad_thresholds = dict.fromkeys(GROUPS, DEFAULT_THRESHOLD)
        return cls(good_threshold, bad_thresholds, bad_crystallinity)

    def good_labels(self, group: str) -> frozenset[str]:
        if group == "crystallinity":
            return frozenset(GROUPS[group]) - set(self.bad_crystallinity)
        return GOOD[group]


def categorise(combined: pd.DataFrame, settings: CategorySettings | None = None) -> pd.DataFrame:
    """Add per-group confidence, ``category``, ``confidence`` and ``confidence_level``.

    A group's confidence is the kept probability of its predicted class (the good
    labels, or the bad ones); for a singly-bad major_crystalline micrograph it is
    the probability of major_crystalline. ``category`` is ``good``, one of the
    ``bad_<group>`` categories when exactly one group is bad, or ``bad_multiple``.
    """
    settings = settings or CategorySettings()
    out = combined.copy()
    good = np.zeros((len(out), len(GROUPS)), dtype=bool)
    confidence = np.zeros((len(out), len(GROUPS)))
    for k, (group, labels) in enumerate(GROUPS.items()):
        good_set = settings.good_labels(group)
        good_cols = [f"p_{label}" for label in labels if label in good_set]
        bad_cols = [f"p_{label}" for label in labels if label not in good_set]
        good[:, k] = out[group].isin(good_set).to_numpy()
        confidence[:, k] = np.where(good[:, k], out[good_cols].sum(axis=1), out[bad_cols].sum(axis=1))
        out[f"{group}_confidence"] = confidence[:, k]
    bad = ~good
    thresholds = np.array([settings.bad_thresholds.get(g, DEFAULT_THRESHOLD) for g in GROUPS])
    bad_count = bad.sum(axis=1)
    single, some = bad_count == 1, bad_count > 0
    crystal = out["crystallinity"].to_numpy(dtype=object)
    first_bad = bad.argmax(axis=1)
    crystallinity = GROUP_ORDER.index("crystallinity")
    in_crystallinity = first_bad == crystallinity
    # a singly-bad major_crystalline micrograph is as sure as P(major_crystalline) alone
    major = single & in_crystallinity & (crystal == "major_crystalline")
    p_major = out["p_major_crystalline"].to_numpy(dtype=np.float64)
    least_sure_bad = np.where(major, p_major, np.where(bad, confidence, np.inf).min(axis=1))
    unsure_bad = np.where(major, p_major < thresholds[crystallinity], (bad & (confidence < thresholds)).any(axis=1))
    least_sure_good = confidence.min(axis=1)
    single_name = np.where(
        in_crystallinity, "bad_" + crystal, "bad_" + np.asarray(GROUP_ORDER, dtype=object)[first_bad]
    )
    out["bad_groups"] = bad_count
    out["category"] = np.select([~some, single], ["good", single_name], "bad_multiple").astype(object)
    out["confidence"] = np.where(some, least_sure_bad, least_sure_good)
    out["confidence_level"] = np.where(
        np.where(some, unsure_bad, least_sure_good < settings.good_threshold), "low", "high"
    ).astype(object)
    return out
