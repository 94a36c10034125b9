"""Micrographs made by the tests themselves."""

from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path

import mrcfile
import numpy as np


def structured_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Noise on a smooth background with a few dark blobs: contrast on every scale."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    image = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    y = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    image += 0.8 * x + 0.5 * y**2
    for _ in range(4):
        cy, cx = rng.uniform(-0.8, 0.8, size=2)
        radius = rng.uniform(0.05, 0.15)
        image -= 3.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2)).astype(np.float32)
    return image


def write_mrc(
    path: Path,
    data: np.ndarray,
    pixel_size: float | None = 1.0,
    extended_header: np.ndarray | None = None,
) -> Path:
    """Write ``data`` as an MRC file (mode from its dtype) with the given header pixel size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # header statistics of NaN/Inf test data
        mrc.set_data(data)
        if extended_header is not None:
            mrc.set_extended_header(extended_header)
        if pixel_size is not None:
            mrc.voxel_size = pixel_size
    return path


def save_torchscript(module, path: Path) -> Path:
    """Save a timm module as TorchScript, the format of the published Miffi models.

    (torch deprecates ``torch.jit.script``; the warning's class differs between releases.)
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


def relion_reads(star: Path, block: str) -> dict:
    """The blocks of ``star`` as RELION itself reads and writes them back
    (``relion_star_handler``), checked to hold as many ``block`` rows as RELION reports."""
    import starfile

    out = star.with_name(star.stem + "_relion_check.star")
    command = ["relion_star_handler", "--i", str(star), "--o", str(out), "--select", "rlnOpticsGroup",
               "--minval", "-1e9", "--maxval", "1e9"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0, f"RELION wrote an empty file: {result.stdout}{result.stderr}"
    rewritten = starfile.read(out, always_dict=True)
    out.unlink()
    assert re.search(rf"with {len(rewritten[block])} item", result.stdout), result.stdout
    return rewritten
