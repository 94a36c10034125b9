"""Support-film (hole) edges in the real-space image at about 12 Å per pixel.

An edge is found in two ways, the first that finds one giving ``film_edge`` and
``film_side_fraction`` (:mod:`miffi.preprocess.metrics`):

- **a line of strong intensity gradient** (:func:`gradient_line`) that cuts the view in
  two, its darker side the film (carbon and the ice on it scatter more);
- **a straight step in texture** (:func:`texture_step`): carbon's amorphous structure
  gives more fine phase contrast (periods below about 150 Å) than vitreous ice with
  particles, so a faint hole
  edge whose intensity step is no stronger than the particles' gradients still divides a
  finely textured side (the film) from a smoother one. The local power of that band,
  averaged along every straight line through the view, is compared on either side of
  each line; a hole edge gives a step far outside the spread of all the others (particles
  and noise average out along a line, an edge adds up). The texture is capped a few
  robust σ above its median, so that one contaminant's fringes do not make a step.

Both were checked on every coarse real image in ``../shared/realdata`` and on simulated
micrographs (docs/metrics.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

#: Gradient lines: the gradient scale (Å), the hysteresis levels (robust standard
#: deviations above the median gradient) and the least elongation (length over width).
EDGE_SCALE, EDGE_SEEDS, EDGE_GROWTH, EDGE_ELONGATION = 60.0, 6.0, 3.0, 2.5
#: The smaller side of a gradient line covers at least this fraction of the view; gaps
#: of up to ``EDGE_GAP`` pixels in the line, or between its end and the border, are closed.
EDGE_LEAST_SIDE, EDGE_GAP = 0.03, 3
#: Texture steps: the blur whose residue is the texture, and the smoothing of its power
#: (Gaussian σ, Å: the residue keeps periods below about 150 Å at half power); the
#: width of the strip compared on each side of a line (Å); the line angles tried (over
#: 180°); the step, in robust standard deviations of all lines' steps, that is an edge;
#: the least side (fraction of the view); the border left out (Å: filters and the frames
#: of exported images answer there); the grid the lines are summed on (Å per pixel); and
#: the cap on the texture (robust σ above its median, :func:`texture`).
TEXTURE_SCALE, STEP_WIDTH, STEP_ANGLES, STEP_LEAST_Z = 36.0, 300.0, 60, 8.0
STEP_LEAST_SIDE, STEP_MARGIN, STEP_GRID, TEXTURE_CAP = 0.05, 100.0, 24.0, 4.0


def _ridge(magnitude: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Where the gradient ``magnitude`` is a maximum along its own direction (Canny's
    thinning): an edge becomes a one-pixel line, however wide the ramp beside it."""
    octant = np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(int) % 4
    padded = np.pad(magnitude, 1, mode="edge")
    rows, cols = magnitude.shape
    ridge = np.zeros(magnitude.shape, dtype=bool)
    for direction, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
        behind = padded[1 - dy : 1 - dy + rows, 1 - dx : 1 - dx + cols]
        ridge |= (octant == direction) & (magnitude >= ahead) & (magnitude >= behind)
    return ridge


def gradient_line(image: np.ndarray, pixel_size: float) -> tuple[float, float]:
    """``(length, darker side)`` of the longest elongated line of strong gradient (at
    ``EDGE_SCALE``, thinned to its crest, seeded above ``EDGE_SEEDS`` and grown down to
    ``EDGE_GROWTH`` robust σ) that splits the view: its length over the view's longer
    side and the area fraction of its darker side; ``(0, NaN)`` without one."""
    sigma = EDGE_SCALE / pixel_size
    margin = int(round(3 * sigma))  # the filter's border response is no edge
    inner = image[margin:-margin, margin:-margin] if margin else image
    if min(inner.shape) < 8:
        return math.nan, math.nan
    window = (slice(margin, margin + inner.shape[0]), slice(margin, margin + inner.shape[1]))
    gy = ndi.gaussian_filter(image, sigma, order=(1, 0))[window]
    gx = ndi.gaussian_filter(image, sigma, order=(0, 1))[window]
    gradient = np.hypot(gy, gx)
    median = float(np.median(gradient))
    spread = 1.4826 * float(np.median(np.abs(gradient - median))) or 1.0
    z = np.where(_ridge(gradient, gy, gx), (gradient - median) / spread, 0.0)
    grown, count = ndi.label(ndi.binary_dilation(z > EDGE_GROWTH), np.ones((3, 3)))  # bridges 1-pixel breaks
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[np.unique(grown[z > EDGE_SEEDS])] = True
    frame = np.ones(inner.shape, dtype=bool)  # a line that ends this close to the border reaches it
    frame[EDGE_GAP:-EDGE_GAP, EDGE_GAP:-EDGE_GAP] = False
    best, coverage = 0.0, math.nan
    for label, box in enumerate(ndi.find_objects(grown), start=1):
        if not seeded[label] or box is None:
            continue
        ys, xs = np.nonzero(grown[box] == label)
        if ys.size < 10:
            continue
        across, along = np.linalg.eigvalsh(np.cov(np.vstack([ys, xs])))
        length, width = 4 * math.sqrt(along), 4 * math.sqrt(max(across, 0.0))
        if length <= best or length < EDGE_ELONGATION * max(width, 1.0):
            continue  # shorter than the best so far, or a blob
        barrier = ndi.binary_dilation(grown == label, iterations=EDGE_GAP) | frame
        sides, n_sides = ndi.label(~barrier)
        if n_sides < 2:
            continue
        areas = np.bincount(sides.ravel())[1:]
        first, second = np.argsort(areas)[::-1][:2] + 1
        if areas[second - 1] < EDGE_LEAST_SIDE * inner.size:
            continue
        darker = first if inner[sides == first].mean() < inner[sides == second].mean() else second
        best, coverage = length, float(areas[darker - 1] / (areas[first - 1] + areas[second - 1]))
    return best / max(inner.shape), coverage


def texture(image: np.ndarray, pixel_size: float) -> tuple[np.ndarray, float]:
    """The log local power of the image's fine detail (the image less its Gaussian blur
    of σ ``TEXTURE_SCALE``, squared, averaged onto the ``STEP_GRID`` grid and
    smoothed at the same scale), without a ``STEP_MARGIN`` border, capped ``TEXTURE_CAP``
    robust σ above its median; and its pixel size.

    The cap: a dense contaminant's fringes make the texture far higher in one spot, which
    would outweigh a whole strip beside a line; carbon's broad rise stays below it."""
    image = np.asarray(image, dtype=np.float32)
    detail = image - ndi.gaussian_filter(image, TEXTURE_SCALE / pixel_size)
    margin = int(round(STEP_MARGIN / pixel_size))
    detail = detail[margin : -margin or None, margin : -margin or None]
    grid = max(1, int(STEP_GRID // pixel_size))
    rows, cols = (detail.shape[0] // grid) * grid, (detail.shape[1] // grid) * grid
    power = (detail[:rows, :cols] ** 2).reshape(rows // grid, grid, cols // grid, grid).mean(axis=(1, 3))
    if not power.size:  # a view no larger than its border
        return power, pixel_size * grid
    power = ndi.gaussian_filter(power, TEXTURE_SCALE / (pixel_size * grid))
    floor = float(power.max()) * 1e-9 or 1.0  # a flat image has no texture, and no step
    logged: np.ndarray = np.log(power + floor)
    median = float(np.median(logged))
    cap = median + TEXTURE_CAP * 1.4826 * float(np.median(np.abs(logged - median)))
    return np.minimum(logged, cap), pixel_size * grid


@dataclass(frozen=True)
class _Lines:
    """The candidate lines of one angle across a ``rows × cols`` grid: the position of each
    cell along the angle, the lines between positions ``at - 1`` and ``at`` with cells
    within ``width`` on both sides, those cells' counts, the fraction of the view below
    each line and its length (in cells)."""

    position: np.ndarray
    at: np.ndarray
    before: np.ndarray
    after: np.ndarray
    below: np.ndarray
    length: np.ndarray


@functools.lru_cache(maxsize=8)
def _step_lines(rows: int, cols: int, width: int) -> list[_Lines]:
    """The :class:`_Lines` of each of ``STEP_ANGLES`` angles (geometry only: one set per
    view shape)."""
    y, x = np.mgrid[0:rows, 0:cols]
    y, x = y.ravel() - rows / 2, x.ravel() - cols / 2
    offset = math.hypot(rows, cols) / 2 + 0.5  # every position >= 0, rounded to the nearest
    lines = []
    for angle in np.arange(STEP_ANGLES) * (math.pi / STEP_ANGLES):
        position = (x * math.cos(angle) + y * math.sin(angle) + offset).astype(np.intp)
        counts = np.bincount(position)
        counted = np.concatenate([[0], np.cumsum(counts)])
        at = np.arange(width, counts.size - width + 1)  # a line between positions at-1 and at
        at = at[(counted[at] - counted[at - width] > 0) & (counted[at + width] - counted[at] > 0)]
        # a line's length: its pixels per position, averaged over a quarter strip (one
        # position's count swings between 0.7 and 1.4 times the length at 45°)
        half = max(1, width // 4)
        length = (counted[np.minimum(at + half, counts.size)] - counted[np.maximum(at - half, 0)]) / (2 * half)
        before, after = counted[at] - counted[at - width], counted[at + width] - counted[at]
        lines.append(_Lines(position, at, before, after, counted[at] / (rows * cols), length))
    return lines


def texture_step(image: np.ndarray, pixel_size: float) -> tuple[float, float, float]:
    """``(z, length, finer side)`` of the strongest straight step in :func:`texture`: the
    step's size in robust standard deviations of the steps of all lines, the line's
    length across the view over the view's longer side, and the area fraction of its more
    finely textured side. Lines whose smaller side is under ``STEP_LEAST_SIDE`` of the view
    are not tried; ``(0, 0, NaN)`` for a view too small or without texture."""
    values, grid_size = texture(image, pixel_size)
    width = max(2, int(round(STEP_WIDTH / grid_size)))
    rows, cols = values.shape
    if min(rows, cols) < 4 * width:
        return 0.0, 0.0, math.nan  # the strips on both sides of a line do not fit
    flat = values.ravel()
    per_angle = []
    for line in _step_lines(rows, cols, width):
        summed = np.concatenate([[0.0], np.cumsum(np.bincount(line.position, flat))])
        at = line.at
        before = (summed[at] - summed[at - width]) / line.before
        after = (summed[at + width] - summed[at]) / line.after
        per_angle.append((after - before, line.below, line.length))
    steps = np.concatenate([step for step, _, _ in per_angle])
    median = float(np.median(steps))
    spread = 1.4826 * float(np.median(np.abs(steps - median)))
    if not spread > 0:
        return 0.0, 0.0, math.nan
    best = (0.0, 0.0, math.nan)
    for step, below, length in per_angle:
        if not step.size:
            continue
        z = np.where((below >= STEP_LEAST_SIDE) & (below <= 1 - STEP_LEAST_SIDE), np.abs(step - median) / spread, 0.0)
        i = int(np.argmax(z))
        if z[i] > best[0]:
            finer = 1 - below[i] if step[i] > median else below[i]
            best = (float(z[i]), float(length[i] / max(rows, cols)), float(finer))
    return best


def film_edge(image: np.ndarray, pixel_size: float) -> tuple[float, float]:
    """``(film_edge, film_side_fraction)`` of an image at ``pixel_size`` Å: the gradient
    line's, or, where there is none, the texture step's when it exceeds ``STEP_LEAST_Z``
    (see the module docstring)."""
    length, side = gradient_line(image, pixel_size)
    if length > 0 or math.isnan(length):
        return length, side
    z, length, finer = texture_step(image, pixel_size)
    return (length, finer) if z >= STEP_LEAST_Z else (0.0, math.nan)
