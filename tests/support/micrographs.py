"""Micrographs made by the tests themselves."""

from __future__ import annotations

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
