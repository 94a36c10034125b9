"""The CTF-resolution baseline of the Miffi paper.

Micrographs whose CTF fit is worse than 10 Å are bad; of the rest, those whose fit
resolution lies within mean ± 2σ (of the rest) are good, the others bad. The fit
resolution comes from the input: RELION's ``rlnCtfMaxResolution`` or cryoSPARC's
``ctf_stats/ctf_fit_to_A``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RESOLUTION_COLUMNS = ("rlnCtfMaxResolution", "ctf_stats/ctf_fit_to_A")
WORST_GOOD_FIT = 10.0


def fit_resolution(table: pd.DataFrame) -> pd.Series:
    """CTF fit resolution (Å) per row, NaN where the input has none."""
    for column in RESOLUTION_COLUMNS:
        if column in table:
            return pd.to_numeric(table[column], errors="coerce")
    return pd.Series(np.nan, index=table.index)


def ctf_baseline(resolution: pd.Series, worst: float = WORST_GOOD_FIT, nsigma: float = 2.0) -> pd.Series:
    """``good`` / ``bad`` per micrograph (missing where there is no fit resolution)."""
    usable = resolution.notna()
    fine = usable & (resolution <= worst)
    mean = resolution[fine].mean()
    std = resolution[fine].std(ddof=1) if fine.sum() > 1 else 0.0
    within = fine & ((resolution - mean).abs() <= nsigma * std)
    out = pd.Series(pd.NA, index=resolution.index, dtype="object")
    out[usable] = "bad"
    out[within] = "good"
    return out
