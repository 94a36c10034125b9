"""cryoSPARC exposure datasets (.cs) and group files (.csg) for "Import Result Group".

From a .cs/.csg input every field of the input exposures is kept for the collection's
rows. Other inputs get the fields cryoSPARC's own exposures have (field names and types
as cryosparc-tools' exposure datasets): ``micrograph_blob/*`` (path, idx, shape,
psize_A, format, is_background_subtracted, vmin, vmax, import_sig),
``mscope_params/*`` (voltage, Cs, exposure group) and, where the input has a CTF fit,
``ctf/*``. Paths are relative to the cryoSPARC project directory when one is given
(cryoSPARC reads blob paths relative to it), else absolute.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cryosparc
import numpy as np
import pandas as pd
import yaml
from cryosparc.dataset import Dataset

from miffi import atomic
from miffi.export.microscope import from_cryosparc
from miffi.intake.cryosparc import load_dataset, load_group
from miffi.mrc import MrcHeader, read_header
from miffi.textfiles import read_yaml_mapping

#: The ``version`` of our .csg files: cryoSPARC's own format ("v4.4.1"), for the cryoSPARC
#: release that the installed cryosparc-tools matches.
VERSION = f"v{cryosparc.__version__}"

BLOB_FIELDS = [
    ("micrograph_blob/path", "O"),
    ("micrograph_blob/idx", "<u4"),
    ("micrograph_blob/shape", "<u4", (2,)),
    ("micrograph_blob/psize_A", "<f4"),
    ("micrograph_blob/format", "O"),
    ("micrograph_blob/is_background_subtracted", "<u4"),
    ("micrograph_blob/vmin", "<f4"),
    ("micrograph_blob/vmax", "<f4"),
    ("micrograph_blob/import_sig", "<u8"),
]
MSCOPE_FIELDS = [
    ("mscope_params/accel_kv", "<f4"),
    ("mscope_params/cs_mm", "<f4"),
    ("mscope_params/exp_group_id", "<u4"),
]
CTF_FIELDS = [
    ("ctf/type", "O"),
    ("ctf/exp_group_id", "<u4"),
    ("ctf/accel_kv", "<f4"),
    ("ctf/cs_mm", "<f4"),
    ("ctf/amp_contrast", "<f4"),
    ("ctf/df1_A", "<f4"),
    ("ctf/df2_A", "<f4"),
    ("ctf/df_angle_rad", "<f4"),
    ("ctf/phase_shift_rad", "<f4"),
    ("ctf/scale", "<f4"),
    ("ctf/scale_const", "<f4"),
    ("ctf/shift_A", "<f4", (2,)),
    ("ctf/tilt_A", "<f4", (2,)),
    ("ctf/trefoil_A", "<f4", (2,)),
    ("ctf/tetra_A", "<f4", (4,)),
    ("ctf/anisomag", "<f4", (4,)),
    ("ctf/bfactor", "<f4"),
]


def import_signature(path: str) -> int:
    """cryoSPARC's import signature of a file: the first 8 bytes of the SHA-1 of its
    absolute path, as a little-endian unsigned 64-bit integer."""
    return int(np.frombuffer(hashlib.sha1(path.encode()).digest()[:8], dtype="<u8")[0])


@dataclass(frozen=True)
class ExposureSource:
    """Input exposures (a .csg's .cs files joined on uid) and the .csg's version."""

    dataset: Dataset
    version: str

    @classmethod
    def read(cls, path: Path) -> ExposureSource:
        if path.suffix.lower() != ".csg":
            return cls(load_dataset(path), VERSION)
        dataset = load_group(path)
        version = read_yaml_mapping(path, "cryoSPARC .csg file").get("version")
        return cls(dataset, str(version) if version else VERSION)

    def facts(self, rows: pd.DataFrame) -> pd.DataFrame:
        return from_cryosparc(self.dataset.take(rows["input_row"].to_numpy()))


def exposures(
    rows: pd.DataFrame,
    facts: pd.DataFrame,
    groups: pd.Series,
    project_dir: str | Path | None,
    known: dict[str, MrcHeader] | None = None,
) -> Dataset:
    """Exposures of micrographs that did not come from cryoSPARC (``facts``, ``groups``
    aligned with ``rows``; see :mod:`miffi.export.microscope` and
    :func:`miffi.export.relion.optics_groups`). ``known``: headers already read, by path;
    the ones read here are added to it (so an export reads each header once)."""
    known = {} if known is None else known
    for path in rows["path"]:
        if path not in known:
            known[path] = read_header(path)
    headers = [known[p] for p in rows["path"]]
    fitted = facts["defocus_u"].notna().to_numpy()
    dataset = Dataset.allocate(len(rows), fields=BLOB_FIELDS + MSCOPE_FIELDS + (CTF_FIELDS if fitted.any() else []))
    base = os.path.abspath(project_dir) if project_dir is not None else None
    dataset["micrograph_blob/path"] = [os.path.relpath(p, base) if base else p for p in rows["path"]]
    dataset["micrograph_blob/shape"] = np.array([(h.height, h.width) for h in headers], dtype=np.uint32)
    dataset["micrograph_blob/psize_A"] = rows["pixel_size"].fillna(0.0).to_numpy()
    dataset["micrograph_blob/format"] = [f"MRC/{h.mode}" for h in headers]
    dataset["micrograph_blob/vmin"] = [h.minimum for h in headers]
    dataset["micrograph_blob/vmax"] = [h.maximum for h in headers]
    dataset["micrograph_blob/import_sig"] = np.array([import_signature(p) for p in rows["path"]], dtype=np.uint64)
    numbers = groups.to_numpy(dtype=np.uint32)
    for prefix in ("mscope_params", *(["ctf"] if fitted.any() else [])):
        dataset[f"{prefix}/accel_kv"] = facts["voltage"].to_numpy()
        dataset[f"{prefix}/cs_mm"] = facts["cs"].to_numpy()
        dataset[f"{prefix}/exp_group_id"] = numbers
    if fitted.any():
        dataset["ctf/type"] = ["imported" if f else "" for f in fitted]
        dataset["ctf/amp_contrast"] = facts["amplitude_contrast"].to_numpy()
        dataset["ctf/df1_A"] = facts["defocus_u"].fillna(0.0).to_numpy()
        dataset["ctf/df2_A"] = facts["defocus_v"].fillna(0.0).to_numpy()
        dataset["ctf/df_angle_rad"] = np.radians(facts["defocus_angle"].fillna(0.0).to_numpy())
        dataset["ctf/phase_shift_rad"] = np.radians(facts["phase_shift"].fillna(0.0).to_numpy())
        dataset["ctf/scale"] = np.where(fitted, 1.0, 0.0)
    return dataset


def write_cryosparc(dataset: Dataset, version: str, cs_path: Path) -> None:
    """``cs_path`` and the group file beside it (``.csg``, one result per field prefix)."""
    with atomic.temporary_path(cs_path) as tmp:
        dataset.save(str(tmp))
    prefixes = sorted({field.split("/")[0] for field in dataset.fields() if "/" in field})
    group = {
        "created": pd.Timestamp.now().isoformat(),
        "group": {
            "name": cs_path.stem,
            "title": cs_path.stem.replace("_", " "),
            "type": "exposure",
            "description": f"miffi: {cs_path.stem} micrographs",
        },
        "results": {
            prefix: {"metafile": f">{cs_path.name}", "num_items": len(dataset), "type": f"exposure.{prefix}"}
            for prefix in prefixes
        },
        "version": version,
    }
    atomic.write_text(cs_path.with_suffix(".csg"), yaml.safe_dump(group, sort_keys=False))
