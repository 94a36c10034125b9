"""GPU preprocessing gives the CPU's tensors. Skipped on machines without a CUDA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import structured_image, write_mrc
from miffi.config import PreprocessConfig
from miffi.preprocess import load_squares, micrograph_tensor
from spec_reference import reference_tensor


@pytest.mark.gpu
@pytest.mark.parametrize(("shape", "apix"), [((4092, 5760), 0.83), ((3710, 3838), 1.06), ((1001, 2500), 1.0)])
def test_gpu_matches_reference_and_cpu(tmp_path, cuda, shape, apix):
    image = structured_image(shape, seed=11)
    path = write_mrc(tmp_path / "m.mrc", image, pixel_size=apix)
    loaded = load_squares(path, None, PreprocessConfig())
    on_gpu = micrograph_tensor(loaded, PreprocessConfig(), cuda)
    on_cpu = micrograph_tensor(loaded, PreprocessConfig(), torch.device("cpu"))
    reference = reference_tensor(image, apix)
    assert np.abs(on_gpu[:, 0] - reference[:, 0]).max() <= 1e-3
    assert np.abs(on_gpu[:, 1] - reference[:, 1]).max() <= 2e-3  # see test_preprocess_reference.py
    assert np.abs(on_gpu - on_cpu).max() <= 2e-3
