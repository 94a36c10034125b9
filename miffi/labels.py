"""The four Miffi label groups, their labels in output order, and which labels are good."""

from __future__ import annotations

#: Label groups in the order of the published models' 11 outputs.
GROUPS: dict[str, tuple[str, ...]] = {
    "film": ("no_film", "minor_film", "major_film", "film"),
    "drift": ("no_crack_drift", "crack_drift_empty"),
    "crystallinity": ("not_crystalline", "minor_crystalline", "major_crystalline"),
    "contamination": ("minor_contamination", "major_contamination"),
}

#: Labels that count as good in each group (film: no or minor film).
GOOD: dict[str, frozenset[str]] = {
    "film": frozenset({"no_film", "minor_film"}),
    "drift": frozenset({"no_crack_drift"}),
    "crystallinity": frozenset({"not_crystalline"}),
    "contamination": frozenset({"minor_contamination"}),
}


def is_good(labels: dict[str, str]) -> bool:
    """A micrograph is good when every group's label is good."""
    return all(labels[group] in GOOD[group] for group in GROUPS)


#: All labels in model-output order: the column names of per-square probabilities.
LABELS: tuple[str, ...] = tuple(label for labels in GROUPS.values() for label in labels)

#: Slice of each group within the 11 outputs.
SLICES: dict[str, slice] = {}
_start = 0
for _group, _labels in GROUPS.items():
    SLICES[_group] = slice(_start, _start + len(_labels))
    _start += len(_labels)
