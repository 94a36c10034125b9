"""The simulator: its physics measured back from the images, and the dataset it writes."""

from __future__ import annotations

import mrcfile
import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import starfile
from cryosparc.dataset import Dataset
from scipy.signal import argrelmin

from miffi.intake import read_micrographs
from miffi.labels import GROUPS
from miffi.preprocess.ctf import wavelength
from miffi.simulate.config import SimulationConfig, parse_detector
from miffi.simulate.dataset import simulate_dataset
from miffi.simulate.physics import ICE_SPACINGS, CtfParams, ctf_zeros
from miffi.simulate.scene import CONTAMINATION, FILM_COVERAGE, draw_scene, render

GOOD = {
    "film": "no_film",
    "drift": "no_crack_drift",
    "crystallinity": "not_crystalline",
    "contamination": "minor_contamination",
}


def scene(labels=None, size=2048, seed=5, **overrides):
    """A scene with the given labels; no contamination unless asked, then ``overrides``."""
    s = draw_scene("t", seed, parse_detector(f"{size}x{size}@1.0"), SimulationConfig(), {**GOOD, **(labels or {})})
    if not labels or "contamination" not in labels:
        s.contamination_fraction = 0.0
    for key, value in overrides.items():
        setattr(s, key, value)
    return s


def power(image):
    spectrum = np.abs(np.fft.rfft2(image - image.mean())) ** 2
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    return spectrum, ky, kx


def radial_profile(image, bins):
    spectrum, ky, kx = power(image)
    k = np.hypot(kx, ky).ravel()
    edges = np.linspace(0, 0.5, bins + 1)
    index = np.digitize(k, edges) - 1
    ok = index < bins
    total = np.bincount(index[ok], spectrum.ravel()[ok], bins)
    count = np.maximum(np.bincount(index[ok], None, bins), 1)
    return 0.5 * (edges[1:] + edges[:-1]), total / count


def test_wavelength_at_common_voltages():
    assert wavelength(300) == pytest.approx(0.01969, abs=2e-5)
    assert wavelength(200) == pytest.approx(0.02508, abs=2e-5)


def test_thon_ring_zeros_fall_where_the_ctf_formula_puts_them():
    s = scene(defocus_u=15000.0, defocus_v=15000.0, dose=60.0, bfactor=60.0, residual_drift=0.0)
    k, profile = radial_profile(render(s), 600)
    smooth = ndi.gaussian_filter1d(np.log(profile), 1.0)
    minima = k[argrelmin(smooth, order=3)[0]]
    predicted = ctf_zeros(s.ctf_params, 6)
    assert predicted[0] == pytest.approx(0.0573, abs=5e-4)  # hand check: first zero at 1.5 µm, 300 kV
    bin_width = k[1] - k[0]
    for zero in predicted:
        assert np.min(np.abs(minima - zero)) <= 1.5 * bin_width, (zero, minima)


def test_astigmatic_zeros_follow_the_defocus_direction():
    params = CtfParams(defocus_u=20000.0, defocus_v=12000.0, defocus_angle=30.0)
    along_u = ctf_zeros(params, 3, angle=np.radians(30.0))
    along_v = ctf_zeros(params, 3, angle=np.radians(120.0))
    assert np.all(along_u < along_v)  # more defocus → zeros at lower frequency
    assert along_u == pytest.approx(ctf_zeros(CtfParams(defocus_u=20000.0, defocus_v=20000.0), 3))


def test_water_ring_peaks_near_3_7_angstrom_and_scales_with_thickness():
    def ring(thickness):
        s = scene(ice_thickness_nm=thickness, particle_density_per_um2=0.0, dose=60.0, bfactor=30.0, residual_drift=0.0)
        k, profile = radial_profile(render(s), 300)
        band = (k > 1 / 4.6) & (k < 1 / 3.1)
        smooth = ndi.gaussian_filter1d(profile, 4)
        background = np.median(profile[(k > 0.42)])  # shot noise, flat
        return 1 / k[band][np.argmax(smooth[band])], smooth[band].max() - background

    peak, thick = ring(60.0)
    assert peak == pytest.approx(3.7, abs=0.15)
    _, thin = ring(20.0)
    assert thick > 2 * thin


def _peak_ratio(image, spacing):
    k, profile = radial_profile(image, 800)
    i = int(np.argmin(np.abs(k - 1 / spacing)))
    return profile[i - 2 : i + 3].max() / np.median(profile[i - 25 : i + 25])


def test_crystalline_ice_gives_sharp_peaks_at_ice_spacings_and_vitreous_does_not():
    crystalline = render(scene({"crystallinity": "major_crystalline"}, particle_density_per_um2=0.0))
    vitreous = render(scene(particle_density_per_um2=0.0))
    assert _peak_ratio(crystalline, ICE_SPACINGS[0]) > 2.0
    assert _peak_ratio(crystalline, ICE_SPACINGS[1]) > 1.5
    for spacing in ICE_SPACINGS:
        assert _peak_ratio(vitreous, spacing) < 1.25
    minor = render(scene({"crystallinity": "minor_crystalline"}, particle_density_per_um2=0.0))
    assert 1.1 < _peak_ratio(minor, ICE_SPACINGS[0]) < _peak_ratio(crystalline, ICE_SPACINGS[0])


def test_crystalline_spots_make_the_ring_azimuthally_spotty():
    def spottiness(image):
        spectrum, ky, kx = power(image)
        ring = np.abs(np.hypot(kx, ky) - 1 / ICE_SPACINGS[0]) < 0.003
        values = spectrum[ring]
        return np.percentile(values, 99.5) / np.median(values)

    crystalline = spottiness(render(scene({"crystallinity": "major_crystalline"}, particle_density_per_um2=0.0)))
    vitreous = spottiness(render(scene(particle_density_per_um2=0.0)))
    assert crystalline > 3 * vitreous


def _anisotropy(image, drift_angle_deg):
    spectrum, ky, kx = power(image)
    k = np.hypot(kx, ky)
    angle = np.degrees(np.arctan2(ky, kx)) % 180
    band = (k > 1 / 40) & (k < 1 / 12)
    along = np.abs(((angle - drift_angle_deg) + 90) % 180 - 90) < 15
    across = np.abs(((angle - drift_angle_deg) % 180) - 90) < 15
    return spectrum[band & along].mean() / spectrum[band & across].mean()


@pytest.mark.parametrize("angle", [0.0, 60.0])
def test_drift_makes_the_spectrum_anisotropic_along_the_drift(angle):
    drifted = render(
        scene(
            {"drift": "crack_drift_empty"}, drift_kind="drift", drift_length=40.0, drift_angle=angle, drift_curved=False
        )
    )
    still = render(scene())
    assert _anisotropy(drifted, angle) < 0.6
    assert 0.85 < _anisotropy(still, angle) < 1.15


def test_drift_length_increases_the_anisotropy():
    ratios = [
        _anisotropy(
            render(
                scene(
                    {"drift": "crack_drift_empty"},
                    drift_kind="drift",
                    drift_length=length,
                    drift_angle=0.0,
                    drift_curved=False,
                )
            ),
            0.0,
        )
        for length in (0.0, 4.0, 8.0, 16.0)
    ]
    assert ratios[0] > ratios[1] > ratios[2] > ratios[3]


def test_empty_hole_is_bright_and_flat():
    empty = render(scene({"drift": "crack_drift_empty"}, drift_kind="empty", ice_thickness_nm=0.0))
    good = render(scene())
    assert empty.mean() > good.mean() * 1.05  # no inelastic loss in ice
    k, profile = radial_profile(empty, 100)
    mid = profile[(k > 0.05) & (k < 0.45)]
    assert mid.max() / mid.min() < 1.3  # shot noise only: white


def test_crack_has_a_bright_gap():
    s = scene({"drift": "crack_drift_empty"}, drift_kind="crack", crack_angle=45.0, crack_gap=500.0, crack_shift=80.0)
    image = ndi.uniform_filter(render(s), 15)
    rows, cols = image.shape
    y, x = np.mgrid[0:rows, 0:cols]
    signed = (x - cols / 2) * np.sin(np.radians(45)) - (y - rows / 2) * np.cos(np.radians(45))
    gap = np.abs(signed) < 200
    assert image[gap].mean() > image[np.abs(signed) > 300].mean() * 1.05


@pytest.mark.parametrize("label", ["minor_film", "major_film", "film"])
def test_film_coverage_measured_from_the_image_matches_the_label(label):
    s = scene({"film": label}, particle_density_per_um2=0.0, seed=11)
    image = ndi.gaussian_filter(render(s), 12)
    ice_level = np.exp(-s.ice_thickness_nm / 350.0) * s.dose
    carbon_level = np.exp(-(s.ice_thickness_nm + 25.0) / 350.0) * s.dose
    measured = float(np.mean(image < 0.5 * (ice_level + carbon_level)))
    assert measured == pytest.approx(s.film_fraction_actual, abs=0.04)
    low, high = FILM_COVERAGE[label]
    assert low - 0.04 <= measured <= high + 0.04


@pytest.mark.parametrize("label", ["minor_contamination", "major_contamination"])
def test_contamination_fraction_measured_from_the_image_matches_the_label(label):
    s = scene({"contamination": label}, seed=13)
    image = ndi.median_filter(render(s)[::2, ::2], 5)
    measured = float(np.mean(image < 0.75 * np.median(image)))
    assert measured == pytest.approx(s.contamination_fraction_actual, abs=0.03)
    low, high = CONTAMINATION[label]
    assert low - 0.03 <= measured <= high + 0.03


def test_dataset_files_and_determinism(tmp_path):
    detector = parse_detector("512x384@1.1")
    table = simulate_dataset(tmp_path / "a", 6, detector, seed=7, progress=False, workers=1)
    again = simulate_dataset(tmp_path / "b", 6, detector, seed=7, progress=False, workers=2)
    other = simulate_dataset(tmp_path / "c", 6, detector, seed=8, progress=False, workers=1)
    labels = pd.read_csv(tmp_path / "a" / "labels.csv")
    assert list(labels.columns[:5]) == ["micrograph", *GROUPS]
    assert {"defocus_u", "ice_thickness_nm", "drift_length", "film_coverage", "ctf_max_resolution"} <= set(labels)
    for group, names in GROUPS.items():
        assert set(labels[group]) <= set(names)
    first = tmp_path / "a" / "micrographs" / f"{table['micrograph'][0]}.mrc"

    def data(run):
        with mrcfile.open(tmp_path / run / "micrographs" / first.name) as mrc:
            return mrc.data.copy()

    assert np.array_equal(data("a"), data("b"))
    assert not np.array_equal(data("a"), data("c"))
    pd.testing.assert_frame_equal(table, again)
    with mrcfile.open(first) as mrc:
        assert mrc.data.shape == (384, 512) and mrc.data.dtype == np.float32
        assert float(mrc.voxel_size.x) == pytest.approx(1.1)
    assert not other.equals(table)
    # the same settings again: nothing is rewritten
    before = first.stat().st_mtime_ns
    pd.testing.assert_frame_equal(simulate_dataset(tmp_path / "a", 6, detector, seed=7, progress=False), table)
    assert first.stat().st_mtime_ns == before


def test_dataset_reads_back_through_every_intake_path(tmp_path, monkeypatch):
    out = tmp_path / "sim"
    table = simulate_dataset(out, 4, parse_detector("256x256@1.2"), seed=1, progress=False, workers=1, float16=True)
    monkeypatch.chdir(tmp_path)
    star = starfile.read(out / "micrographs.star", always_dict=True)
    assert star["optics"]["rlnMicrographPixelSize"].tolist() == [1.2]
    assert star["micrographs"]["rlnCtfMaxResolution"].tolist() == pytest.approx(table["ctf_max_resolution"].tolist())
    exposures = Dataset.load(str(out / "exposures.cs"))
    assert exposures["ctf_stats/ctf_fit_to_A"].tolist() == pytest.approx(table["ctf_max_resolution"].tolist(), rel=1e-5)
    expected = [str(out / "micrographs" / f"{m}.mrc") for m in table["micrograph"]]
    for source in ("micrographs.star", "exposures.cs", "exposures.csg"):
        intake = read_micrographs([out / source])
        assert intake["path"].tolist() == expected, source
        assert intake["pixel_size"].tolist() == pytest.approx([1.2] * 4)
    with mrcfile.open(expected[0]) as mrc:
        assert mrc.header.mode == 12


def test_label_mix_from_yaml(tmp_path):
    config_file = tmp_path / "mix.yaml"
    config_file.write_text("mix:\n  crystallinity: {major_crystalline: 1}\ndose: [50, 50]\n")
    config = SimulationConfig.from_yaml(config_file)
    table = simulate_dataset(tmp_path / "out", 3, parse_detector("256x256@1.0"), config, progress=False, workers=1)
    assert set(table["crystallinity"]) == {"major_crystalline"}
    assert set(table["dose"]) == {50.0}
    config_file.write_text("mix:\n  crystallinity: {very_crystalline: 1}\n")
    with pytest.raises(ValueError, match="unknown label.*very_crystalline"):
        SimulationConfig.from_yaml(config_file)


def test_k3_render_shape():
    s = draw_scene("k3", 3, parse_detector("k3"), SimulationConfig(), GOOD)
    image = render(s)
    assert image.shape == (4092, 5760)
    assert np.isfinite(image).all() and image.min() >= 0
    assert image.mean() == pytest.approx(s.dose * 0.83**2 * np.exp(-s.ice_thickness_nm / 350.0), rel=0.1)
