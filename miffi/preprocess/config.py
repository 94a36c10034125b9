"""The typed preprocessing configuration saved beside every cache and every model.

Two caches or a cache and a model are compatible exactly when their configurations
are equal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from miffi.errors import SettingError

#: Version of the tensor-cache layout; bump it when the files change meaning.
CACHE_FORMAT = 2


def reject_unknown_fields(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise :class:`~miffi.errors.SettingError` (a ``ValueError``) naming any key of ``data``
    that is not a field of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingError(f"unknown {what} {unknown}; known: {sorted(known)}")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a micrograph becomes a ``[squares, channels, size, size]`` tensor.

    The defaults are the ``miffi_v1`` recipe of the published Miffi models
    (docs/preprocessing.md): Fourier crop to 1.5 Å, image plus
    power spectrum, 384², robust per-channel normalisation clipped to ±2.5.

    Attributes
    ----------
    recipe
        Name of the recipe; only ``"miffi_v1"`` exists today.
    target_pixel_size
        Pixel size (Å) after Fourier cropping; coarser micrographs are not upsampled.
    size
        Side of the square tensors fed to the network.
    power_spectrum
        True for two-channel models (image, power spectrum), False for one channel.
    max_squares
        Keep at most this many squares per micrograph (None: all).
    norm_iterations, norm_nsigma, clip
        Robust normalisation: iterations of mean ± nsigma·std clipping, then the
        normalised values are clipped to ±clip.
    """

    recipe: str = "miffi_v1"
    target_pixel_size: float = 1.5
    size: int = 384
    power_spectrum: bool = True
    max_squares: int | None = None
    norm_iterations: int = 3
    norm_nsigma: float = 3.0
    clip: float = 2.5

    def __post_init__(self) -> None:
        if self.recipe != "miffi_v1":
            raise SettingError(f"preprocessing recipe {self.recipe!r} is unknown (known: 'miffi_v1')")
        if not self.target_pixel_size > 0:
            raise SettingError(f"target_pixel_size must be > 0, got {self.target_pixel_size!r}")
        if self.size < 16:
            raise SettingError(f"size must be at least 16, got {self.size!r}")
        if self.max_squares is not None and self.max_squares < 1:
            raise SettingError(f"max_squares must be >= 1 or None, got {self.max_squares!r}")
        if self.norm_iterations < 0 or not self.norm_nsigma > 0 or not self.clip > 0:
            raise SettingError("normalisation needs iterations >= 0, nsigma > 0 and clip > 0")

    @property
    def channels(self) -> int:
        return 2 if self.power_spectrum else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        reject_unknown_fields(cls, data, "preprocessing setting(s)")
        return cls(**data)
