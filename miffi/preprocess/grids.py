"""The band and ring grids of a half-spectrum, and the reductions over them.

The metrics reduce the cropped half-spectra where they were computed, with the flat
indices and bin numbers of :func:`miffi.preprocess.metrics.spectral_bands` and
:func:`miffi.preprocess.ctf.ring_grid`: on a GPU, so that only the sums come back. A
grid is the same for every square of one shape, so the host and each device keep one
copy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

G = TypeVar("G")


def host_grid(grid: Callable[[int, int, float], G], rows: int, cols: int, pixel_size: float) -> G:
    """``grid`` of a ``rows × cols`` half-spectrum at ``pixel_size`` (rounded to 1e-4 Å,
    so that one detector's squares share one grid)."""
    return grid(rows, cols, round(float(pixel_size), 4))


@functools.lru_cache(maxsize=32)
def device_grid(
    grid: Callable[[int, int, float], Any], rows: int, cols: int, pixel_size: float, device: torch.device
) -> dict[str, torch.Tensor]:
    """The index arrays of :func:`host_grid` (its ``DEVICE_FIELDS``) on ``device``, by
    name; empty where the grid is None (no band)."""
    import torch

    made = host_grid(grid, rows, cols, pixel_size)
    if made is None:
        return {}
    return {name: torch.from_numpy(getattr(made, name)).to(device) for name in made.DEVICE_FIELDS}


def band_power(spectra: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The power (float64) of ``[k, N]`` flat amplitude spectra at ``index``: ``[k, len(index)]``.

    On the CPU in numpy, the square made in float64 as the values are taken: a third
    of torch's time there (gather, widen, square: 8.4 → 2.8 ms for the 1.65 million
    samples of a K3 square's CTF rings, one core).
    """
    import torch

    if spectra.device.type == "cpu":
        power = np.square(spectra.numpy().take(index.numpy(), axis=1), dtype=np.float64)
        return torch.from_numpy(power)
    return spectra.index_select(1, index).double().square()


def binned_power(spectra: torch.Tensor, index: torch.Tensor, bins: torch.Tensor, size: int) -> torch.Tensor:
    """Power sums of ``[k, N]`` flat amplitude spectra at ``index`` per bin (``bins``, one
    per index, below ``size``): ``[k, size]``, on their device without waiting for it."""
    power = band_power(spectra, index)
    if power.device.type == "cpu":
        return bincount_rows(power, bins, size)
    return index_add_rows(power, bins, size)


def bincount_rows(power: torch.Tensor, bins: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`binned_power`'s sums on the CPU, in numpy (torch's ``bincount`` took 1.2×
    its time there, and ``index_add_`` 2.5× torch's ``bincount``; on a GPU ``bincount``
    waits for the device to learn its output's size)."""
    import torch

    index = bins.numpy()
    sums = np.stack([np.bincount(index, row, size) for row in power.numpy()])
    return torch.from_numpy(sums.astype(np.float64, copy=False))  # (no samples: int64 zeros)


def index_add_rows(power: torch.Tensor, bins: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`binned_power`'s sums on a GPU (the order of the additions may vary: ~1e-16)."""
    return power.new_zeros((len(power), size)).index_add_(1, bins, power)
