"""Pictures of micrographs for people: what the model sees, and the micrograph itself.

The model sees the cached tensor: per square, the normalised real-space image and its
power spectrum, clipped to ±``clip`` by the recipe. :func:`tensor_views` shows those
planes as grey levels (squares side by side); :func:`micrograph_view` shows the MRC file
binned down to a screen's size. Used by the HTML report, ``miffi png`` and the labelling
app.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from miffi.mrc import map_micrograph
from miffi.preprocess.config import PreprocessConfig

#: White gap between squares, in pixels.
GAP = 4


def grey(plane: np.ndarray, clip: float = PreprocessConfig.clip) -> np.ndarray:
    """A normalised plane (values in ±``clip``) as 8-bit grey levels, −clip black."""
    result: np.ndarray = np.clip((np.asarray(plane, dtype=np.float32) + clip) * (255.0 / (2 * clip)), 0, 255).astype(
        np.uint8
    )
    return result


def side_by_side(tiles: list[np.ndarray]) -> np.ndarray:
    """Grey tiles of one height joined left to right with white gaps."""
    gap = np.full((tiles[0].shape[0], GAP), 255, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)


def tensor_views(tensor: np.ndarray, clip: float = PreprocessConfig.clip) -> list[np.ndarray]:
    """One grey picture per channel of a cached tensor ``[squares, channels, size, size]``:
    the image, then (two-channel tensors) the power spectrum, squares side by side."""
    return [side_by_side([grey(square[channel], clip) for square in tensor]) for channel in range(tensor.shape[1])]


def resized(picture: np.ndarray, width: int) -> np.ndarray:
    """``picture`` scaled (bilinear) to ``width`` pixels wide, aspect kept."""
    from PIL import Image

    height = max(1, round(picture.shape[0] * width / picture.shape[1]))
    # Image.BILINEAR is set at run time by Pillow (pillow 9.0 has no Image.Resampling)
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.BILINEAR))  # type: ignore[attr-defined]


def micrograph_view(path: str | Path, longest: int = 1024) -> np.ndarray:
    """A micrograph binned by a whole factor to at most ``longest`` pixels on its longer
    side, contrast set by its mean ± 3 standard deviations."""
    data, _ = map_micrograph(path)
    factor = max(1, -(-max(data.shape) // longest))
    rows, cols = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    binned = np.asarray(data[:rows, :cols], dtype=np.float32)
    binned = binned.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    finite = binned[np.isfinite(binned)]
    mean, std = (float(finite.mean()), float(finite.std())) if finite.size else (0.0, 1.0)
    return grey((np.nan_to_num(binned, nan=mean) - mean) / (std or 1.0), 3.0)


def png(picture: np.ndarray, optimize: bool = False, level: int = 6) -> bytes:
    """PNG bytes of a grey picture (``optimize``: smaller, slower to write; ``level`` 0:
    no compression, 2.5× faster to write, and noise-like micrographs hardly compress)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=optimize, compress_level=level)
    return buffer.getvalue()
