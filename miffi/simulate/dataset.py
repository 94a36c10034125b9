"""Write a simulated, labelled dataset the way real data arrives.

``DIR/micrographs/*.mrc``  the micrographs (pixel size in the header),
``DIR/labels.csv``         micrograph, the four Miffi labels, every generation parameter,
``DIR/micrographs.star``   RELION 3.1 (data_optics + data_micrographs with CTF columns),
``DIR/exposures.cs/.csg``  cryoSPARC exposures (paths relative to DIR, the "project").
"""

from __future__ import annotations

import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd
import starfile
from tqdm import tqdm

from miffi import __version__, atomic
from miffi.device import available_cores
from miffi.errors import SettingError
from miffi.export.cryosparc import exposures, write_cryosparc
from miffi.export.microscope import CTF, OPTICS, unknown
from miffi.export.relion import micrographs_star, optics_groups
from miffi.intake.relion import NAME
from miffi.labels import GROUPS
from miffi.simulate.config import Detector, SimulationConfig
from miffi.simulate.scene import Scene, draw_scene, render

MICROGRAPH_DIR = "micrographs"
OUTPUT_FILES = ("labels.csv", "micrographs.star", "exposures.cs", "exposures.csg")


def _write_mrc(path: Path, image: np.ndarray, pixel_size: float, float16: bool) -> None:
    with atomic.temporary_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float16 if float16 else np.float32))
        mrc.voxel_size = pixel_size


def _make_one(args: tuple[Scene, Path, bool]) -> dict[str, Any]:
    scene, folder, float16 = args
    image = render(scene)
    _write_mrc(folder / f"{scene.micrograph}.mrc", image, scene.pixel_size, float16)
    return scene.row()


def _exports_of(table: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The dataset as the exports see micrographs: rows, optics/CTF facts, optics groups."""
    rows = pd.DataFrame(
        {
            "path": [str((out / MICROGRAPH_DIR / f"{m}.mrc").absolute()) for m in table["micrograph"]],
            "pixel_size": table["pixel_size"].to_numpy(),
            "optics_group": pd.NA,
        }
    )
    facts = unknown(len(table))
    for name in OPTICS + CTF:
        if name in table:
            facts[name] = table[name].to_numpy(dtype=float)
    return rows, facts, optics_groups(rows, facts)


def write_star(table: pd.DataFrame, out: Path) -> None:
    """``micrographs.star``: RELION 3.1, paths relative to ``out`` (the "project"), with the
    CTF columns and B-factor."""
    rows, facts, groups = _exports_of(table, out)
    blocks = micrographs_star(rows, facts, groups)
    blocks["micrographs"][NAME] = [f"{MICROGRAPH_DIR}/{m}.mrc" for m in table["micrograph"]]
    blocks["micrographs"]["rlnCtfBfactor"] = table["bfactor"].to_numpy()
    with atomic.temporary_path(out / "micrographs.star") as tmp:
        starfile.write(blocks, tmp, overwrite=True)


def write_exposures(table: pd.DataFrame, out: Path) -> None:
    """``exposures.cs`` + ``.csg`` (cryoSPARC "Import Result Group"), paths relative to
    ``out``, with Patch CTF's fit resolution (``ctf_stats/ctf_fit_to_A``) and B-factor."""
    rows, facts, groups = _exports_of(table, out)
    dataset = exposures(rows, facts, groups, out)
    dataset["uid"] = np.arange(1, len(table) + 1, dtype=np.uint64) + (np.uint64(0x5EED) << np.uint64(40))
    dataset["ctf/bfactor"] = table["bfactor"].to_numpy()
    dataset.add_fields([("ctf_stats/ctf_fit_to_A", "f4")])
    dataset["ctf_stats/ctf_fit_to_A"] = table["ctf_max_resolution"].to_numpy()
    write_cryosparc(dataset, f"miffi-simulate-{__version__}", out / "exposures.cs")


def describe_labels(table: pd.DataFrame) -> str:
    """How many micrographs of a simulated dataset have each label, group by group
    (e.g. ``film: no_film 3, minor_film 1; drift: ...``)."""
    return "; ".join(
        f"{group}: " + ", ".join(f"{label} {count}" for label, count in table[group].value_counts().items())
        for group in GROUPS
    )


def simulate_dataset(
    out: str | Path,
    n: int,
    detector: Detector,
    config: SimulationConfig | None = None,
    seed: int = 0,
    float16: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Simulate ``n`` labelled micrographs into ``out``; returns the labels table.

    Each micrograph's labels and parameters come from its own random stream
    (``seed``, index), so a dataset is the same for a given seed whatever ``workers``.
    A dataset already in ``out`` with the same settings is kept as it is (files
    untouched, so caches of it stay valid).
    """
    if n < 1:
        raise SettingError(f"--n must be >= 1, got {n}")
    config = config or SimulationConfig()
    out = Path(out)
    folder = out / MICROGRAPH_DIR
    width = max(5, len(str(n)))
    names = [f"sim_{i:0{width}d}" for i in range(n)]
    manifest = json.dumps(
        {
            "n": n,
            "detector": asdict(detector),
            "config": asdict(config),
            "seed": seed,
            "float16": float16,
            "version": __version__,
        },
        sort_keys=True,
    )
    manifest_file = out / "simulation.json"
    outputs = [out / name for name in OUTPUT_FILES] + [folder / f"{m}.mrc" for m in names]
    if manifest_file.is_file() and manifest_file.read_text() == manifest and all(p.is_file() for p in outputs):
        return pd.read_csv(out / "labels.csv")  # same settings: the dataset is already there
    folder.mkdir(parents=True, exist_ok=True)
    manifest_file.unlink(missing_ok=True)
    scenes = [
        draw_scene(name, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), detector, config)
        for i, name in enumerate(names)
    ]
    jobs = [(scene, folder, float16) for scene in scenes]
    # Rendering uses every core for its FFTs; a few processes help on many-core machines.
    workers = workers or max(1, min(8, available_cores() // 4))
    with tqdm(total=n, desc="simulate", unit="mic", disable=not progress) as bar:
        if workers == 1:
            rows = []
            for job in jobs:
                rows.append(_make_one(job))
                bar.update(1)
        else:
            # "spawn": forking a process whose BLAS/FFT thread pools are running can deadlock
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows = []
                for row in pool.map(_make_one, jobs, chunksize=max(1, math.ceil(n / (4 * workers)))):
                    rows.append(row)
                    bar.update(1)
    table = pd.DataFrame(rows)
    atomic.write_text(out / "labels.csv", table.to_csv(index=False))
    write_star(table, out)
    write_exposures(table, out)
    atomic.write_text(manifest_file, manifest)
    return table
