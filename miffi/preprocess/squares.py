"""How a micrograph is split into squares and how far each is Fourier-cropped.

Pure geometry of the ``miffi_v1`` recipe: the short side ``n`` of the (possibly
transposed) micrograph is the square side, ``ceil(L / n)`` squares cover the long
side ``L`` with the last one right-aligned, and each square is cropped in Fourier
space to ``D`` pixels so that its pixel size becomes the target (1.5 Å).
Micrographs coarser than the target are used as they are (no Fourier crop, no
upsampling: ``D = n``), up to :data:`MAX_COARSENING` times the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Coarsest accepted pixel size, as a multiple of the target: 4 × 1.5 Å = 6 Å for ``miffi_v1``.
#: The power-spectrum channel of such a micrograph ends at 12 Å (the published models were
#: trained on spectra reaching 3 Å); that still holds the first Thon rings of the usual
#: defocus (first zero at 14–22 Å for 1–2.5 µm at 300 kV), whose shape shows drift, while
#: film edges and contamination stay visible in the image channel. Coarser than that the
#: spectrum is little more than its envelope and the micrograph is no longer the kind of
#: image the models were trained on (e.g. an atlas or grid-square image).
MAX_COARSENING = 4.0


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
    return tuple((length - side, length) if i == last else (i * side, (i + 1) * side) for i in range(keep))


def layout_for(
    shape: tuple[int, int],
    pixel_size: float,
    target_pixel_size: float = 1.5,
    max_squares: int | None = None,
) -> SquareLayout:
    """The square layout of a micrograph stored as an array of ``shape`` (rows, columns).

    Raises
    ------
    ValueError
        When ``pixel_size`` is coarser than ``MAX_COARSENING × target_pixel_size``, or the
        micrograph is too small to crop.
    """
    rows, cols = shape
    limit = MAX_COARSENING * target_pixel_size
    if pixel_size > limit:
        raise ValueError(
            f"pixel size {pixel_size:g} Å is coarser than the {limit:g} Å miffi takes (the power "
            f"spectrum would end at {2 * pixel_size:g} Å, before the Thon rings); if the pixel size "
            "is wrong, give the right one with --pixel-size, else use micrographs binned less"
        )
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
