"""A weight-free classifier: the four Miffi groups from the interpretable metrics.

It turns each square's metrics (:mod:`miffi.preprocess.metrics`) into probabilities for the 11
labels, like a CNN would, so combining squares, categories and exports work the same.
Each decision is a logistic step ``σ((metric − threshold) / width)`` on one metric; the
thresholds live in :class:`WeightFreeThresholds` and were fitted on simulated data
(``scripts/fit_weightfree.py``; values and accuracy in the README).

- drift (crack_drift_empty): anisotropic spectrum (drift), a flat spectrum (empty
  hole), or a bright band (the gap of a crack);
- contamination: major when dark objects cover more than a fraction of the area;
- crystallinity: sharp radial peaks at the ice spacings (minor / major by strength);
- film: a two-region split (an edge) whose darker part is small (minor) or large
  (major); film everywhere when the low-resolution spectrum is strong (carbon) without
  contamination to explain it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from miffi.errors import SettingError
from miffi.labels import LABELS
from miffi.preprocess.config import reject_unknown_fields


def _step(value: float, threshold: float, width: float) -> float:
    """Probability that ``value`` is above ``threshold`` (logistic, ``width`` wide)."""
    if np.isnan(value):
        return 0.0
    return float(1.0 / (1.0 + np.exp(-(value - threshold) / width)))


@dataclass(frozen=True)
class WeightFreeThresholds:
    """Metric thresholds of the weight-free classifier (defaults fitted on simulated data)."""

    drift_anisotropy: float = 0.5
    empty_flatness: float = 2.2
    crack_bright_fraction: float = 0.005
    contamination_dark_fraction: float = 0.15  # fitted on simulation: 0.27; see the README
    crystal_minor_peak: float = 1.475
    crystal_major_peak: float = 1.95
    film_edge_separation: float = 6.0
    film_minor_coverage: float = 0.1
    film_flatness: float = 5.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> WeightFreeThresholds:
        reject_unknown_fields(cls, dict(values), "weight-free threshold(s)")
        numbers = {}
        for key, value in values.items():
            try:
                numbers[key] = float(value)
            except (TypeError, ValueError):
                numbers[key] = math.nan
            if isinstance(value, bool) or not math.isfinite(numbers[key]):
                raise SettingError(f"threshold {key}: {value!r} is not a finite number")
        return cls(**numbers)

    @classmethod
    def from_file(cls, path: str | Path) -> WeightFreeThresholds:
        """The thresholds in a YAML file (any subset of the fields; the rest keep their
        defaults); an unknown key or a value that is not a number names the file."""
        from miffi.errors import InputError
        from miffi.textfiles import read_yaml_mapping

        try:
            return cls.from_mapping(read_yaml_mapping(path, "weight-free thresholds file"))
        except (ValueError, TypeError) as exc:
            raise InputError(path, str(exc)) from None


def square_probabilities(m: Mapping[str, float], t: WeightFreeThresholds) -> np.ndarray:
    """The 11 label probabilities (model output order) for one square's metrics."""
    contaminated = _step(m["dark_fraction"], t.contamination_dark_fraction, 0.02)
    drifted = max(
        _step(m["anisotropy"], t.drift_anisotropy, 0.04),
        _step(-m["flatness"], -t.empty_flatness, 0.1),
        _step(m["bright_fraction"], t.crack_bright_fraction, 0.005),
    )
    major = _step(m["ice_peak"], t.crystal_major_peak, 0.05)
    minor = _step(m["ice_peak"], t.crystal_minor_peak, 0.04) * (1 - major)
    full_film = _step(m["flatness"], t.film_flatness, 0.4) * (1 - contaminated)
    edge = _step(m["two_region"], t.film_edge_separation, 0.3) * (1 - full_film)
    small = _step(-m["dark_region_fraction"], -t.film_minor_coverage, 0.03)
    film = [(1 - edge) * (1 - full_film), edge * small, edge * (1 - small), full_film]
    return np.asarray(
        [*film, 1 - drifted, drifted, 1 - minor - major, minor, major, 1 - contaminated, contaminated], dtype=np.float64
    )


def predict_metrics(
    square_metrics: Mapping[str, Sequence[Mapping[str, float]]],
    thresholds: WeightFreeThresholds | None = None,
) -> pd.DataFrame:
    """Per-square probabilities, in the layout of :func:`miffi.classify.inference.predict`."""
    thresholds = thresholds or WeightFreeThresholds()
    rows = [
        {"micrograph": micrograph, "square": i, **dict(zip(LABELS, square_probabilities(m, thresholds)))}
        for micrograph, squares in square_metrics.items()
        for i, m in enumerate(squares)
    ]
    return pd.DataFrame(rows, columns=["micrograph", "square", *LABELS])
