"""Metrics respond to their causes; the weight-free classifier and the CTF baseline."""

from __future__ import annotations

import math

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch

from miffi.classify.combine import categorise, combine
from miffi.classify.ctf_baseline import ctf_baseline, fit_resolution
from miffi.classify.weightfree import WeightFreeThresholds, predict_metrics, shifted_thresholds
from miffi.labels import GROUPS, is_good
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.grids import bincount_rows, binned_power, index_add_rows
from miffi.preprocess.metrics import realspace_metrics
from miffi.preprocess.recipe import load_squares, preprocess_loaded
from miffi.simulate.config import SimulationConfig, parse_detector
from miffi.simulate.dataset import simulate_dataset
from miffi.simulate.scene import draw_scene, render
from tests.support.micrographs import write_mrc

GOOD = {
    "film": "no_film",
    "drift": "no_crack_drift",
    "crystallinity": "not_crystalline",
    "contamination": "minor_contamination",
}
CPU = torch.device("cpu")


def metrics_of(tmp_path, labels=None, seed=5, **overrides):
    """Micrograph metrics of a 2048² scene (no contamination unless asked, no particles)."""
    scene = draw_scene("m", seed, parse_detector("2048x2048@1.0"), SimulationConfig(), {**GOOD, **(labels or {})})
    scene.contamination_fraction = 0.0
    scene.particle_density_per_um2 = 0.0
    for key, value in overrides.items():
        setattr(scene, key, value)
    path = write_mrc(tmp_path / f"m{abs(hash(str(overrides)))}.mrc", render(scene), pixel_size=1.0)
    return preprocess_loaded(load_squares(path, None, PreprocessConfig()), PreprocessConfig(), CPU).metrics


def increasing(values):
    return all(a < b for a, b in zip(values, values[1:]))


def test_water_ring_grows_with_ice_thickness(tmp_path):
    values = [
        metrics_of(tmp_path, ice_thickness_nm=t, bfactor=30.0, residual_drift=0.0)["water_ring"]
        for t in (15.0, 35.0, 60.0)
    ]
    assert increasing(values), values


def test_crystal_metrics_grow_with_crystal_fraction(tmp_path):
    results = [
        metrics_of(tmp_path, {"crystallinity": "major_crystalline"}, crystal_fraction=f, crystal_strength=1.0)
        for f in (0.0, 0.3, 1.0)
    ]
    assert increasing([r["ice_peak"] for r in results]), results
    assert increasing([r["ice_spots"] for r in results]), results


def test_anisotropy_grows_with_drift_length(tmp_path):
    values = [
        metrics_of(
            tmp_path,
            {"drift": "crack_drift_empty"},
            drift_kind="drift",
            drift_length=length,
            drift_curved=False,
            residual_drift=0.0,
        )["anisotropy"]
        for length in (0.0, 6.0, 12.0, 30.0)
    ]
    assert increasing(values), values


def test_film_metrics_grow_with_coverage(tmp_path):
    results = [metrics_of(tmp_path, {"film": "major_film"}, film_coverage=c, seed=8) for c in (0.0, 0.3, 0.7)]
    assert results[0]["film_edge"] == 0 and math.isnan(results[0]["film_side_fraction"])
    for result, coverage in zip(results[1:], (0.3, 0.7)):
        assert result["film_edge"] > 0.5, result  # the hole edge crosses the view
        assert result["film_side_fraction"] == pytest.approx(coverage, abs=0.1), result


def test_dark_fraction_grows_with_contamination(tmp_path):
    values = [
        metrics_of(tmp_path, {"contamination": "major_contamination"}, contamination_fraction=f)["dark_fraction"]
        for f in (0.0, 0.05, 0.15, 0.3)
    ]
    assert increasing(values), values
    assert values[-1] == pytest.approx(0.3, abs=0.08)


def test_empty_hole_has_a_flat_spectrum(tmp_path):
    empty = metrics_of(tmp_path, {"drift": "crack_drift_empty"}, drift_kind="empty", ice_thickness_nm=0.0)
    ice = metrics_of(tmp_path)
    assert empty["flatness"] < 1.5 < ice["flatness"]
    assert empty["mean_intensity"] > ice["mean_intensity"]


def test_weight_free_accuracy_on_simulated_data(tmp_path):
    simulate_dataset(tmp_path / "data", 40, parse_detector("2048x2048@1.0"), seed=303, progress=False)
    labels = pd.read_csv(tmp_path / "data" / "labels.csv").set_index("micrograph")
    metrics = {}
    for name in labels.index:
        loaded = load_squares(tmp_path / "data" / "micrographs" / f"{name}.mrc", None, PreprocessConfig())
        metrics[name] = preprocess_loaded(loaded, PreprocessConfig(), CPU).square_metrics
    thresholds = WeightFreeThresholds()
    assert shifted_thresholds(metrics, thresholds) == {}  # a simulated session is what it was fitted on
    combined = combine(predict_metrics(metrics, thresholds)).set_index("micrograph")
    accuracy = {g: float((combined[g] == labels.loc[combined.index, g]).mean()) for g in GROUPS}
    majority = {g: float(labels[g].value_counts(normalize=True).iloc[0]) for g in GROUPS}
    good = combined[list(GROUPS)].apply(lambda row: is_good(row.to_dict()), axis=1)
    truth = labels.loc[combined.index, list(GROUPS)].apply(lambda row: is_good(row.to_dict()), axis=1)
    accuracy["good"], majority["good"] = (
        float((good == truth).mean()),
        float(truth.value_counts(normalize=True).iloc[0]),
    )
    # measured on this set: film 0.70 (majority 0.425), drift 0.95 (0.75), crystallinity 0.85 (0.60),
    # contamination 0.875 (0.75), good vs bad 0.95 (0.90)
    # every group beats answering its majority class (a threshold below that could not fail)
    assert all(accuracy[g] > majority[g] for g in [*GROUPS, "good"]), (accuracy, majority)
    assert accuracy["film"] >= 0.65 and accuracy["drift"] >= 0.85 and accuracy["contamination"] >= 0.78
    assert accuracy["crystallinity"] >= majority["crystallinity"] + 0.2 and accuracy["good"] >= 0.9


def test_a_shifted_dataset_is_decided_against_itself():
    """A session whose every micrograph reads past a threshold (e.g. a detector that
    makes the 12–40 Å band anisotropic) is not called bad wholesale: that threshold's
    decisions become dataset-relative, and only the session's outlier is drift — neither
    call confident. Thresholds it does not pass stay absolute."""
    rng = np.random.default_rng(4)
    squares = {
        f"m{i}": [{"anisotropy": float(a), "dark_fraction": 0.01}] for i, a in enumerate(rng.normal(0.65, 0.01, 29))
    }
    squares["odd"] = [{"anisotropy": 0.9, "dark_fraction": 0.01}]
    thresholds = WeightFreeThresholds()
    absolute = categorise(combine(predict_metrics(squares, thresholds))).set_index("micrograph")
    assert (absolute["drift"] == "crack_drift_empty").all()  # what a fixed threshold says
    shifted = shifted_thresholds(squares, thresholds)
    assert list(shifted) == ["drift_anisotropy"] and shifted["drift_anisotropy"][0] == pytest.approx(0.65, abs=0.01)
    relative = categorise(combine(predict_metrics(squares, thresholds, shifted))).set_index("micrograph")
    assert relative.loc["odd", "drift"] == "crack_drift_empty"
    assert (relative.drop(index="odd")["drift"] == "no_crack_drift").all()
    assert relative["drift_confidence"].max() <= 0.75
    assert (relative["contamination"] == absolute["contamination"]).all()
    assert shifted_thresholds(dict(list(squares.items())[:19]), thresholds) == {}  # too few to say


def test_real_contaminated_micrograph_is_flagged(realdata):
    path = realdata / "micrographs" / "Ucsf_stack_1142_DW.mrc"
    with mrcfile.open(path) as mrc:
        metrics = realspace_metrics(mrc.data, None)
    with mrcfile.open(realdata / "micrographs" / "Ucsf_stack_1142_DW_mask.mrc") as mrc:
        cleaner = float((mrc.data > 0.5).mean())  # MicrographCleaner's contamination mask
    assert metrics["dark_fraction"] == pytest.approx(cleaner, abs=0.05)  # measured 0.141 vs 0.145
    assert metrics["dark_count"] >= 1
    processed = preprocess_loaded(load_squares(path, None, PreprocessConfig()), PreprocessConfig(), CPU)
    assert processed.metrics["dark_fraction"] > WeightFreeThresholds().contamination_dark_fraction
    combined = combine(predict_metrics({"real": processed.square_metrics})).iloc[0]
    assert combined["contamination"] == "major_contamination"


def test_ctf_baseline_on_real_star(realdata):
    table = starfile.read(realdata / "relion_star" / "micrographs_ctf.star", always_dict=True)["micrographs"]
    verdict = ctf_baseline(fit_resolution(table))
    # hand check: fits 3.04–3.57 Å and one at 4.84 Å; mean 3.347, σ 0.355 → good within [2.64, 4.06]
    bad = table.loc[verdict == "bad", "rlnMicrographName"].tolist()
    assert bad == ["MotionCorr/job002/Movies/20170629_00021_frameImage.mrc"]
    assert (verdict == "good").sum() == 23


def test_ctf_baseline_rules():
    fits = pd.Series([3.0, 3.1, 3.2, 3.1, 3.0, 3.2, 3.1, 3.05, 3.15, 12.0, np.nan])
    verdict = ctf_baseline(fits)
    assert verdict.iloc[9] == "bad"  # worse than 10 Å
    assert pd.isna(verdict.iloc[10])  # no fit
    assert (verdict.iloc[:9] == "good").all()
    cryosparc = pd.DataFrame({"ctf_stats/ctf_fit_to_A": [4.0, 5.0]})
    assert fit_resolution(cryosparc).tolist() == [4.0, 5.0]


@pytest.mark.parametrize("samples", [1200, 0])
def test_band_power_sums_per_bin_both_ways(samples):
    # The CPU sums with bincount and a GPU with index_add_: the same sums, both against numpy.
    rng = np.random.default_rng(1)
    spectra = rng.random((3, 5000)).astype(np.float32)
    index = rng.choice(5000, samples, replace=False)
    bins = rng.integers(0, 40, samples)
    expected = np.stack([np.bincount(bins, row[index].astype(np.float64) ** 2, 40) for row in spectra])
    flat, at, of = torch.from_numpy(spectra), torch.from_numpy(index), torch.from_numpy(bins)
    power = binned_power(flat, at, of, 40)
    assert power.dtype == torch.float64 and power.shape == (3, 40)
    assert np.allclose(power.numpy(), expected, rtol=1e-12, atol=0)
    squared = flat.index_select(1, at).double().square()
    assert np.allclose(
        index_add_rows(squared, of, 40).numpy(), bincount_rows(squared, of, 40).numpy(), rtol=1e-12, atol=0
    )
