"""RELION star files of a collection of micrographs, as RELION 3.1+ reads them.

From a star input every block is kept and only the collection's rows remain: the
micrographs of a micrographs star, or **all** particles of the collection's micrographs
of a particles star. Other inputs get a RELION 3.1 micrographs star: an optics block
with pixel size, voltage, Cs and amplitude contrast (RELION reads an optics group without
them as no micrographs at all) and the CTF fit where the input has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import starfile

from miffi import atomic
from miffi.export.microscope import CTF, OPTICS, STAR_LABELS, from_star
from miffi.intake.relion import NAME, micrograph_rows, particles_of, read_star


@dataclass(frozen=True)
class StarSource:
    """An input star file: its blocks, its kind and one row per micrograph (which
    ``input_row`` indexes)."""

    path: Path
    blocks: dict[str, pd.DataFrame | dict[str, Any]]
    kind: str
    block: str
    micrographs: pd.DataFrame

    @classmethod
    def read(cls, path: Path) -> StarSource:
        blocks = read_star(path)
        kind, block, micrographs = micrograph_rows(blocks, path)
        return cls(path, blocks, kind, block, micrographs)

    def facts(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The optics and CTF facts (:mod:`miffi.export.microscope`) of ``rows``."""
        optics = self.blocks.get("optics")
        selected = self.micrographs.iloc[rows["input_row"].to_numpy()].reset_index(drop=True)
        return from_star(selected, optics if isinstance(optics, pd.DataFrame) else None, self.path)

    def subset(self, rows: pd.DataFrame) -> dict[str, pd.DataFrame | dict[str, Any]]:
        """The blocks with only the rows of ``rows``' micrographs."""
        blocks = dict(self.blocks)
        picked = self.micrographs.iloc[rows["input_row"].to_numpy()]
        if self.kind == "particles":
            particles = self.blocks[self.block]
            assert isinstance(particles, pd.DataFrame)  # (a loop: micrograph_rows has read it)
            blocks[self.block] = particles_of(particles, picked[NAME])
        else:
            blocks[self.block] = picked.reset_index(drop=True)
        return blocks


def optics_groups(rows: pd.DataFrame, facts: pd.DataFrame) -> pd.Series:
    """Optics group numbers (1, 2, ...): one per distinct input optics group, pixel size,
    voltage, Cs and amplitude contrast, numbered in order of appearance."""
    key = pd.DataFrame(
        {
            "group": rows["optics_group"].astype("string").fillna("").to_numpy(),
            "pixel_size": rows["pixel_size"].fillna(0.0).round(6).to_numpy(),
            **{name: facts[name].round(6).to_numpy() for name in OPTICS},
        }
    )
    numbers = key.groupby(list(key.columns), sort=False, dropna=False).ngroup() + 1
    return pd.Series(numbers.to_numpy(), index=rows.index)


def micrographs_star(rows: pd.DataFrame, facts: pd.DataFrame, groups: pd.Series) -> dict[str, pd.DataFrame]:
    """A RELION 3.1 micrographs star (optics + micrographs blocks) for non-star inputs."""
    first = ~groups.duplicated()
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups[first]],
            "rlnOpticsGroup": groups[first].to_numpy(),
            "rlnMicrographOriginalPixelSize": rows.loc[first, "pixel_size"].fillna(0.0).to_numpy(),
            **{STAR_LABELS[name]: facts.loc[first, name].to_numpy() for name in OPTICS},
            "rlnMicrographPixelSize": rows.loc[first, "pixel_size"].fillna(0.0).to_numpy(),
        }
    ).sort_values("rlnOpticsGroup")
    micrographs = pd.DataFrame({NAME: rows["path"].to_numpy(), "rlnOpticsGroup": groups.to_numpy()})
    ctf = facts[list(CTF)].copy()
    ctf.insert(2, "astigmatism", (ctf["defocus_u"] - ctf["defocus_v"]).abs())
    labels = {**STAR_LABELS, "astigmatism": "rlnCtfAstigmatism"}
    for name in ctf.columns:  # a star file cannot say "unknown": only columns every row has
        if ctf[name].notna().all():
            micrographs[labels[name]] = ctf[name].to_numpy()
    return {"optics": optics.reset_index(drop=True), "micrographs": micrographs}


def write_relion(
    rows: pd.DataFrame, source: StarSource | None, facts: pd.DataFrame, groups: pd.Series, path: Path
) -> None:
    """``path``: the collection ``rows`` (``facts`` and ``groups`` aligned with them)."""
    blocks = source.subset(rows) if source is not None else micrographs_star(rows, facts, groups)
    with atomic.temporary_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
