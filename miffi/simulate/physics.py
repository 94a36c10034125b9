"""Physics of a simulated micrograph, as pure functions on frequency grids (Å, Å⁻¹).

Weak-phase approximation: the specimen is a projected phase ``φ(r)``; the image
contrast is ``IFFT[FFT(φ) · CTF · E_B · T_drift]`` and the recorded intensity is the
amplitude term ``I0(r)`` (inelastic/thickness losses) times ``1 + 2·contrast``, with
Poisson shot noise at the given dose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from miffi.preprocess.ctf import wavelength
from miffi.preprocess.metrics import ICE_SPACINGS  # (100), (002)/(111), (101) of hexagonal/cubic ice

#: Where amorphous (vitreous) ice scatters most: the "water ring".
WATER_RING = 3.70


@dataclass(frozen=True)
class CtfParams:
    """CTF parameters in RELION's conventions (defocus > 0 is underfocus)."""

    voltage: float = 300.0  # kV
    cs: float = 2.7  # mm
    amplitude_contrast: float = 0.1
    defocus_u: float = 15000.0  # Å
    defocus_v: float = 15000.0  # Å
    defocus_angle: float = 0.0  # degrees
    bfactor: float = 80.0  # Å²

    @property
    def wavelength(self) -> float:
        return wavelength(self.voltage)

    def defocus(self, angle: np.ndarray | float) -> np.ndarray | float:
        """Defocus (Å) along the direction ``angle`` (radians) in frequency space."""
        mean = 0.5 * (self.defocus_u + self.defocus_v)
        half = 0.5 * (self.defocus_u - self.defocus_v)
        return mean + half * np.cos(2 * (angle - math.radians(self.defocus_angle)))


def half_grid(shape: tuple[int, int], pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Å⁻¹) ``ky[:, None]``, ``kx[None, :]`` of an ``rfft2`` half-spectrum."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows, d=pixel_size).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(cols, d=pixel_size).astype(np.float32)[None, :]
    return ky, kx


def ctf(k2: np.ndarray, angle: np.ndarray, params: CtfParams) -> np.ndarray:
    """``-(√(1-A²) sin χ + A cos χ)`` with ``χ = π λ Δf(θ) k² − π/2 Cs λ³ k⁴``."""
    lam = params.wavelength
    cs = params.cs * 1e7
    chi = np.pi * lam * params.defocus(angle) * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
    a = params.amplitude_contrast
    result: np.ndarray = -(math.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi))
    return result


def ctf_zeros(params: CtfParams, count: int, angle: float = 0.0) -> np.ndarray:
    """Spatial frequencies (Å⁻¹) of the first ``count`` CTF zeros along ``angle`` (radians).

    Zeros satisfy ``χ(k) = mπ − arctan(A/√(1−A²))``, m = 1, 2, ...; each is a root of a
    quadratic in ``k²``.
    """
    lam = params.wavelength
    cs = params.cs * 1e7
    a = params.amplitude_contrast
    alpha = math.atan2(a, math.sqrt(1 - a * a))
    b = math.pi * lam * float(params.defocus(angle))
    c2 = 0.5 * math.pi * cs * lam**3
    out = []
    for m in range(1, count + 1):
        target = m * math.pi - alpha
        disc = b * b - 4 * c2 * target
        if disc < 0:
            break
        out.append(math.sqrt((b - math.sqrt(disc)) / (2 * c2)))
    return np.asarray(out)


def bfactor_envelope(k2: np.ndarray, bfactor: float) -> np.ndarray:
    return np.exp(-0.25 * bfactor * k2)


def motion_transfer(ky: np.ndarray, kx: np.ndarray, segments: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Transfer function of a motion path made of straight segments.

    Each segment is ``(x0, y0, x1, y1)`` in Å, exposed for a time proportional to its
    length; a straight segment of length L along d contributes
    ``e^{-2πi k·c} sinc(k·d L)`` (c its centre).
    """
    lengths = [math.hypot(x1 - x0, y1 - y0) for x0, y0, x1, y1 in segments]
    total = sum(lengths) or 1.0
    if len(segments) == 1:  # a global shift does not matter: skip its phase factor
        x0, y0, x1, y1 = segments[0]
        return np.sinc(kx * (x1 - x0) + ky * (y1 - y0)).astype(np.float32)
    transfer = np.zeros(np.broadcast_shapes(ky.shape, kx.shape), dtype=np.complex64)
    for (x0, y0, x1, y1), length in zip(segments, lengths):
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        dx, dy = x1 - x0, y1 - y0
        shift = np.exp(-2j * np.pi * (kx * cx + ky * cy)).astype(np.complex64)
        transfer += (length / total) * shift * np.sinc(kx * dx + ky * dy).astype(np.float32)
    return transfer


def water_ring_profile(k: np.ndarray, thickness_nm: float) -> np.ndarray:
    """Power spectrum (arbitrary units per nm of ice) of vitreous ice.

    A diffuse peak at 1/3.7 Å⁻¹ (the water ring) over a weak, smooth background;
    both scale with ice thickness.
    """
    k0 = 1.0 / WATER_RING
    ring = np.exp(-0.5 * ((k - k0) / 0.018) ** 2)
    background = 0.15 * np.exp(-((k / 0.35) ** 2)) + 0.02
    return thickness_nm * (ring + background)


def random_field(spectrum_amplitude: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A real Gaussian random field whose Fourier amplitude is ``spectrum_amplitude``.

    ``spectrum_amplitude`` is given on the ``rfft2`` half-grid of ``shape``; the field
    has unit-variance white noise shaped by it (one inverse FFT).
    """
    import scipy.fft

    half = spectrum_amplitude.shape
    noise = rng.standard_normal(half, dtype=np.float32) + 1j * rng.standard_normal(half, dtype=np.float32)
    scale = math.sqrt(shape[0] * shape[1] / 2)
    result: np.ndarray = scipy.fft.irfft2(noise * (spectrum_amplitude * scale), s=shape, workers=-1).astype(np.float32)
    return result


def crystal_spectrum(ky: np.ndarray, kx: np.ndarray, orientations: np.ndarray, domain_size: float) -> np.ndarray:
    """Fourier amplitude of crystalline ice: spots at the ice spacings.

    For each in-plane lattice orientation (radians) there are six spots on each of the
    three rings (hexagonal symmetry), broadened to a width ``1/domain_size`` so that
    the field consists of coherent domains about ``domain_size`` Å across.
    """
    width = 1.0 / domain_size
    amplitude = np.zeros(np.broadcast_shapes(ky.shape, kx.shape), dtype=np.float32)
    k = np.sqrt(kx * kx + ky * ky)
    for spacing, weight in zip(ICE_SPACINGS, (1.0, 0.8, 0.6)):
        k0 = 1.0 / spacing
        near = np.abs(k - k0) < 4 * width  # only pixels near the ring need the spot sum
        rows, cols = np.nonzero(near)
        if rows.size == 0:
            continue
        sub_kx = np.broadcast_to(kx, amplitude.shape)[rows, cols]
        sub_ky = np.broadcast_to(ky, amplitude.shape)[rows, cols]
        total = np.zeros(rows.size, dtype=np.float32)
        for theta in orientations:
            for j in range(6):
                angle = theta + j * np.pi / 3 + (spacing == ICE_SPACINGS[2]) * np.pi / 6
                sx, sy = k0 * math.cos(angle), k0 * math.sin(angle)
                total += np.exp(-0.5 * ((sub_kx - sx) ** 2 + (sub_ky - sy) ** 2) / width**2)
        amplitude[rows, cols] += weight * total
    return amplitude
