"""Our whole pipeline against Miffi 1.0.1's own preprocessing + inference (PyPI ``miffi==1.0.1``).

The reference package is installed by scripts/setup-venv.sh into .venv/miffi-1.0.1 (it
cannot share an import name with ours in one process), and runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miffi.labels import LABELS, SLICES
from miffi.simulate.config import SimulationConfig, parse_detector
from miffi.simulate.dataset import simulate_dataset
from tests.support.models import tiny_model

REFERENCE = Path(os.environ.get("MIFFI_REFERENCE", Path(sys.prefix) / "miffi-1.0.1"))
REFERENCE_RUN = Path(__file__).resolve().parents[1] / "support" / "miffi_reference_run.py"

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "miffi").is_dir(),
    reason=f"miffi 1.0.1 not installed at {REFERENCE} (scripts/setup-venv.sh does it)",
)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "random_convnext_atto.pt", seed=3)


@pytest.mark.parametrize("detector", ["k3", "k2", "1024x1024@1.0"])
def test_same_tensors_and_probabilities_as_miffi_1_0_1(tmp_path, model, detector):
    data = tmp_path / "data"
    simulate_dataset(data, 2, parse_detector(detector), SimulationConfig(), seed=9, progress=False, workers=1)
    mics = sorted((data / "micrographs").glob("*.mrc"))
    reference_file = tmp_path / "reference.npy"
    env = {**os.environ, "PYTHONPATH": str(REFERENCE)}
    done = subprocess.run(
        [sys.executable, str(REFERENCE_RUN), str(model), str(reference_file), *map(str, mics)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reference = np.load(reference_file)  # [micrographs, squares, 11]
    reference_inputs = np.load(tmp_path / "reference_inputs.npy")

    ours = subprocess.run(
        [
            sys.executable,
            "-m",
            "miffi",
            "run",
            "--input",
            *map(str, mics),
            "--model",
            str(model),
            "--outdir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert ours.returncode == 0, ours.stderr[-3000:]
    predictions = pd.read_csv(tmp_path / "out" / "predictions.tsv", sep="\t")
    ours_array = np.stack([predictions[predictions["micrograph"] == m.stem][list(LABELS)].to_numpy() for m in mics])
    assert ours_array.shape == reference.shape
    ours_inputs = np.stack([np.load(tmp_path / "out" / "cache" / f"{m.stem}.npy") for m in mics])
    assert np.abs(ours_inputs - reference_inputs).max() <= 1e-3  # the preprocessed tensors
    assert np.abs(ours_array - reference).max() <= 2e-3
    for part in SLICES.values():
        assert (ours_array[..., part].argmax(-1) == reference[..., part].argmax(-1)).all()
