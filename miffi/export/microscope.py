"""Microscope optics and CTF fits per micrograph, in one neutral form for the exports.

RELION refuses optics groups without voltage, spherical aberration and amplitude
contrast, and cryoSPARC's exposures carry them in ``ctf/*`` with the CTF fit. Both
writers take them from a table with the columns :data:`OPTICS` + :data:`CTF` (one row
per micrograph, NaN where unknown), read from the input: a star file's optics groups and
CTF columns (:func:`from_star`), a .cs file's ``ctf/*``, ``ctf_stats/*`` and
``mscope_params/*`` fields (:func:`from_cryosparc`). What the input lacks comes from the
user's options, else from :data:`DEFAULTS`, and is reported (:func:`complete`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from miffi.errors import SettingError
from miffi.intake.relion import optics_lookup

if TYPE_CHECKING:
    from cryosparc.dataset import Dataset

log = logging.getLogger(__name__)

#: Per-micrograph optics: kV, mm, fraction.
OPTICS = ("voltage", "cs", "amplitude_contrast")
#: Per-micrograph CTF fit: Å, Å, degrees, degrees, Å, CTFFIND's figure of merit.
CTF = ("defocus_u", "defocus_v", "defocus_angle", "phase_shift", "ctf_max_resolution", "ctf_figure_of_merit")
#: The RELION label of each column.
STAR_LABELS = {
    "voltage": "rlnVoltage",
    "cs": "rlnSphericalAberration",
    "amplitude_contrast": "rlnAmplitudeContrast",
    "defocus_u": "rlnDefocusU",
    "defocus_v": "rlnDefocusV",
    "defocus_angle": "rlnDefocusAngle",
    "phase_shift": "rlnPhaseShift",
    "ctf_max_resolution": "rlnCtfMaxResolution",
    "ctf_figure_of_merit": "rlnCtfFigureOfMerit",
}


@dataclass(frozen=True)
class Microscope:
    """Optics the user states for micrographs whose input does not say (None: not given)."""

    voltage: float | None = None  # kV
    cs: float | None = None  # mm
    amplitude_contrast: float | None = None

    def __post_init__(self) -> None:
        limits = {"voltage": (10.0, 3000.0), "cs": (0.0, 20.0), "amplitude_contrast": (0.0, 1.0)}
        for name, value in zip(OPTICS, astuple(self)):
            low, high = limits[name]
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise SettingError(f"{name.replace('_', ' ')} {value} is outside {low:g}..{high:g}")


#: What is written where neither the input nor the user says: a 300 kV Krios, 2.7 mm, 10 %.
DEFAULTS = Microscope(voltage=300.0, cs=2.7, amplitude_contrast=0.1)


def unknown(count: int) -> pd.DataFrame:
    """A facts table of ``count`` micrographs of which nothing is known."""
    return pd.DataFrame({name: np.full(count, np.nan) for name in OPTICS + CTF})


def from_star(rows: pd.DataFrame, optics: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    """Facts of star-file micrograph rows: the row's own column, else its optics group's."""
    facts = unknown(len(rows))
    for name, label in STAR_LABELS.items():
        if label in rows.columns:
            facts[name] = pd.to_numeric(rows[label], errors="coerce").to_numpy(dtype=float)
        elif "rlnOpticsGroup" in rows.columns:
            facts[name] = optics_lookup(optics, rows["rlnOpticsGroup"], label, path)
    return facts


def _field(dataset: Dataset, name: str) -> np.ndarray | None:
    return np.asarray(dataset[name], dtype=float) if name in dataset.fields() else None


def from_cryosparc(dataset: Dataset) -> pd.DataFrame:
    """Facts of cryoSPARC exposures (a ``cryosparc.dataset.Dataset``). Zero defoci are
    exposures without a CTF fit (cryoSPARC allocates the fields as zeros)."""
    facts = unknown(len(dataset))
    sources = {
        "voltage": ("ctf/accel_kv", "mscope_params/accel_kv"),
        "cs": ("ctf/cs_mm", "mscope_params/cs_mm"),
        "amplitude_contrast": ("ctf/amp_contrast",),
        "defocus_u": ("ctf/df1_A",),
        "defocus_v": ("ctf/df2_A",),
        "ctf_max_resolution": ("ctf_stats/ctf_fit_to_A",),
    }
    for name, candidates in sources.items():
        for candidate in candidates:
            values = _field(dataset, candidate)
            if values is not None:
                facts[name] = facts[name].fillna(pd.Series(np.where(values > 0, values, np.nan)))
    fitted = facts["defocus_u"].notna()
    for name, field in (("defocus_angle", "ctf/df_angle_rad"), ("phase_shift", "ctf/phase_shift_rad")):
        values = _field(dataset, field)
        if values is not None:
            facts[name] = np.where(fitted, np.degrees(values), np.nan)
    return facts


UNITS = {"voltage": "kV", "cs": "mm", "amplitude_contrast": ""}


def complete(facts: pd.DataFrame, user: Microscope) -> pd.DataFrame:
    """``facts`` with the optics the input lacks from ``user``, else :data:`DEFAULTS`.

    The user's values fill gaps and never overrule the input (a warning says when they
    disagree); defaults are reported once, naming the options that set them.
    """
    facts = facts.copy()
    defaulted = []
    for spec in fields(Microscope):
        name, given = spec.name, getattr(user, spec.name)
        option = "--" + name.replace("_", "-")
        known = facts[name].dropna()
        if given is not None and len(known) and not np.allclose(known, given):
            log.warning(
                "%s %g ignored where the input says %s",
                option,
                given,
                ", ".join(f"{v:g}" for v in sorted(known.unique())),
            )
        if facts[name].isna().any():
            if given is None:
                given = getattr(DEFAULTS, name)
                defaulted.append(f"{option} {given:g} {UNITS[name]}".rstrip())
            facts[name] = facts[name].fillna(given)
    if defaulted:
        log.warning(
            "the input does not state the microscope's optics; the exports say %s (the defaults: "
            "give these options if they are wrong)",
            ", ".join(defaulted),
        )
    return facts
