"""One simulated micrograph: its labels, the physical parameters drawn for them, and the image.

:func:`draw_scene` turns labels into parameters (a :class:`Scene`, every field of
which goes into ``labels.csv``); :func:`render` turns a scene into counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.fft
import scipy.ndimage
import torch

from miffi.labels import GROUPS
from miffi.simulate.config import Detector, SimulationConfig
from miffi.simulate.physics import (
    CtfParams,
    bfactor_envelope,
    crystal_spectrum,
    ctf,
    half_grid,
    motion_transfer,
    random_field,
    water_ring_profile,
)

#: Coverage / fraction ranges that define each label (fractions of the image area).
FILM_COVERAGE = {"no_film": (0.0, 0.0), "minor_film": (0.04, 0.18), "major_film": (0.3, 0.8), "film": (1.0, 1.0)}
CONTAMINATION = {"minor_contamination": (0.0, 0.02), "major_contamination": (0.12, 0.35)}
CRYSTAL = {  # area fraction, strength
    "not_crystalline": ((0.0, 0.0), (0.0, 0.0)),
    "minor_crystalline": ((0.15, 0.4), (0.5, 0.8)),
    "major_crystalline": ((0.7, 1.0), (0.8, 1.4)),
}
#: Inelastic mean free path (nm) of energy-filtered imaging, at 300 kV; ∝ voltage roughly.
MEAN_FREE_PATH_300 = 350.0


@dataclass
class Scene:
    """Everything that decides one simulated micrograph (all lengths in Å unless noted)."""

    micrograph: str
    film: str
    drift: str
    crystallinity: str
    contamination: str
    seed: int
    height: int
    width: int
    pixel_size: float
    voltage: float
    cs: float
    amplitude_contrast: float
    defocus_u: float
    defocus_v: float
    defocus_angle: float
    bfactor: float
    dose: float
    ice_thickness_nm: float
    particle_diameter: float
    particle_density_per_um2: float
    drift_kind: str  # none | drift | crack | empty
    drift_length: float
    drift_angle: float  # degrees
    drift_curved: bool
    residual_drift: float
    crack_angle: float  # degrees
    crack_gap: float
    crack_shift: float
    crystal_fraction: float  # target area fraction
    crystal_strength: float
    crystal_domain_size: float
    film_coverage: float  # target area fraction
    contamination_fraction: float  # target area fraction
    ctf_max_resolution: float = 0.0
    ctf_figure_of_merit: float = 0.0
    particle_count: int = 0
    film_fraction_actual: float = 0.0
    contamination_fraction_actual: float = 0.0
    crystal_fraction_actual: float = 0.0

    @property
    def labels(self) -> dict[str, str]:
        return {group: getattr(self, group) for group in GROUPS}

    @property
    def ctf_params(self) -> CtfParams:
        return CtfParams(
            self.voltage,
            self.cs,
            self.amplitude_contrast,
            self.defocus_u,
            self.defocus_v,
            self.defocus_angle,
            self.bfactor,
        )

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _pick(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    names = list(probabilities)
    weights = np.asarray([probabilities[n] for n in names], dtype=float)
    return names[rng.choice(len(names), p=weights / weights.sum())]


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def draw_scene(
    name: str, seed: int, detector: Detector, config: SimulationConfig, labels: dict[str, str] | None = None
) -> Scene:
    """Draw the labels (unless given) and the parameters that realise them."""
    rng = np.random.default_rng(seed)
    chosen: dict[str, Any] = dict(labels or {group: _pick(rng, config.mix[group]) for group in GROUPS})
    labels = chosen
    defocus = _uniform(rng, config.defocus)
    astig = _uniform(rng, config.astigmatism)
    drift_kind = "none" if labels["drift"] == "no_crack_drift" else _pick(rng, config.bad_drift_kinds)
    (frac_lo_hi, strength_lo_hi) = CRYSTAL[labels["crystallinity"]]
    return Scene(
        micrograph=name,
        seed=seed,
        **chosen,
        height=detector.height,
        width=detector.width,
        pixel_size=detector.pixel_size,
        voltage=config.voltage,
        cs=config.cs,
        amplitude_contrast=config.amplitude_contrast,
        defocus_u=defocus + astig / 2,
        defocus_v=defocus - astig / 2,
        defocus_angle=_uniform(rng, (-90.0, 90.0)),
        bfactor=_uniform(rng, config.bfactor),
        dose=_uniform(rng, config.dose),
        ice_thickness_nm=0.0 if drift_kind == "empty" else _uniform(rng, config.ice_thickness),
        particle_diameter=_uniform(rng, config.particle_diameter),
        particle_density_per_um2=_uniform(rng, config.particle_density),
        drift_kind=drift_kind,
        drift_length=_uniform(rng, config.drift_length) if drift_kind == "drift" else 0.0,
        drift_angle=_uniform(rng, (0.0, 180.0)),
        drift_curved=bool(rng.random() < 0.4) if drift_kind == "drift" else False,
        residual_drift=_uniform(rng, config.residual_drift),
        crack_angle=_uniform(rng, (0.0, 180.0)),
        crack_gap=_uniform(rng, (150.0, 900.0)) if drift_kind == "crack" else 0.0,
        crack_shift=_uniform(rng, (30.0, 120.0)) if drift_kind == "crack" else 0.0,
        crystal_fraction=_uniform(rng, frac_lo_hi),
        crystal_strength=_uniform(rng, strength_lo_hi),
        crystal_domain_size=_uniform(rng, (150.0, 500.0)),
        film_coverage=_uniform(rng, FILM_COVERAGE[labels["film"]]),
        contamination_fraction=_uniform(rng, CONTAMINATION[labels["contamination"]]),
    )


# --- masks -------------------------------------------------------------------------------


def _coarse_field(shape: tuple[int, int], correlation_px: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth unit-variance noise at full size, made on a coarse grid and upsampled."""
    factor = max(1, int(correlation_px // 4))
    small = (max(2, shape[0] // factor + 2), max(2, shape[1] // factor + 2))
    noise = scipy.ndimage.gaussian_filter(rng.standard_normal(small), sigma=correlation_px / factor / 2)
    noise = (noise - noise.mean()) / (noise.std() + 1e-12)
    tensor = torch.from_numpy(noise.astype(np.float32))[None, None]
    return torch.nn.functional.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def film_distance(shape: tuple[int, int], coverage: float, pixel_size: float, rng: np.random.Generator) -> np.ndarray:
    """Signed distance (Å) into the carbon beyond a circular hole edge; > 0 is carbon.

    The hole is placed so that carbon covers about ``coverage`` of the image.
    """
    rows, cols = shape
    if coverage <= 0:
        return np.full(shape, -1e9, dtype=np.float32)
    if coverage >= 1:
        return np.full(shape, 1e9, dtype=np.float32)
    radius = rng.uniform(4000.0, 9000.0) / pixel_size  # hole radius 0.4–0.9 µm
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([math.sin(angle), math.cos(angle)])
    centre = np.array([rows / 2, cols / 2])
    yy, xx = np.mgrid[0:rows:16, 0:cols:16]

    def covered(distance: float) -> float:
        cy, cx = centre - direction * distance
        return float(np.mean(np.hypot(yy - cy, xx - cx) > radius))

    low, high = radius - 2 * max(rows, cols), radius + 2 * max(rows, cols)
    for _ in range(40):  # coverage increases with the distance of the hole centre
        mid = 0.5 * (low + high)
        low, high = (mid, high) if covered(mid) < coverage else (low, mid)
    cy, cx = centre - direction * 0.5 * (low + high)
    y = np.arange(rows, dtype=np.float32)[:, None]
    x = np.arange(cols, dtype=np.float32)[None, :]
    result: np.ndarray = (np.hypot(y - cy, x - cx) - radius) * pixel_size
    return result


def crack_masks(shape: tuple[int, int], pixel_size: float, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(gap, far side) of a straight crack through the image centre."""
    rows, cols = shape
    theta = math.radians(scene.crack_angle)
    y = np.arange(rows, dtype=np.float32)[:, None] - rows / 2
    x = np.arange(cols, dtype=np.float32)[None, :] - cols / 2
    signed = (x * math.sin(theta) - y * math.cos(theta)) * pixel_size
    half = scene.crack_gap / 2
    return np.abs(signed) < half, signed >= half


def contamination_objects(
    shape: tuple[int, int], pixel_size: float, scene: Scene, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Soft mask and thickness (nm) of ice crystals and ethane droplets covering the target fraction."""
    rows, cols = shape
    mask = np.zeros(shape, dtype=np.float32)
    thickness = np.zeros(shape, dtype=np.float32)
    target = scene.contamination_fraction
    area = rows * cols
    covered = 0.0
    while covered < target * area:
        crystal = target > 0.05 and rng.random() < 0.6
        radius = (rng.uniform(600, 2500) if crystal else rng.uniform(80, 450)) / pixel_size
        radius = min(radius, 1.2 * math.sqrt((target * area - covered) / math.pi))  # do not overshoot
        if radius < 2:
            break
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        r0, r1 = int(max(cy - radius - 3, 0)), int(min(cy + radius + 4, rows))
        c0, c1 = int(max(cx - radius - 3, 0)), int(min(cx + radius + 4, cols))
        if r1 <= r0 or c1 <= c0:
            continue
        y = np.arange(r0, r1, dtype=np.float32)[:, None] - cy
        x = np.arange(c0, c1, dtype=np.float32)[None, :] - cx
        if crystal:  # irregular hexagon-ish outline
            phi = np.arctan2(y, x)
            edge = radius * (1 + 0.12 * np.cos(6 * phi + rng.uniform(0, 2 * np.pi)))
        else:
            edge = radius
        inside = np.clip(edge - np.hypot(y, x) + 0.5, 0.0, 1.0)
        depth = rng.uniform(150, 600) if crystal else rng.uniform(60, 200)
        region = mask[r0:r1, c0:c1]
        covered += float(np.sum(np.maximum(inside - region, 0)))
        np.maximum(region, inside, out=region)
        np.maximum(thickness[r0:r1, c0:c1], inside * depth, out=thickness[r0:r1, c0:c1])
    return mask, thickness


def crystal_domains(shape: tuple[int, int], fraction: float, pixel_size: float, rng: np.random.Generator) -> np.ndarray:
    """Soft mask of the crystalline part of the ice (about ``fraction`` of the area)."""
    if fraction <= 0:
        return np.zeros(shape, dtype=np.float32)
    if fraction >= 0.999:
        return np.ones(shape, dtype=np.float32)
    field = _coarse_field(shape, 2500.0 / pixel_size, rng)
    threshold = np.quantile(field[::8, ::8], 1 - fraction)
    result: np.ndarray = np.clip((field - threshold) * 4 + 0.5, 0, 1).astype(np.float32)
    return result


# --- particles ---------------------------------------------------------------------------


def particle_templates(
    diameter: float, pixel_size: float, rng: np.random.Generator, count: int = 6
) -> list[np.ndarray]:
    """Projected phase (rad) of random blob assemblies, each in its 8 dihedral orientations."""
    radius = diameter / 2 / pixel_size
    size = int(2 * radius * 1.3) | 1
    grid = np.arange(size, dtype=np.float32) - size // 2
    peak = 0.0006 * diameter  # phase through the middle of a protein of that diameter, minus the ice it displaces
    out = []
    for _ in range(count):
        blobs = int(rng.integers(12, 40))
        centres = rng.normal(0, radius / 2.2, size=(blobs, 3))
        sigma = rng.uniform(radius / 7, radius / 3.5, size=blobs)
        image = np.zeros((size, size), dtype=np.float32)
        for (cx, cy, cz), s in zip(centres, sigma):
            gy = np.exp(-0.5 * ((grid - cy) / s) ** 2)[:, None]
            gx = np.exp(-0.5 * ((grid - cx) / s) ** 2)[None, :]
            image += s * gy * gx  # projected 3D Gaussian: ∝ σ along the beam
        image *= peak / image.max()
        for k in range(4):
            rotated = np.rot90(image, k)
            out += [rotated, rotated[::-1]]
    return out


def paste_particles(
    phase: np.ndarray, allowed: np.ndarray, pixel_size: float, scene: Scene, rng: np.random.Generator
) -> int:
    """Add particles at random positions where ``allowed``; returns how many."""
    rows, cols = phase.shape
    area_um2 = rows * cols * (pixel_size * 1e-4) ** 2
    wanted = rng.poisson(scene.particle_density_per_um2 * area_um2)
    if wanted == 0 or not allowed.any():
        return 0
    templates = particle_templates(scene.particle_diameter, pixel_size, rng)
    size = templates[0].shape[0]
    half = size // 2
    if size >= min(rows, cols):  # an image smaller than one particle
        return 0
    placed = 0
    for _ in range(wanted):
        cy, cx = int(rng.integers(half, rows - half)), int(rng.integers(half, cols - half))
        if not allowed[cy, cx]:
            continue
        phase[cy - half : cy - half + size, cx - half : cx - half + size] += templates[rng.integers(len(templates))]
        placed += 1
    return placed


# --- the image ---------------------------------------------------------------------------


def _drift_segments(scene: Scene) -> list[tuple[float, float, float, float]]:
    angle = math.radians(scene.drift_angle)
    length = scene.drift_length + scene.residual_drift
    dx, dy = length * math.cos(angle), length * math.sin(angle)
    if not scene.drift_curved:
        return [(0.0, 0.0, dx, dy)]
    bend = math.radians(60.0)  # a path that turns: two thirds one way, then bends
    x1, y1 = 0.66 * dx, 0.66 * dy
    rest = 0.34 * length
    return [(0.0, 0.0, x1, y1), (x1, y1, x1 + rest * math.cos(angle + bend), y1 + rest * math.sin(angle + bend))]


def estimate_fit_resolution(scene: Scene, rng: np.random.Generator) -> tuple[float, float]:
    """A CTF-fit resolution (Å) and figure of merit as a CTF program would report them.

    A proxy: the resolution where the B-factor envelope times the angle-averaged motion
    transfer falls below 0.3; empty holes have nothing to fit.
    """
    if scene.drift_kind == "empty":
        return float(rng.uniform(12, 30)), float(rng.uniform(0.0, 0.05))
    k = np.linspace(0.005, 0.45, 300, dtype=np.float32)
    angles = np.linspace(0, np.pi, 36, endpoint=False, dtype=np.float32)
    ky, kx = (k[:, None] * np.sin(angles)[None, :]), (k[:, None] * np.cos(angles)[None, :])
    transfer = np.abs(motion_transfer(ky, kx, _drift_segments(scene))).mean(axis=1)
    signal = np.exp(-0.25 * scene.bfactor * k**2) * transfer
    below = np.nonzero(signal < 0.3)[0]
    resolution = 1 / k[below[0]] if below.size else 1 / k[-1]
    resolution = float(np.clip(resolution * rng.uniform(0.92, 1.08), 2.2, 40.0))
    return resolution, float(np.clip(0.35 / resolution * 3 + rng.normal(0, 0.02), 0.01, 0.5))


#: Pixel size (Å) on which specimen and optics are simulated. Its Nyquist frequency
#: (1/2.5 Å⁻¹) lies beyond every ice reflection and beyond the 1.5 Å that Miffi keeps;
#: finer detector pixels receive the image by Fourier interpolation, then shot noise.
WORK_PIXEL_SIZE = 1.25


def fourier_resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Band-limited interpolation of ``image`` onto a finer grid of ``shape`` (values kept)."""
    if image.shape == shape:
        return image
    rows, cols = image.shape
    spectrum = scipy.fft.rfft2(image, workers=-1)
    padded = np.zeros((shape[0], shape[1] // 2 + 1), dtype=spectrum.dtype)
    top = (rows + 1) // 2
    padded[:top, : cols // 2 + 1] = spectrum[:top]
    padded[shape[0] - (rows - top) :, : cols // 2 + 1] = spectrum[top:]
    scale = shape[0] * shape[1] / (rows * cols)
    result: np.ndarray = (scipy.fft.irfft2(padded, s=shape, workers=-1) * scale).astype(np.float32)
    return result


def render(scene: Scene) -> np.ndarray:
    """The micrograph of ``scene`` as float32 electron counts (rows × columns)."""
    rng = np.random.default_rng([scene.seed, 1])
    apix = max(scene.pixel_size, WORK_PIXEL_SIZE)
    scale = scene.pixel_size / apix
    shape = (round(scene.height * scale), round(scene.width * scale))
    ky, kx = half_grid(shape, apix)
    k2 = ky * ky + kx * kx
    k = np.sqrt(k2)

    film = film_distance(shape, scene.film_coverage, apix, rng)
    carbon = film > 0
    ice = np.full(shape, scene.drift_kind != "empty", dtype=bool)
    far_side = None
    if scene.drift_kind == "crack":
        gap, far_side = crack_masks(shape, apix, scene)
        ice &= ~gap
    contamination, cont_thickness = contamination_objects(shape, apix, scene, rng)
    domains = crystal_domains(shape, scene.crystal_fraction, apix, rng) * ice

    # projected phase of the specimen
    thickness = max(scene.ice_thickness_nm, 1.0)
    phase = random_field(np.sqrt(water_ring_profile(k, thickness)), shape, rng)
    phase *= 0.12 * math.sqrt(thickness / 30.0) / (phase.std() + 1e-12)
    if scene.crystal_strength > 0:
        orientations = rng.uniform(0, np.pi / 3, size=3 if scene.crystallinity == "minor_crystalline" else 10)
        crystal = random_field(crystal_spectrum(ky, kx, orientations, scene.crystal_domain_size), shape, rng)
        crystal *= 0.2 * scene.crystal_strength * math.sqrt(thickness / 30.0) / (crystal.std() + 1e-12)
        phase += crystal * domains
    phase *= ice
    if carbon.any():
        texture = random_field(np.exp(-((k / 0.25) ** 2)) + 0.05, shape, rng)
        phase += carbon * texture * (0.08 / (texture.std() + 1e-12))
    scene.particle_count = paste_particles(phase, ice & ~carbon & (contamination < 0.5), apix, scene, rng)
    phase -= 0.3 * contamination  # phase step of dense objects: Fresnel fringes at their edges
    if far_side is not None:  # the far side of a crack has moved
        shift = scene.crack_shift / apix
        theta = math.radians(scene.crack_angle)
        moved = np.roll(phase, (round(-shift * math.cos(theta)), round(shift * math.sin(theta))), (0, 1))
        phase = np.where(far_side, moved, phase)

    # imaging: CTF, envelope, motion blur
    spectrum = scipy.fft.rfft2(phase, workers=-1)
    spectrum *= ctf(k2, np.arctan2(ky, kx), scene.ctf_params) * bfactor_envelope(k2, scene.bfactor)
    spectrum *= motion_transfer(ky, kx, _drift_segments(scene))
    contrast = scipy.fft.irfft2(spectrum, s=shape, workers=-1).astype(np.float32)

    # amplitude: inelastic losses in ice, carbon, contamination; crystalline mottling
    mean_free_path = MEAN_FREE_PATH_300 * scene.voltage / 300.0
    rim = np.exp(-np.clip(film, 0, None) / 250.0) * carbon  # film thickens towards the hole edge
    path = scene.ice_thickness_nm * ice + 25.0 * carbon + 60.0 * rim + cont_thickness
    amplitude = np.exp(-path / mean_free_path).astype(np.float32)
    if scene.crystal_strength > 0:
        mottling = _coarse_field(shape, 150.0 / apix, rng)
        amplitude *= 1 - 0.01 * scene.crystal_strength * domains * np.clip(mottling, 0, None)
    expected = scene.dose * scene.pixel_size**2 * amplitude * np.clip(1 + 2 * contrast, 0.05, None)
    expected = fourier_resample(expected, (scene.height, scene.width))

    scene.film_fraction_actual = float(carbon.mean())
    scene.contamination_fraction_actual = float((contamination > 0.5).mean())
    scene.crystal_fraction_actual = float((domains > 0.5).mean())
    scene.ctf_max_resolution, scene.ctf_figure_of_merit = estimate_fit_resolution(scene, rng)
    return shot_noise(np.clip(expected, 0, None), rng)


#: Above this many expected electrons per pixel, shot noise is drawn from the normal
#: approximation of the Poisson distribution (same mean and variance; 10x faster).
NORMAL_APPROXIMATION_COUNTS = 20.0


def shot_noise(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer electron counts with Poisson statistics around ``expected``."""
    counts = expected + np.sqrt(expected) * rng.standard_normal(expected.shape, dtype=np.float32)
    np.rint(counts, out=counts)
    np.clip(counts, 0, None, out=counts)
    low = expected < NORMAL_APPROXIMATION_COUNTS
    if low.any():
        counts[low] = rng.poisson(expected[low])
    result: np.ndarray = counts.astype(np.float32)
    return result
