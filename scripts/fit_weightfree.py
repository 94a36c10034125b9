"""Fit and evaluate the weight-free classifier's thresholds on simulated data.

Simulates a training and a test dataset (different seeds), preprocesses them, fits each
threshold by a grid search for the best per-group accuracy on the training set, and
prints the fitted thresholds and per-group accuracy on both sets.

Usage: python scripts/fit_weightfree.py [--n 120] [--detector 2048x2048@1.0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from miffi.classify.combine import combine
from miffi.classify.weightfree import WeightFreeThresholds, predict_metrics
from miffi.intake import read_micrographs
from miffi.labels import GROUPS
from miffi.preprocess.batch import preprocess_table
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset

GRID = {
    "drift_anisotropy": np.linspace(0.25, 0.7, 19),
    "empty_flatness": np.linspace(1.1, 2.5, 15),
    "crack_bright_fraction": np.linspace(0.005, 0.1, 20),
    "contamination_dark_fraction": np.linspace(0.05, 0.3, 26),
    "crystal_minor_peak": np.linspace(1.15, 1.6, 19),
    "crystal_major_peak": np.linspace(1.3, 2.2, 19),
    "film_edge_separation": np.linspace(3.0, 6.0, 16),
    "film_minor_coverage": np.linspace(0.1, 0.45, 15),
    "film_flatness": np.linspace(4.5, 10.0, 12),
}
GROUP_OF = {
    "drift_anisotropy": "drift",
    "empty_flatness": "drift",
    "crack_bright_fraction": "drift",
    "contamination_dark_fraction": "contamination",
    "crystal_minor_peak": "crystallinity",
    "crystal_major_peak": "crystallinity",
    "film_edge_separation": "film",
    "film_minor_coverage": "film",
    "film_flatness": "film",
}


def dataset(folder: Path, n: int, detector: str, seed: int) -> tuple[dict, pd.DataFrame]:
    simulate_dataset(folder / "data", n, parse_detector(detector), seed=seed, progress=False)
    table = read_micrographs([folder / "data" / "micrographs.star"])
    cache = TensorCache(folder / "cache", PreprocessConfig())
    preprocess_table(table, cache, torch.device("cpu"), progress=False)
    metrics = {m: cache.read_sidecar(m)["square_metrics"] for m in table["micrograph"]}
    return metrics, pd.read_csv(folder / "data" / "labels.csv").set_index("micrograph")


def accuracy(metrics: dict, labels: pd.DataFrame, thresholds: WeightFreeThresholds) -> dict[str, float]:
    combined = combine(predict_metrics(metrics, thresholds)).set_index("micrograph")
    return {g: float((combined[g] == labels.loc[combined.index, g]).mean()) for g in GROUPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--detector", default="2048x2048@1.0")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        train = dataset(Path(tmp) / "train", args.n, args.detector, seed=101)
        test = dataset(Path(tmp) / "test", args.n, args.detector, seed=202)
        thresholds = WeightFreeThresholds()
        for _ in range(2):  # coordinate descent, twice over the thresholds
            for name, values in GRID.items():
                group = GROUP_OF[name]
                scores = [accuracy(*train, dataclasses.replace(thresholds, **{name: float(v)}))[group] for v in values]
                thresholds = dataclasses.replace(thresholds, **{name: round(float(values[int(np.argmax(scores))]), 4)})
        print("fitted thresholds:", dataclasses.asdict(thresholds))
        print("default thresholds, test set:", accuracy(*test, WeightFreeThresholds()))
        print("fitted, training set:", accuracy(*train, thresholds))
        print("fitted, test set:", accuracy(*test, thresholds))
        majority = {g: float(test[1][g].value_counts(normalize=True).iloc[0]) for g in GROUPS}
        print("majority-class accuracy, test set:", majority)


if __name__ == "__main__":
    main()
