"""Interpretable per-square metrics from what preprocessing already computed.

Spectral metrics use the amplitudes ``|Fc|`` of the Fourier-cropped square (pixel size
≈ 1.5 Å, so frequencies up to 1/3 Å⁻¹); real-space metrics use the cropped image with
its mean intensity restored. Power is ``|Fc|²``; bands are rings of spatial frequency.
Micrographs coarser than 1.5 Å are not cropped; a metric whose band lies beyond their
Nyquist frequency is NaN (e.g. the ice metrics above 2.8 Å per pixel).

``water_ring``
    mean power in the 3.5–3.9 Å ring over that in the 4.5–6 Å ring: the diffuse
    scattering of vitreous ice rises above its neighbourhood as ice thickens (≈ 1 for
    no ice). A relative ice-thickness proxy (cf. RELION's rlnCtfIceRingDensity).
``ice_peak``
    crystallinity along the radius: the highest 0.0025 Å⁻¹-wide radial bin between 3.3
    and 4.0 Å over the median of that range (≈ 1 for vitreous ice; sharp rings at
    3.90/3.67/3.44 Å give more).
``ice_spots``
    crystallinity around the rings: the 99.5th percentile over the median of the
    power on the three ice-spacing rings (lattice spots of crystalline domains).
``ice_lattice``
    lattice spots, measured against their surroundings: on each ice-spacing ring
    (±0.003 Å⁻¹) the power in 2° sectors over that of the same sectors just beside the
    ring (0.006–0.012 Å⁻¹ away), whose highest sector over their median, the largest of
    the three rings (≈ 1.2 for vitreous ice; a crystalline domain's spots give more).
``anisotropy``, ``anisotropy_angle``
    in the 12–40 Å band, 1 − (weakest / strongest) power of 12 angular sectors, and the
    direction (degrees, 0 = x axis) of the weakest one: drift blurs along its
    direction and removes power there.
``flatness``
    power at 20–50 Å over power at 3.1–3.3 Å: ≈ 1 for an empty hole (shot noise only),
    large with ice, particles or carbon.
``dark_fraction``, ``dark_count``
    fraction of the area, and number of objects larger than (200 Å)², darker than the
    median by more than 5 robust standard deviations after smoothing at 20 Å (on a 12 Å grid):
    contamination (ice crystals, ethane droplets).
``bright_fraction``
    the same for brighter areas: the empty gap of a crack, a patch without ice.
``film_edge``, ``film_side_fraction``
    a support-film (hole) edge (:mod:`miffi.preprocess.film_edges`): a long, thin,
    continuous line of strong intensity gradient (at 60 Å, more than 6 robust standard
    deviations above the image's median gradient, grown down to 3) that cuts the view
    into two sides, or, where there is none, a straight line across which the fine
    texture (periods below about 150 Å) steps by more than 8 robust standard deviations
    of all lines' steps (a faint
    edge: carbon is more finely textured than ice). ``film_edge`` is the line's length
    over the longer side of the view (0 without an edge: particles and contaminants give
    short or round gradient blobs and average out along a line, and a line that does not
    cross the view is no hole edge); ``film_side_fraction`` is the area of the film's
    side, the darker one of a gradient line (carbon and the ice on it scatter more) or
    the more finely textured one of a texture step: the film's coverage; NaN without an
    edge.
``mean_intensity``
    mean value per input pixel (empty holes are brighter than the dataset's median).

The CTF fit of each square adds ``thon_defocus``, ``thon_astigmatism``, ``thon_angle``,
``thon_resolution``, ``thon_anisotropy`` and ``thon_rings``
(:mod:`miffi.preprocess.ctf`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.ndimage as ndi

from miffi.preprocess.ctf import ctf_metrics_from, ring_grid, ring_sums
from miffi.preprocess.film_edges import film_edge
from miffi.preprocess.grids import band_power, binned_power, device_grid, host_grid

if TYPE_CHECKING:
    import torch

WATER_RING_BAND = (3.5, 3.9)
WATER_RING_REFERENCE = (4.5, 6.0)
ICE_RANGE = (3.3, 4.0)
#: Spacings (Å) of the strongest hexagonal/cubic ice reflections: (100), (002)/(111), (101).
ICE_SPACINGS = (3.90, 3.67, 3.44)
ANISOTROPY_BAND = (12.0, 40.0)
ANISOTROPY_SECTORS = 12
FLAT_LOW, FLAT_HIGH = (20.0, 50.0), (3.1, 3.3)
#: Sectors of the ``ice_lattice`` rings (2° each) and the ring and reference half-widths (Å⁻¹).
LATTICE_SECTORS, LATTICE_RING, LATTICE_REFERENCE = 90, 0.003, (0.006, 0.012)
#: The ``ice_spots`` quantiles of the power on the ice rings: the high one over the median.
RING_LEVELS = (0.995, 0.5)


@dataclass(frozen=True)
class SpectralBands:
    """Flat indices into an rfft2 half-spectrum of each band the metrics use, and the
    number of samples in each bin of the binned ones (the same for every spectrum)."""

    ring: np.ndarray
    reference: np.ndarray
    ice: np.ndarray
    ice_bins: np.ndarray
    ice_bins_n: np.ndarray
    ice_rings: np.ndarray
    lattice: np.ndarray  # samples on the rings, and their ring·sector bin
    lattice_bin: np.ndarray
    lattice_n: np.ndarray
    lattice_reference: np.ndarray  # samples beside the rings, and their bin
    lattice_reference_bin: np.ndarray
    lattice_reference_n: np.ndarray
    sector: np.ndarray
    sector_of: np.ndarray
    sector_n: np.ndarray
    flat_low: np.ndarray
    flat_high: np.ndarray

    DEVICE_FIELDS: ClassVar[tuple[str, ...]] = (  # (grids.device_grid)
        *("ring", "reference", "flat_low", "flat_high", "ice", "ice_bins", "ice_rings"),
        *("lattice", "lattice_bin", "lattice_reference", "lattice_reference_bin", "sector", "sector_of"),
    )


@functools.lru_cache(maxsize=16)
def spectral_bands(rows: int, cols: int, pixel_size: float) -> SpectralBands:
    """Band indices for a ``rows × cols`` half-spectrum at ``pixel_size`` (cached: one
    detector shape gives one entry)."""
    ky = np.fft.fftfreq(rows, d=pixel_size)[:, None]
    kx = (np.arange(cols) / ((cols - 1) * 2 * pixel_size))[None, :]
    k = np.hypot(kx, ky).ravel()
    angle = (np.degrees(np.arctan2(ky, kx)) % 180).ravel()

    def band(resolution: tuple[float, float]) -> np.ndarray:
        low, high = sorted(resolution)
        return np.flatnonzero((k >= 1 / high) & (k <= 1 / low))

    ice = band(ICE_RANGE)
    rings = np.flatnonzero(np.min([np.abs(k - 1 / d) for d in ICE_SPACINGS], axis=0) < 0.004)
    sector = band(ANISOTROPY_BAND)
    sector_of = np.minimum((angle[sector] / (180 / ANISOTROPY_SECTORS)).astype(int), ANISOTROPY_SECTORS - 1)
    ice_bins = np.floor(k[ice] / 0.0025).astype(int)
    ice_bins -= ice_bins.min() if ice.size else 0  # no ice band beyond Nyquist (pixel size > 2.8 Å)
    sector_bin = np.minimum((angle / (180 / LATTICE_SECTORS)).astype(int), LATTICE_SECTORS - 1)
    near, beside = [], []
    for ring, spacing in enumerate(ICE_SPACINGS):
        distance = np.abs(k - 1 / spacing)
        near.append(np.flatnonzero(distance < LATTICE_RING))
        beside.append(np.flatnonzero((distance >= LATTICE_REFERENCE[0]) & (distance < LATTICE_REFERENCE[1])))
    lattice, reference = np.concatenate(near), np.concatenate(beside)
    lattice_bin = np.concatenate([sector_bin[i] + r * LATTICE_SECTORS for r, i in enumerate(near)])
    reference_bin = np.concatenate([sector_bin[i] + r * LATTICE_SECTORS for r, i in enumerate(beside)])
    bins = len(ICE_SPACINGS) * LATTICE_SECTORS
    return SpectralBands(
        band(WATER_RING_BAND),
        band(WATER_RING_REFERENCE),
        ice,
        ice_bins,
        np.bincount(ice_bins),
        rings,
        lattice,
        lattice_bin,
        np.bincount(lattice_bin, None, bins),
        reference,
        reference_bin,
        np.bincount(reference_bin, None, bins),
        sector,
        sector_of,
        np.bincount(sector_of, None, ANISOTROPY_SECTORS),
        band(FLAT_LOW),
        band(FLAT_HIGH),
    )


#: The mean power of these bands is the first part of every row of :func:`spectral_sums`.
MEAN_BANDS = ("ring", "reference", "flat_low", "flat_high")


@dataclass(frozen=True)
class SpectralSums:
    """The reductions of one square's half-spectrum that its spectral and CTF metrics
    need (one row of :func:`spectral_sums`, in host memory)."""

    means: np.ndarray  # mean power of MEAN_BANDS (NaN: an empty band)
    ice: np.ndarray  # power sums per radial ice bin
    ring_quantiles: np.ndarray  # 99.5th percentile and median of the power on the ice rings
    on_ring: np.ndarray  # power sums per ring·sector bin, on and beside the ice rings
    beside: np.ndarray
    sectors: np.ndarray  # power sums per anisotropy sector
    thon: np.ndarray | None  # ctf.ring_sums

    @classmethod
    def split(cls, rows: np.ndarray, shape: tuple[int, int], pixel_size: float) -> list[SpectralSums]:
        """The sums of each square from the rows of :func:`spectral_sums` of ``shape`` half-spectra."""
        bands = host_grid(spectral_bands, *shape, pixel_size)
        grid = host_grid(ring_grid, *shape, pixel_size)
        binned = (bands.ice_bins_n, bands.lattice_n, bands.lattice_reference_n, bands.sector_n)
        sizes = [len(MEAN_BANDS), binned[0].size, 2, *(n.size for n in binned[1:])]
        parts = np.split(rows, np.cumsum(sizes), axis=1)
        thon = parts[-1] if grid is not None else [None] * len(rows)
        return [cls(*fields) for fields in zip(*parts[:-1], thon)]


@functools.lru_cache(maxsize=8)
def _ring_levels(device: torch.device) -> torch.Tensor:
    """The quantiles of the ice rings' power that ``ice_spots`` compares, on ``device``
    (kept: a copy to a GPU would wait for it)."""
    import torch

    return torch.tensor(RING_LEVELS, dtype=torch.float64, device=device)


def spectral_sums(amplitudes: torch.Tensor, pixel_size: float) -> torch.Tensor:
    """The reductions of ``[k, D, D/2+1]`` cropped half-spectra ``|Fc|`` that their spectral
    and CTF metrics need, one float64 row per square (:meth:`SpectralSums.split`), made on
    their device without waiting for it."""
    import torch

    k, rows, cols = amplitudes.shape
    on = device_grid(spectral_bands, rows, cols, pixel_size, amplitudes.device)
    bands = host_grid(spectral_bands, rows, cols, pixel_size)
    flat = amplitudes.reshape(k, -1)
    rings = band_power(flat, on["ice_rings"])
    if rings.shape[1]:
        quantiles = torch.quantile(rings, _ring_levels(rings.device), dim=1).T  # (one sort for both)
    else:
        quantiles = rings.new_full((k, 2), math.nan)
    thon = ring_sums(amplitudes, pixel_size)
    parts = [
        torch.stack([band_power(flat, on[band]).mean(dim=1) for band in MEAN_BANDS], dim=1),  # (empty: NaN)
        binned_power(flat, on["ice"], on["ice_bins"], bands.ice_bins_n.size),
        quantiles,
        binned_power(flat, on["lattice"], on["lattice_bin"], bands.lattice_n.size),
        binned_power(flat, on["lattice_reference"], on["lattice_reference_bin"], bands.lattice_reference_n.size),
        binned_power(flat, on["sector"], on["sector_of"], bands.sector_n.size),
        *([] if thon is None else [thon]),
    ]
    return torch.cat(parts, dim=1)


def spectral_metrics(amplitude: np.ndarray | torch.Tensor, pixel_size: float) -> dict[str, float]:
    """The spectral and CTF metrics of one square's cropped half-spectrum ``|Fc|``
    (``[D, D/2+1]``), wherever it is."""
    import torch

    spectrum = torch.as_tensor(amplitude)
    shape = (spectrum.shape[0], spectrum.shape[1])
    (sums,) = SpectralSums.split(spectral_sums(spectrum[None], pixel_size).cpu().numpy(), shape, pixel_size)
    return spectral_metrics_from(sums, shape, pixel_size)


def spectral_metrics_from(sums: SpectralSums, shape: tuple[int, int], pixel_size: float) -> dict[str, float]:
    """The spectral and CTF metrics from the :class:`SpectralSums` of a half-spectrum of ``shape``."""
    bands = host_grid(spectral_bands, *shape, pixel_size)
    ring, reference, flat_low, flat_high = sums.means  # (numpy scalars: x / 0 is inf or NaN)
    profile = sums.ice / np.maximum(bands.ice_bins_n, 1)
    profile = profile[profile > 0]
    on_ring, on_ring_n = sums.on_ring, bands.lattice_n
    beside, beside_n = sums.beside, bands.lattice_reference_n
    seen = (on_ring_n > 0) & (beside_n > 0) & (beside > 0)
    contrast = np.where(
        seen, on_ring * np.maximum(beside_n, 1) / np.maximum(on_ring_n, 1) / np.where(seen, beside, 1), np.nan
    )
    per_ring = contrast.reshape(len(ICE_SPACINGS), LATTICE_SECTORS)
    peaks = [np.nanmax(r) / np.nanmedian(r) for r in per_ring if np.isfinite(r).sum() >= LATTICE_SECTORS // 2]
    sectors = sums.sectors / np.maximum(bands.sector_n, 1)
    high, median = sums.ring_quantiles
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "water_ring": float(ring / reference),
            "ice_peak": float(profile.max() / np.median(profile)) if profile.size else math.nan,
            "ice_spots": float(high / median),
            "ice_lattice": float(max(peaks)) if peaks else math.nan,
            "anisotropy": float(1 - sectors.min() / sectors.max()) if sectors.max() > 0 else math.nan,
            "anisotropy_angle": (int(np.argmin(sectors)) + 0.5) * 180 / ANISOTROPY_SECTORS,
            "flatness": float(flat_low / flat_high),
            **ctf_metrics_from(sums.thon, *shape, pixel_size),
        }


def coarse_grid(pixel_size: float | None, shape: tuple[int, ...]) -> tuple[int, float]:
    """The block size that takes an image of ``shape`` at ``pixel_size`` (Å; None: the
    image is taken as 4000 Å wide, e.g. PNGs of unknown scale) to about 12 Å per pixel,
    and the pixel size after it."""
    apix = pixel_size or 4000.0 / max(shape)
    step = max(1, int(12.0 // apix))
    return step, apix * step


def block_means_along(planes: torch.Tensor, step: int, dim: int) -> torch.Tensor:
    """Means of ``step`` consecutive values along ``dim`` (-2: rows, -1: columns) of
    ``[..., H, W]`` planes, on their device (a remainder dropped). The preprocessing
    takes them one axis at a time (:func:`miffi.preprocess.recipe.image_views`)."""
    count = planes.shape[dim] // step
    means: torch.Tensor = planes.narrow(dim, 0, count * step).unflatten(dim, (count, step)).mean(dim)
    return means


def block_means(images: torch.Tensor, step: int) -> torch.Tensor:
    """Means of ``step × step`` blocks of each ``[..., H, W]`` plane, on its device (a
    remainder at the edges is dropped)."""
    return block_means_along(block_means_along(images, step, -2), step, -1)


def realspace_metrics(
    image: np.ndarray, pixel_size: float | None, scale: float = 1.0, offset: float = 0.0
) -> dict[str, float]:
    """Metrics of the real-space image ``scale · image + offset`` (any intensity units).

    ``pixel_size`` (Å) sets the smoothing and object sizes (:func:`coarse_grid`). (``scale``
    and ``offset`` are applied after block averaging, which is cheaper than on the full
    image.)
    """
    import torch

    image = np.require(image, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
    step, coarse_apix = coarse_grid(pixel_size, image.shape)
    return coarse_metrics(block_means(torch.from_numpy(image), step).numpy() * scale + offset, coarse_apix)


def coarse_metrics(small: np.ndarray, small_apix: float) -> dict[str, float]:
    """The real-space metrics of an image in blocks of about 12 Å (:func:`coarse_grid`),
    in input intensity units."""
    fine = ndi.gaussian_filter(small, 20.0 / small_apix)
    median = float(np.median(fine))
    spread = 1.4826 * float(np.median(np.abs(fine - median))) or float(fine.std()) or 1.0
    dark = fine < median - 5 * spread
    labels, count = ndi.label(dark)
    sizes = np.bincount(labels.ravel())[1:]
    min_area = (200.0 / small_apix) ** 2

    edge, coverage = film_edge(small, small_apix)
    return {
        "dark_fraction": float(dark.mean()),
        "dark_count": float((sizes >= min_area).sum()),
        "bright_fraction": float((fine > median + 5 * spread).mean()),
        "film_edge": edge,
        "film_side_fraction": coverage,
        "mean_intensity": float(small.mean()),
    }
