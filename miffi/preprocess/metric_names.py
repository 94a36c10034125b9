"""The names of the per-square metrics (in the order tables show them), their version,
and how a micrograph's value is made from its squares'.

Here, apart from the numerics (:mod:`miffi.preprocess.metrics`, :mod:`miffi.preprocess.ctf`),
so that the stages that only read metrics (combine, evaluate, report, review) do not
import scipy to learn their names.
"""

from __future__ import annotations

import math

import numpy as np

#: Bump when a metric's definition changes: cached metrics of another version are recomputed.
VERSION = 5

SPECTRAL_METRICS = ("water_ring", "ice_peak", "ice_spots", "ice_lattice", "anisotropy", "anisotropy_angle", "flatness")
#: The CTF fit's (:mod:`miffi.preprocess.ctf`).
CTF_METRICS = ("thon_defocus", "thon_astigmatism", "thon_angle", "thon_resolution", "thon_anisotropy", "thon_rings")
REALSPACE_METRICS = (
    "dark_fraction",
    "dark_count",
    "bright_fraction",
    "film_edge",
    "film_side_fraction",
    "mean_intensity",
)
METRICS = SPECTRAL_METRICS + CTF_METRICS + REALSPACE_METRICS


def micrograph_metrics(squares: list[dict[str, float]]) -> dict[str, float]:
    """Per-micrograph values: the mean over squares; counts and fractions of dark objects
    and the anisotropy take the largest square value (a defect seen in one square)."""
    worst = {
        "ice_lattice",
        "dark_count",
        "dark_fraction",
        "bright_fraction",
        "anisotropy",
        "thon_anisotropy",
        "film_edge",
        "ice_peak",
        "ice_spots",
    }
    out = {}
    for name in METRICS:
        values = [s[name] for s in squares if not math.isnan(s.get(name, math.nan))]
        if not values:
            out[name] = math.nan
        elif name == "anisotropy_angle":
            out[name] = squares[int(np.argmax([s["anisotropy"] for s in squares]))][name]
        elif name == "thon_angle":  # an angle does not average: the first square's with a fit
            out[name] = values[0]
        else:
            out[name] = float(max(values) if name in worst else np.mean(values))
    return out
