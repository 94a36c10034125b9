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
from miffi.labels import GROUPS, is_good
from miffi.preprocess.batch import preprocess_table
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset

GRID = {
    "drift_anisotropy": np.linspace(0.25, 0.7, 19),
    "drift_ring_anisotropy": np.linspace(0.2, 0.8, 13),
    "empty_thon_rings": np.linspace(0.2, 0.5, 7),
    "empty_flatness": np.linspace(1.1, 2.5, 15),
    "crack_bright_fraction": np.linspace(0.005, 0.1, 20),
    "contamination_dark_fraction": np.linspace(0.05, 0.3, 26),
    "crystal_lattice": np.linspace(1.3, 2.5, 13),
    "crystal_minor_peak": np.linspace(1.15, 3.0, 38),
    "crystal_major_peak": np.linspace(1.3, 2.2, 19),
    "film_edge_length": np.linspace(0.1, 0.6, 11),
    "film_minor_coverage": np.linspace(0.1, 0.45, 15),
    "film_flatness": np.linspace(4.5, 10.0, 12),
}
GROUP_OF = {
    "drift_anisotropy": "drift",
    "drift_ring_anisotropy": "drift",
    "empty_thon_rings": "drift",
    "empty_flatness": "drift",
    "crack_bright_fraction": "drift",
    "contamination_dark_fraction": "contamination",
    "crystal_lattice": "crystallinity",
    "crystal_minor_peak": "crystallinity",
    "crystal_major_peak": "crystallinity",
    "film_edge_length": "film",
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
    """Per-group label accuracy, and good vs bad (the paper's definition) as ``good``."""
    combined = combine(predict_metrics(metrics, thresholds)).set_index("micrograph")
    truth = labels.loc[combined.index]
    scores = {g: float((combined[g] == truth[g]).mean()) for g in GROUPS}
    called = combined[list(GROUPS)].apply(lambda row: is_good(row.to_dict()), axis=1)
    actual = truth[list(GROUPS)].apply(lambda row: is_good(row.to_dict()), axis=1)
    scores["good"] = float((called == actual).mean())
    return scores


def fitted_range(metrics: dict) -> dict[str, tuple[float, float]]:
    """0.5th and 99.5th percentile of every metric over the squares (weightfree.FITTED_RANGE)."""
    squares = pd.DataFrame([square for squares in metrics.values() for square in squares])
    return {
        name: (
            round(float(np.nanpercentile(squares[name], 0.5)), 4),
            round(float(np.nanpercentile(squares[name], 99.5)), 4),
        )
        for name in squares.columns
        if squares[name].notna().any()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--detector", default="2048x2048@1.0")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        train = dataset(Path(tmp) / "train", args.n, args.detector, seed=101)
        test = dataset(Path(tmp) / "test", args.n, args.detector, seed=202)
        print("FITTED_RANGE (training squares):", fitted_range(train[0]))
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
        good = test[1][list(GROUPS)].apply(lambda row: is_good(row.to_dict()), axis=1)
        majority["good"] = float(good.value_counts(normalize=True).iloc[0])
        print("majority-class accuracy, test set:", majority)


if __name__ == "__main__":
    main()
