"""Support-film edges: the texture step finds a faint edge the gradient line misses, and
neither finds one where there is none."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from miffi.preprocess.film_edges import STEP_LEAST_Z, film_edge, gradient_line, texture_step

APIX = 12.0  # Å per pixel, the grid the real-space metrics work on
SHAPE = (372, 524)  # a K3 frame at about 1 Å, block-averaged


def ice_with_particles(rng: np.random.Generator, carbon: np.ndarray | None = None) -> np.ndarray:
    """Fine noise (ice) with round dark particles 120 Å across, whose gradients are as
    strong as a faint edge's; where ``carbon``, the noise is 1.8× stronger (more finely
    textured) at the same mean, and there are no particles."""
    texture = ndi.gaussian_filter(rng.standard_normal(SHAPE), 1.0)
    texture /= texture.std()
    if carbon is not None:
        texture = np.where(carbon, 1.8 * texture, texture)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    particles = np.zeros(SHAPE)
    for cy, cx in zip(rng.uniform(0, SHAPE[0], 300), rng.uniform(0, SHAPE[1], 300), strict=True):
        particles += (y - cy) ** 2 + (x - cx) ** 2 < 5**2
    if carbon is not None:
        particles *= ~carbon
    image: np.ndarray = (100 + texture - 1.5 * ndi.gaussian_filter(particles, 1.0)).astype(np.float32)
    return image


def corner(fraction: float) -> np.ndarray:
    """A straight hole edge cutting off the top-left corner: carbon over ``fraction``."""
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    distance = y / SHAPE[0] + x / SHAPE[1]  # the diagonal's direction
    mask: np.ndarray = distance < np.quantile(distance, fraction)
    return mask


@pytest.mark.parametrize("fraction", [0.12, 0.4])
def test_a_faint_edge_is_found_by_the_carbons_finer_texture(fraction):
    image = ice_with_particles(np.random.default_rng(3), corner(fraction))
    assert gradient_line(image, APIX) == (0.0, pytest.approx(math.nan, nan_ok=True))  # no intensity step
    z, length, finer = texture_step(image, APIX)
    assert z > 1.5 * STEP_LEAST_Z  # 12–17 over seeds; even ice gives 3–4
    assert finer == pytest.approx(fraction, abs=0.04)
    edge, side = film_edge(image, APIX)
    assert edge == length and edge > 0.5 and side == finer


@pytest.mark.parametrize("ramp", [0.0, 3.0])
def test_particles_in_even_ice_give_no_edge(ramp):
    """Neither particles nor a smooth thickness gradient (an intensity ramp of ``ramp``
    over the view, three times the noise) make an edge."""
    rng = np.random.default_rng(5)
    image = ice_with_particles(rng) + np.linspace(0, ramp, SHAPE[1], dtype=np.float32)[None, :]
    assert texture_step(image, APIX)[0] < STEP_LEAST_Z
    edge, side = film_edge(image, APIX)
    assert edge == 0 and math.isnan(side)


def test_a_flat_view_has_no_edge():
    image = np.full(SHAPE, 7.0, dtype=np.float32)
    assert texture_step(image, APIX) == (0.0, 0.0, pytest.approx(math.nan, nan_ok=True))
    edge, side = film_edge(image, APIX)
    assert edge == 0 and math.isnan(side)


@pytest.mark.parametrize("angle", [0.0, 45.0, 90.0, 135.0])
def test_a_texture_steps_length_is_the_lines_length_across_the_view(angle):
    """A straight edge through the middle of a square view, at any angle: its length over
    the view's side is what geometry says (1 across, √2 corner to corner), within 15 %."""
    side = 400
    rng = np.random.default_rng(11)
    noise = ndi.gaussian_filter(rng.standard_normal((side, side)), 1.0)
    y, x = np.mgrid[:side, :side] - side / 2
    theta = math.radians(angle)
    carbon = x * math.cos(theta) + y * math.sin(theta) < 0
    image = (100 + noise * np.where(carbon, 1.8, 1.0) / noise.std()).astype(np.float32)
    z, length, finer = texture_step(image, APIX)
    expected = 1.0 if angle % 90 == 0 else math.sqrt(2)
    assert z > STEP_LEAST_Z and finer == pytest.approx(0.5, abs=0.05)
    assert length == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("shape", [(10, 10), (300, 5), (5, 300), (40, 60)])
def test_a_view_too_small_for_the_strips_has_no_texture_step(shape):
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert texture_step(image, APIX) == (0.0, 0.0, pytest.approx(math.nan, nan_ok=True))
