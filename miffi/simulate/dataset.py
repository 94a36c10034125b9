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

import mrcfile
import numpy as np
import pandas as pd
import starfile
import yaml
from cryosparc.dataset import Dataset
from tqdm import tqdm

from miffi import __version__, atomic
from miffi.device import available_cores
from miffi.simulate.config import Detector, SimulationConfig
from miffi.simulate.scene import Scene, draw_scene, render

MICROGRAPH_DIR = "micrographs"
OUTPUT_FILES = ("labels.csv", "micrographs.star", "exposures.cs", "exposures.csg")


def _write_mrc(path: Path, image: np.ndarray, pixel_size: float, float16: bool) -> None:
    with atomic.temporary_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float16 if float16 else np.float32))
        mrc.voxel_size = pixel_size


def _make_one(args: tuple[Scene, Path, bool]) -> dict:
    scene, folder, float16 = args
    image = render(scene)
    _write_mrc(folder / f"{scene.micrograph}.mrc", image, scene.pixel_size, float16)
    return scene.row()


def write_star(table: pd.DataFrame, path: Path) -> None:
    """RELION 3.1 micrographs star file of the dataset (one optics group per pixel size)."""
    groups = {apix: i + 1 for i, apix in enumerate(sorted(table["pixel_size"].unique()))}
    first = table.iloc[0]
    optics = pd.DataFrame({
        "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups.values()],
        "rlnOpticsGroup": list(groups.values()),
        "rlnMicrographOriginalPixelSize": list(groups),
        "rlnVoltage": first["voltage"],
        "rlnSphericalAberration": first["cs"],
        "rlnAmplitudeContrast": first["amplitude_contrast"],
        "rlnMicrographPixelSize": list(groups),
    })
    micrographs = pd.DataFrame({
        "rlnMicrographName": [f"{MICROGRAPH_DIR}/{m}.mrc" for m in table["micrograph"]],
        "rlnOpticsGroup": table["pixel_size"].map(groups),
        "rlnDefocusU": table["defocus_u"],
        "rlnDefocusV": table["defocus_v"],
        "rlnCtfAstigmatism": (table["defocus_u"] - table["defocus_v"]).abs(),
        "rlnDefocusAngle": table["defocus_angle"],
        "rlnCtfBfactor": table["bfactor"],
        "rlnCtfFigureOfMerit": table["ctf_figure_of_merit"],
        "rlnCtfMaxResolution": table["ctf_max_resolution"],
    })
    with atomic.temporary_path(path) as tmp:
        starfile.write({"optics": optics, "micrographs": micrographs}, tmp, overwrite=True)


def write_cryosparc(table: pd.DataFrame, directory: Path) -> None:
    """``exposures.cs`` + ``exposures.csg`` (cryoSPARC "Import Result Group")."""
    n = len(table)
    dataset = Dataset.allocate(n, fields=[
        ("micrograph_blob/path", "O"), ("micrograph_blob/psize_A", "f4"), ("micrograph_blob/shape", "2u4"),
        ("micrograph_blob/format", "O"), ("ctf/accel_kv", "f4"), ("ctf/cs_mm", "f4"),
        ("ctf/amp_contrast", "f4"), ("ctf/df1_A", "f4"), ("ctf/df2_A", "f4"), ("ctf/df_angle_rad", "f4"),
        ("ctf/bfactor", "f4"), ("ctf/ctf_fit_to_A", "f4"), ("mscope_params/exp_group_id", "u4"),
    ])
    dataset["uid"] = np.arange(1, n + 1, dtype=np.uint64) + (np.uint64(0x5EED) << np.uint64(40))
    dataset["micrograph_blob/path"] = [f"{MICROGRAPH_DIR}/{m}.mrc" for m in table["micrograph"]]
    dataset["micrograph_blob/psize_A"] = table["pixel_size"].to_numpy()
    dataset["micrograph_blob/shape"] = table[["height", "width"]].to_numpy()
    dataset["micrograph_blob/format"] = ["MRC/1.0"] * n
    dataset["ctf/accel_kv"] = table["voltage"].to_numpy()
    dataset["ctf/cs_mm"] = table["cs"].to_numpy()
    dataset["ctf/amp_contrast"] = table["amplitude_contrast"].to_numpy()
    dataset["ctf/df1_A"] = table["defocus_u"].to_numpy()
    dataset["ctf/df2_A"] = table["defocus_v"].to_numpy()
    dataset["ctf/df_angle_rad"] = np.radians(table["defocus_angle"].to_numpy())
    dataset["ctf/bfactor"] = table["bfactor"].to_numpy()
    dataset["ctf/ctf_fit_to_A"] = table["ctf_max_resolution"].to_numpy()
    dataset["mscope_params/exp_group_id"] = np.ones(n, dtype=np.uint32)
    with atomic.temporary_path(directory / "exposures.cs") as tmp:
        dataset.save(str(tmp))
    group = {
        "created": pd.Timestamp.now().isoformat(),
        "group": {"name": "exposures", "title": "Simulated exposures", "type": "exposure",
                  "description": "Micrographs simulated by miffi simulate"},
        "results": {
            prefix: {"metafile": ">exposures.cs", "num_items": n, "type": f"exposure.{prefix}"}
            for prefix in ("micrograph_blob", "ctf", "mscope_params")
        },
        "version": "miffi-simulate",
    }
    atomic.write_text(directory / "exposures.csg", yaml.safe_dump(group, sort_keys=False))


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
        raise ValueError(f"--n must be >= 1, got {n}")
    config = config or SimulationConfig()
    out = Path(out)
    folder = out / MICROGRAPH_DIR
    width = max(5, len(str(n)))
    names = [f"sim_{i:0{width}d}" for i in range(n)]
    manifest = json.dumps({"n": n, "detector": asdict(detector), "config": asdict(config), "seed": seed,
                           "float16": float16, "version": __version__}, sort_keys=True)
    manifest_file = out / "simulation.json"
    outputs = [out / name for name in OUTPUT_FILES] + [folder / f"{m}.mrc" for m in names]
    if manifest_file.is_file() and manifest_file.read_text() == manifest and all(p.is_file() for p in outputs):
        return pd.read_csv(out / "labels.csv")  # same settings: the dataset is already there
    folder.mkdir(parents=True, exist_ok=True)
    manifest_file.unlink(missing_ok=True)
    scenes = [draw_scene(name, int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), detector, config)
              for i, name in enumerate(names)]
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
    write_star(table, out / "micrographs.star")
    write_cryosparc(table, out)
    atomic.write_text(manifest_file, manifest)
    return table
