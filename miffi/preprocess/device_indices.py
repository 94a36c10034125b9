"""The index arrays of a spectrum's bands as tensors on the device the spectrum is on.

The metrics reduce a square's half-spectrum where it was computed (on a GPU only the
sums come back), with the bands' flat indices and bin numbers of
:func:`miffi.preprocess.metrics.spectral_bands` and :func:`miffi.preprocess.ctf.ring_grid`.
Those are the same for every square of one shape, so each device keeps one copy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@functools.lru_cache(maxsize=32)
def device_indices(
    grid: Callable[[int, int, float], Any], rows: int, cols: int, pixel_size: float, device: torch.device
) -> dict[str, torch.Tensor]:
    """The integer arrays of ``grid(rows, cols, pixel_size)`` (a frozen dataclass, or None:
    no arrays), by field name, on ``device``."""
    import torch

    made = grid(rows, cols, pixel_size)
    if made is None:
        return {}
    fields = {field.name: getattr(made, field.name) for field in dataclasses.fields(made)}
    return {
        name: torch.from_numpy(value).to(device)
        for name, value in fields.items()
        if isinstance(value, np.ndarray) and value.dtype.kind in "iu"
    }
