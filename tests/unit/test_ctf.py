"""The CTF fit against the simulator's known defocus, astigmatism and drift."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.metric_names import CTF_METRICS
from miffi.preprocess.metrics import spectral_metrics
from miffi.preprocess.recipe import cropped_transform, load_squares
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset


def ctf_metrics(amplitude: np.ndarray, pixel_size: float) -> dict[str, float]:
    metrics = spectral_metrics(amplitude, pixel_size)
    return {name: metrics[name] for name in CTF_METRICS}


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Every square's fit of 16 simulated 2048² micrographs, beside the simulator's truth."""
    folder = tmp_path_factory.mktemp("ctf")
    simulate_dataset(folder, 16, parse_detector("2048x2048@1.0"), seed=11, progress=False, workers=1)
    rows = []
    for truth in pd.read_csv(folder / "labels.csv").itertuples():
        loaded = load_squares(folder / "micrographs" / f"{truth.micrograph}.mrc", None, PreprocessConfig())
        amplitude = cropped_transform([loaded], loaded.layout.crop, torch.device("cpu"), loaded.offset, 384).amplitude
        rows.append({**truth._asdict(), **ctf_metrics(amplitude[0].numpy(), loaded.layout.output_pixel_size)})
    return pd.DataFrame(rows)


def test_defocus_and_astigmatism_match_the_simulation(fits):
    clean = fits[fits["drift"] == "no_crack_drift"]
    assert len(clean) >= 8
    truth = (clean["defocus_u"] + clean["defocus_v"]) / 2
    assert (abs(clean["thon_defocus"] - truth) / truth).max() < 0.005  # within 0.5 %
    astigmatism = abs(clean["defocus_u"] - clean["defocus_v"])
    assert (abs(clean["thon_astigmatism"] - astigmatism)).max() < 120  # Å
    assert (clean["thon_rings"] > 0.5).all() and (clean["thon_resolution"] < 4.0).all()


def test_drift_fits_far_better_along_one_direction(fits):
    drifted = fits[fits["drift_kind"] == "drift"]
    clean = fits[fits["drift"] == "no_crack_drift"]
    assert len(drifted) >= 2
    assert drifted["thon_anisotropy"].min() > 0.4 > clean["thon_anisotropy"].max()


def test_no_rings_in_noise_and_no_fit_beyond_nyquist():
    rng = np.random.default_rng(0)
    noise = np.abs(np.fft.rfft2(rng.normal(size=(1024, 1024))))
    metrics = ctf_metrics(noise, 1.5)
    assert metrics["thon_rings"] < 0.3 and math.isnan(metrics["thon_defocus"])
    assert all(math.isnan(v) for v in ctf_metrics(noise, 25.0).values())  # 40 Å > Nyquist band


def test_a_spectrum_without_power_in_the_band_has_no_rings():
    # e.g. a micrograph low-pass filtered below 40 Å and written at a fine pixel size
    metrics = ctf_metrics(np.zeros((512, 257), np.float32), 1.5)
    assert metrics["thon_rings"] == 0 and math.isnan(metrics["thon_defocus"])
