"""Run Miffi 1.0.1's own preprocessing and inference (imported from PYTHONPATH) on micrographs.

Usage: python miffi_reference_run.py [--probabilities-only] MODEL OUT.npy MICROGRAPH...
Writes per-square probabilities ``[micrographs, squares, 11]`` to OUT.npy and, unless
``--probabilities-only`` (what benchmarks/throughput.py times), the preprocessed inputs
``[micrographs, squares, 2, 384, 384]`` to OUT_inputs.npy. Used by
test_miffi_reference.py, which runs it with the reference package on PYTHONPATH.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from miffi.datasets import MicDataset, mic_transforms
from miffi.inference import inference_mic, load_model, outputs_to_confidence
from miffi.parameters import DEFAULT_LABEL_NAMES
from miffi.utils import get_preprocess_param
from torch.utils.data import DataLoader

import miffi

assert "miffi-1.0.1" in miffi.__file__, f"not the reference package: {miffi.__file__}"
arguments = sys.argv[1:]
inputs_too = arguments[:1] != ["--probabilities-only"]
model_path, out, *micrographs = arguments if inputs_too else arguments[1:]
paths = [Path(m) for m in micrographs]
transpose, small_dim, splits = get_preprocess_param(paths[0], None, 1.5, None, False)
dataset = MicDataset(
    [p.name for p in paths],
    paths[0].parent,
    DEFAULT_LABEL_NAMES,
    transform=mic_transforms(small_dim, splits, transpose, False),
)
loader = DataLoader(dataset, batch_size=2, shuffle=False, num_workers=0)
device = torch.device("cpu")
model = load_model(None, None, Path(model_path), None, None, False, DEFAULT_LABEL_NAMES, device).eval()
outputs, _ = inference_mic(model, loader, DEFAULT_LABEL_NAMES, device, len(paths), 2)
confidence = outputs_to_confidence(outputs, DEFAULT_LABEL_NAMES)  # [splits, micrographs, 11]
np.save(out, confidence.numpy().transpose(1, 0, 2))
if inputs_too:
    np.save(out.replace(".npy", "_inputs.npy"), np.stack([torch.stack(dataset[i]).numpy() for i in range(len(paths))]))
