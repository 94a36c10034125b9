"""How a micrograph is split into squares and how far each is Fourier-cropped.

Pure geometry of the ``miffi_v1`` recipe: the short side ``n`` of the (possibly
transposed) micrograph is the square side, ``ceil(L / n)`` squares cover the long
side ``L`` with the last one right-aligned, and each square is cropped in Fourier
space to ``D`` pixels so that its pixel size becomes the target (1.5 Å).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SquareLayout:
    """Where the squares of one micrograph lie and what size they are cropped to.

    Attributes
    ----------
    transposed
        True when the stored array has more rows than columns and is transposed first.
    side
        Square side ``n`` in input pixels (the short side).
    crop
        Even size ``D`` of each square after Fourier cropping.
    columns
        ``(start, stop)`` column ranges of the squares in the (transposed) array.
    pixel_size
        Input pixel size (Å).
    output_pixel_size
        Pixel size of the cropped squares, ``n * pixel_size / D`` (≈ the target).
    """

    transposed: bool
    side: int
    crop: int
    columns: tuple[tuple[int, int], ...]
    pixel_size: float
    output_pixel_size: float

    @property
    def count(self) -> int:
        return len(self.columns)


def crop_size(side: int, pixel_size: float, target_pixel_size: float) -> int:
    """Even Fourier-crop size ``D = round(n * apix / ds) // 2 * 2``, ``ds = max(target, apix)``."""
    ds = max(target_pixel_size, pixel_size)
    return round(side * pixel_size / ds) // 2 * 2


def square_columns(side: int, length: int, max_squares: int | None = None) -> tuple[tuple[int, int], ...]:
    """Column ranges of the squares along the long side; the last one is right-aligned."""
    total = math.ceil(length / side)
    last = total - 1
    keep = total if max_squares is None else min(total, max_squares)
    return tuple(
        (length - side, length) if i == last else (i * side, (i + 1) * side) for i in range(keep)
    )


def layout_for(
    shape: tuple[int, int],
    pixel_size: float,
    target_pixel_size: float = 1.5,
    max_squares: int | None = None,
) -> SquareLayout:
    """The square layout of a micrograph stored as an array of ``shape`` (rows, columns)."""
    rows, cols = shape
    transposed = rows > cols
    side, length = (cols, rows) if transposed else (rows, cols)
    crop = crop_size(side, pixel_size, target_pixel_size)
    if crop < 2:
        raise ValueError(f"micrograph of {rows}×{cols} px at {pixel_size} Å is too small to crop")
    return SquareLayout(
        transposed=transposed,
        side=side,
        crop=crop,
        columns=square_columns(side, length, max_squares),
        pixel_size=pixel_size,
        output_pixel_size=side * pixel_size / crop,
    )
