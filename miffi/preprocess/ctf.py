"""A CTF fit per square, from the amplitudes preprocessing already computes.

Thon rings are periodic in k² (the defocus part of the phase is πλΔf·k²), so the
radially averaged log-power between 40 Å and 3.3 Å (or Nyquist) is resampled on a
uniform k² grid. For each candidate defocus the observation is high-passed by a moving
average one ring period long — which takes out the smooth background (envelope, ice,
noise) and leaves the rings — and correlated with the rings of the model,
−cos 2(χ + φ) (χ with Cs, φ the amplitude-contrast phase); the best candidate is the
defocus. The same fit in six 30° sectors, around it, gives the astigmatism from
Δf(θ) = a + b·cos 2θ + c·sin 2θ (RELION's convention: ``defocus_u`` along the angle).

``thon_resolution``
    where the ring correlation, in windows of three ring periods going outwards, first
    drops below ``FIT_CORRELATION`` (Å), as CTF-estimation jobs report their fit
    resolution from the fit's own correlation; NaN without rings.
``thon_anisotropy``
    1 − (worst / best) of the sectors' fit resolutions (as spatial frequencies): drift
    erases the rings along its direction only, so the fit holds much further in one
    direction than across it (≈ 0 for an isotropic fit).
``thon_rings``
    the correlation of the best fit: ≈ 0 without rings (an empty hole, no specimen),
    0.4–0.9 with them.
``thon_defocus``, ``thon_astigmatism``, ``thon_angle``
    mean defocus (Å, underfocus positive), |Δf_U − Δf_V| (Å) and the angle of Δf_U
    (degrees), assuming 300 kV, Cs 2.7 mm and amplitude contrast 0.1 (another voltage
    scales the defocus by the ratio of wavelengths; the rest does not depend on it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from miffi.preprocess.grids import binned_power, device_grid, host_grid
from miffi.preprocess.metric_names import CTF_METRICS

if TYPE_CHECKING:
    import torch

VOLTAGE_KV, CS_MM, AMPLITUDE_CONTRAST = 300.0, 2.7, 0.1
LOW_RESOLUTION, HIGH_RESOLUTION = 40.0, 3.3
DEFOCUS_RANGE, CANDIDATES = (2000.0, 60000.0), 120
FIT_CORRELATION = 0.3
#: Ring correlation below which a spectrum is taken to have no Thon rings.
THON_THRESHOLD = 0.3
SAMPLES = 1024
SECTORS = 6


def wavelength(kilovolts: float) -> float:
    """Relativistic electron wavelength (Å) at ``kilovolts``."""
    volts = kilovolts * 1e3
    return 12.2643 / math.sqrt(volts * (1 + 0.978466e-6 * volts))


@dataclass(frozen=True)
class RingGrid:
    """Where the half-spectrum's samples fall: radial bins and sectors of the fitted band,
    and the uniform k² grid the profiles are resampled on."""

    index: np.ndarray
    bin_of: np.ndarray  # radial bin + bins · sector of each sample of ``index``
    counts: np.ndarray  # samples per [sector, radial bin]
    centres2: np.ndarray
    k2: np.ndarray

    DEVICE_FIELDS: ClassVar[tuple[str, ...]] = ("index", "bin_of")  # (grids.device_grid)


@functools.lru_cache(maxsize=16)
def ring_grid(rows: int, cols: int, pixel_size: float) -> RingGrid | None:
    """The grid of a ``rows × cols`` half-spectrum at ``pixel_size``; None when the band
    below Nyquist is too narrow to hold rings."""
    high = min(1 / HIGH_RESOLUTION, 0.95 / (2 * pixel_size))
    if high <= 2 / LOW_RESOLUTION:
        return None
    ky = np.fft.fftfreq(rows, d=pixel_size)[:, None]
    kx = (np.arange(cols) / ((cols - 1) * 2 * pixel_size))[None, :]
    k = np.hypot(kx, ky).ravel()
    angle = (np.arctan2(ky, kx) % np.pi).ravel()
    index = np.flatnonzero((k >= 1 / LOW_RESOLUTION) & (k <= high))
    step = 1.0 / (rows * pixel_size)
    bins = np.floor((k[index] - 1 / LOW_RESOLUTION) / step).astype(int)
    centres = (np.arange(int(bins.max()) + 1) + 0.5) * step + 1 / LOW_RESOLUTION
    sector = np.minimum((angle[index] / (np.pi / SECTORS)).astype(int), SECTORS - 1)
    bin_of = bins + centres.size * sector
    counts = np.bincount(bin_of, None, centres.size * SECTORS).reshape(SECTORS, centres.size)
    return RingGrid(index, bin_of, counts, centres**2, np.linspace((1 / LOW_RESOLUTION) ** 2, high**2, SAMPLES))


def _period(defocus: float | np.ndarray) -> float | np.ndarray:
    """One Thon ring period in k² (Å⁻²) at ``defocus``."""
    return 1.0 / (wavelength(VOLTAGE_KV) * defocus)


def _rings(k2: np.ndarray, defocus: np.ndarray) -> np.ndarray:
    """The rings of each candidate without their mean: sin²(χ + φ) − ½ = −½·cos 2(χ + φ)."""
    lam, cs = wavelength(VOLTAGE_KV), CS_MM * 1e7
    phase = math.pi * lam * defocus[:, None] * k2[None, :] - 0.5 * math.pi * cs * lam**3 * k2[None, :] ** 2
    rings: np.ndarray = -np.cos(2 * (phase + math.asin(AMPLITUDE_CONTRAST)))
    return rings


def _highpass(profile: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """``profile`` minus its moving average over each of ``windows`` samples (one row each)."""
    n = profile.size
    summed = np.concatenate([[0.0], np.cumsum(profile)])
    i = np.arange(n)[None, :]
    half = windows[:, None] // 2
    low, high = np.clip(i - half, 0, n), np.clip(i + half + 1, 0, n)
    result: np.ndarray = profile[None, :] - (summed[high] - summed[low]) / (high - low)
    return result


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    result: np.ndarray = (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1) + 1e-30)
    return result


def _best(profile: np.ndarray, k2: np.ndarray, candidates: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The best candidate defocus, its correlation, and its high-passed profile and rings."""
    windows = np.maximum(3, np.round(_period(candidates) / (k2[1] - k2[0]))).astype(int)
    observed, model = _highpass(profile, windows), _rings(k2, candidates)
    correlation = _correlation(observed, model)
    best = int(np.argmax(correlation))
    return float(candidates[best]), float(correlation[best]), observed[best], model[best]


def _fit_resolution(observed: np.ndarray, model: np.ndarray, k2: np.ndarray, defocus: float) -> float:
    """Where the correlation in windows of three ring periods first drops below
    FIT_CORRELATION going outwards (Å); NaN when it is below from the start."""
    width = min(len(observed), max(8, int(3 * _period(defocus) / (k2[1] - k2[0]))))  # (a narrow band: all of it)
    reached = None
    for start in range(0, len(observed) - width + 1, max(1, width // 3)):
        window = slice(start, start + width)
        if float(_correlation(observed[window], model[window])) < FIT_CORRELATION:
            break
        reached = start + width
    return math.nan if reached is None else float(1 / math.sqrt(k2[min(reached, len(k2) - 1)]))


def ring_sums(amplitudes: torch.Tensor, pixel_size: float) -> torch.Tensor | None:
    """The power sums of ``[k, rows, cols]`` half-spectra ``|Fc|`` per [sector, radial bin]
    of their :func:`ring_grid` (flat, one row per square), on their device; None without
    that band."""
    k, rows, cols = amplitudes.shape
    on = device_grid(ring_grid, rows, cols, pixel_size, amplitudes.device)
    grid = host_grid(ring_grid, rows, cols, pixel_size)
    if grid is None:
        return None
    return binned_power(amplitudes.reshape(k, -1), on["index"], on["bin_of"], grid.counts.size)


def ctf_metrics_from(sums: np.ndarray | None, rows: int, cols: int, pixel_size: float) -> dict[str, float]:
    """The CTF metrics (see the module's docstring) from the :func:`ring_sums` of one
    ``rows × cols`` half-spectrum."""
    unknown = dict.fromkeys(CTF_METRICS, math.nan)
    grid = host_grid(ring_grid, rows, cols, pixel_size)
    if grid is None or sums is None:
        return unknown
    counts = grid.counts
    sums = sums.reshape(counts.shape)

    def profile(total: np.ndarray, n: np.ndarray) -> np.ndarray:
        seen = (n > 0) & (total > 0)
        if not seen.any():  # no power in the band (a spectrum filtered away there): flat, no rings
            return np.zeros_like(grid.k2)
        resampled: np.ndarray = np.interp(grid.k2, grid.centres2[seen], np.log(total[seen] / n[seen]))
        return resampled

    radial = profile(sums.sum(axis=0), counts.sum(axis=0))
    coarse, _, _, _ = _best(radial, grid.k2, np.geomspace(*DEFOCUS_RANGE, CANDIDATES))
    defocus, score, observed, model = _best(radial, grid.k2, np.linspace(0.97 * coarse, 1.03 * coarse, 41))
    if score < THON_THRESHOLD:
        return {**unknown, "thon_rings": score}
    around = np.linspace(0.92 * defocus, 1.08 * defocus, 65)
    per_sector, reach = [], []
    for s in range(SECTORS):
        sector_defocus, _, sector_observed, sector_model = _best(profile(sums[s], counts[s]), grid.k2, around)
        per_sector.append(sector_defocus)
        resolution = _fit_resolution(sector_observed, sector_model, grid.k2, sector_defocus)
        reach.append(1 / resolution if math.isfinite(resolution) else 1 / LOW_RESOLUTION)
    theta = (np.arange(SECTORS) + 0.5) * np.pi / SECTORS
    design = np.stack([np.ones(SECTORS), np.cos(2 * theta), np.sin(2 * theta)], axis=1)
    mean, cosine, sine = np.linalg.lstsq(design, np.asarray(per_sector), rcond=None)[0]
    return {
        "thon_defocus": float(mean),
        "thon_astigmatism": float(2 * math.hypot(cosine, sine)),
        "thon_angle": float(math.degrees(0.5 * math.atan2(sine, cosine)) % 180),
        "thon_resolution": _fit_resolution(observed, model, grid.k2, defocus),
        "thon_anisotropy": float(1 - min(reach) / max(reach)),
        "thon_rings": score,
    }
