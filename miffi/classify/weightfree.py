"""A weight-free classifier: the four Miffi groups from the interpretable metrics.

It turns each square's metrics (:mod:`miffi.preprocess.metrics`) into probabilities for the 11
labels, like a CNN would, so combining squares, categories and exports work the same.
Each decision is a logistic step ``σ((metric − threshold) / width)`` on one metric; the
thresholds live in :class:`WeightFreeThresholds` and were fitted on simulated data
(``scripts/fit_weightfree.py``; values and accuracy in docs/metrics.md).

Its confidence is calibrated to what it can know: no decision is surer than ``SUREST``;
a metric it cannot compute (NaN: beyond the micrograph's Nyquist frequency, or a
pixel size that is only a header's default) gives ``UNKNOWN`` — no evidence, leaning to
no defect; and a value outside the range the thresholds were fitted on
(``FITTED_RANGE``) fades its decision towards ``UNKNOWN``. Out of its range, the
classifier says it does not know (low confidence) instead of calling at 0.99.

- drift (crack_drift_empty): anisotropic spectrum, or Thon rings that fit far better
  along one direction (drift); no Thon rings at all (an empty hole: physics, whatever
  the dataset), or without a CTF fit a flat spectrum; a bright band (the gap of a crack);
- contamination: major when dark objects cover more than a fraction of the area;
- crystallinity: lattice spots on the ice-spacing rings against their surroundings, or
  sharp radial peaks there (minor / major by the peaks' strength);
- film: a support-film edge crossing the view, whose film side is small (minor) or
  large (major); film everywhere when the low-resolution spectrum is strong (carbon) without
  contamination to explain it, and no edge (a hole on one side).
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
from miffi.preprocess.metric_names import CTF_METRICS, SPECTRAL_METRICS

#: Bump when the classifier's rules change: stored predictions of another version are remade.
VERSION = 4
#: What a decision is worth when its metric is unknown (NaN: beyond the micrograph's
#: Nyquist frequency, or a pixel size that is a header's default): no evidence either way,
#: leaning to no defect (most micrographs of a session have none) but never confidently.
UNKNOWN = 0.4
#: No decision is surer than this: the metrics are physics proxies fitted on simulated
#: data, not a model of every detector and specimen.
SUREST = 0.97
#: The film's side of an edge is taken to be the darker one (carbon and the ice on it
#: scatter more), or the more finely textured one, which a hole of thick ice beside thin
#: carbon can invert: minor versus major film is never decided surer than this.
SIDE_SUREST = 0.85
#: Thresholds that are not physics, with their metric and whether bad is above: decided
#: against the dataset instead when the dataset's median lies beyond them
#: (:func:`shifted_thresholds`). Thon rings, lattice spots and film edges are absolute.
RELATIVE: dict[str, tuple[str, bool]] = {
    "contamination_dark_fraction": ("dark_fraction", True),
    "drift_anisotropy": ("anisotropy", True),
    "crack_bright_fraction": ("bright_fraction", True),
    "crystal_minor_peak": ("ice_peak", True),
    "crystal_major_peak": ("ice_peak", True),
    "film_flatness": ("flatness", True),
}
#: A dataset reference needs this many micrographs; an outlier lies this many robust
#: standard deviations beyond the median; a dataset-relative decision is at most this sure.
MIN_REFERENCE, OUTLIER_Z, RELATIVE_SUREST = 20, 3.5, 0.75
#: Where each metric lay on the simulated squares the thresholds were fitted on (0.5th to
#: 99.5th percentile, ``scripts/fit_weightfree.py``). A value beyond this range is
#: outside what the thresholds know: decisions drawn from it fade towards UNKNOWN, by
#: ``exp(-2 · distance beyond the range / its width)``.
FITTED_RANGE: dict[str, tuple[float, float]] = {
    "water_ring": (0.8188, 8.0689),
    "ice_peak": (1.0121, 22.4339),
    "ice_lattice": (1.2, 130.0),
    "anisotropy": (0.0339, 0.7515),
    "flatness": (1.0311, 10.9822),
    "thon_anisotropy": (0.0, 0.9162),
    "thon_rings": (0.1636, 0.9534),
    "dark_fraction": (0.0, 0.433),
    "bright_fraction": (0.0, 0.2188),
    "film_edge": (0.0, 1.4097),
    "film_side_fraction": (0.0368, 0.8361),
}


def _trust(metric: str, value: float) -> float:
    """How much a decision drawn from ``metric`` at ``value`` is worth, in [0, 1]."""
    if not math.isfinite(value):
        return 0.0
    low, high = FITTED_RANGE.get(metric, (-math.inf, math.inf))
    width = high - low if math.isfinite(high - low) and high > low else 1.0
    beyond = max(0.0, (value - high) / width, (low - value) / width)
    return math.exp(-2.0 * beyond)


def _decide(
    m: Mapping[str, float],
    metric: str,
    threshold: float,
    width: float,
    above: bool = True,
    reference: tuple[float, float] | None = None,
) -> float:
    """Calibrated probability that ``metric`` is above (or below) ``threshold``: a logistic
    step ``width`` wide, kept within [1 − SUREST, SUREST] and faded towards UNKNOWN as the
    value leaves the range it was fitted on. With a dataset ``reference`` (median, robust
    spread: the dataset is shifted past the threshold, see :func:`shifted_thresholds`),
    the decision is instead whether the value is an outlier of its dataset, at most
    RELATIVE_SUREST sure."""
    value = float(m.get(metric, math.nan))
    if reference is not None:
        if not math.isfinite(value):
            return UNKNOWN
        median, spread = reference
        z = ((value - median) if above else (median - value)) / spread - OUTLIER_Z
        p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        return min(RELATIVE_SUREST, max(1.0 - RELATIVE_SUREST, p))
    trust = _trust(metric, value)
    if trust == 0.0:
        return UNKNOWN
    z = (value - threshold) / width if above else (threshold - value) / width
    p = min(SUREST, max(1.0 - SUREST, 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))))
    return UNKNOWN + trust * (p - UNKNOWN)


@dataclass(frozen=True)
class WeightFreeThresholds:
    """Metric thresholds of the weight-free classifier (defaults fitted on simulated data)."""

    drift_anisotropy: float = 0.575
    drift_ring_anisotropy: float = 0.3
    empty_thon_rings: float = 0.3
    empty_flatness: float = 1.1
    crack_bright_fraction: float = 0.005
    contamination_dark_fraction: float = 0.15  # fitted on simulation: 0.27; see the README
    crystal_lattice: float = 2.4
    crystal_minor_peak: float = 1.95
    crystal_major_peak: float = 1.95
    film_edge_length: float = 0.3
    film_minor_coverage: float = 0.125
    film_flatness: float = 7.0

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


def _empty(m: Mapping[str, float], t: WeightFreeThresholds) -> float:
    """An empty hole: no Thon rings where the fit could look for them (physics: without a
    specimen nothing scatters), else a flat spectrum."""
    if math.isfinite(m.get("thon_rings", math.nan)):
        return _decide(m, "thon_rings", t.empty_thon_rings, 0.03, above=False)
    return _decide(m, "flatness", t.empty_flatness, 0.1, above=False)


def square_probabilities(
    m: Mapping[str, float], t: WeightFreeThresholds, shifted: Mapping[str, tuple[float, float]] | None = None
) -> np.ndarray:
    """The 11 label probabilities (model output order) for one square's metrics;
    ``shifted``: the dataset references of thresholds its dataset lies beyond
    (:func:`shifted_thresholds`)."""
    shifted = shifted or {}
    contaminated = _decide(
        m, "dark_fraction", t.contamination_dark_fraction, 0.02, reference=shifted.get("contamination_dark_fraction")
    )
    cracked = _decide(
        m, "bright_fraction", t.crack_bright_fraction, 0.005, reference=shifted.get("crack_bright_fraction")
    )
    drifted = max(
        _decide(m, "anisotropy", t.drift_anisotropy, 0.04, reference=shifted.get("drift_anisotropy")),
        _decide(m, "thon_anisotropy", t.drift_ring_anisotropy, 0.05),
        cracked,
        _empty(m, t),
    )
    major = _decide(m, "ice_peak", t.crystal_major_peak, 0.05, reference=shifted.get("crystal_major_peak"))
    lattice = m.get("ice_lattice", math.nan)
    spots = _decide(m, "ice_lattice", t.crystal_lattice, 0.05) if math.isfinite(lattice) else UNKNOWN
    minor = _decide(m, "ice_peak", t.crystal_minor_peak, 0.04, reference=shifted.get("crystal_minor_peak"))
    crystalline = max(spots, minor, major)
    # the gap of a crack, or a large contaminant, also draws an edge across the view: one
    # that is called (more likely than not) makes an edge found no evidence either way
    explained = max(0.0, 2 * max(cracked, contaminated) - 1)
    edge = _decide(m, "film_edge", t.film_edge_length, 0.05)
    edge = (1 - explained) * edge + explained * min(edge, UNKNOWN)
    # an edge across the view has a hole on one side: the view is not all film
    full_film = (
        _decide(m, "flatness", t.film_flatness, 0.4, reference=shifted.get("film_flatness"))
        * (1 - contaminated)
        * (1 - edge)
    )
    small = min(SIDE_SUREST, max(1 - SIDE_SUREST, _decide(m, "film_side_fraction", t.film_minor_coverage, 0.05, False)))
    rest = 1 - full_film
    film = [rest * (1 - edge), rest * edge * small, rest * edge * (1 - small), full_film]
    return np.asarray(
        [*film, 1 - drifted, drifted, 1 - crystalline, crystalline - major, major, 1 - contaminated, contaminated],
        dtype=np.float64,
    )


def without_spectra(squares: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Squares' metrics with the spectral ones unknown (NaN): for a micrograph whose pixel
    size is not known, they measure unknown frequencies."""
    spectral = set(SPECTRAL_METRICS) | set(CTF_METRICS)
    return [{k: (math.nan if k in spectral else v) for k, v in square.items()} for square in squares]


def shifted_thresholds(
    square_metrics: Mapping[str, Sequence[Mapping[str, float]]], thresholds: WeightFreeThresholds
) -> dict[str, tuple[float, float]]:
    """The thresholds that the typical micrograph of this dataset lies beyond, with the
    dataset's reference for their metric: ``{threshold: (median, robust spread)}`` over
    all squares (datasets of at least MIN_REFERENCE micrographs; else none).

    A session shares detector, dose and optics. When its median square is past a
    threshold that is not physics (RELATIVE), the metric reads this session differently
    from the simulation it was fitted on, or the whole session is bad: either way the
    threshold is no guide, and decisions drawn from it become dataset-relative (outliers
    of the session, at most RELATIVE_SUREST sure).
    """
    if len(square_metrics) < MIN_REFERENCE:
        return {}
    references: dict[str, tuple[float, float] | None] = {}
    for metric, _ in RELATIVE.values():
        values = np.array([float(s.get(metric, math.nan)) for squares in square_metrics.values() for s in squares])
        values = values[np.isfinite(values)]
        median = float(np.median(values)) if values.size >= MIN_REFERENCE else math.nan
        spread = 1.4826 * float(np.median(np.abs(values - median))) if math.isfinite(median) else math.nan
        references[metric] = (median, max(spread, 1e-3 * abs(median), 1e-9)) if math.isfinite(median) else None
    out = {}
    for field, (metric, above) in RELATIVE.items():
        reference, threshold = references[metric], getattr(thresholds, field)
        if reference is not None and ((reference[0] > threshold) if above else (reference[0] < threshold)):
            out[field] = reference
    return out


def predict_metrics(
    square_metrics: Mapping[str, Sequence[Mapping[str, float]]],
    thresholds: WeightFreeThresholds | None = None,
    shifted: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """Per-square probabilities, in the layout of :func:`miffi.classify.inference.predict`.
    ``shifted``: dataset references (:func:`shifted_thresholds`), none by default."""
    thresholds = thresholds or WeightFreeThresholds()
    rows = [
        {"micrograph": micrograph, "square": i, **dict(zip(LABELS, square_probabilities(m, thresholds, shifted)))}
        for micrograph, squares in square_metrics.items()
        for i, m in enumerate(squares)
    ]
    return pd.DataFrame(rows, columns=["micrograph", "square", *LABELS])
