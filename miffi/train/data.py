"""Labelled training samples, stratified splits and subsets, and the training augmentation.

Augmentation (training only, as in the paper): a random square crop whose side is
uniform in [0.8, 1.0] × the micrograph's short side (made even), at a random position,
random horizontal and vertical flips (p = 0.5 each); then the ``miffi_v1`` recipe on
that square — Fourier crop to 1.5 Å, so the power spectrum is computed *after*
augmentation from the augmented image — resize and normalisation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from miffi.errors import MicrographError, MiffiError
from miffi.evaluate.label_files import match_labels
from miffi.labels import GROUPS
from miffi.mrc import map_micrograph
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import estimate_offset, squares_to_tensor
from miffi.preprocess.squares import crop_size

TARGETS = [f"target_{group}" for group in GROUPS]


def labelled_samples(table: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Micrographs of an intake table with their labels: ``micrograph``, ``path``,
    ``pixel_size``, the four labels, their indices (``target_<group>``) and ``stratum``."""
    missing = [g for g in GROUPS if g not in labels]
    if missing:
        raise MiffiError(
            f"training needs the four label groups; the labels lack {', '.join(missing)} "
            "(a single good/bad column is not enough)"
        )
    joined, _, _ = match_labels(table, labels)
    if joined.empty:
        raise MiffiError("no micrograph of the input has a label")
    samples = joined[["micrograph", "path", "pixel_size"]].copy()
    for group, names in GROUPS.items():
        samples[group] = joined[f"true_{group}"].to_numpy()
        samples[f"target_{group}"] = joined[f"true_{group}"].map({n: i for i, n in enumerate(names)}).to_numpy()
    samples["stratum"] = samples[list(GROUPS)].agg("/".join, axis=1)
    return samples.reset_index(drop=True)


def stratified_take(strata: pd.Series, count: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``count`` rows keeping each stratum's share (largest remainder)."""
    if not 0 <= count <= len(strata):
        raise MiffiError(f"cannot take {count} of {len(strata)} samples")
    groups = {key: rng.permutation(np.flatnonzero(strata.to_numpy() == key)) for key in sorted(set(strata))}
    exact = {key: count * len(idx) / len(strata) for key, idx in groups.items()}
    quota = {key: int(v) for key, v in exact.items()}
    by_remainder = sorted(groups, key=lambda k: (exact[k] - quota[k], len(groups[k])), reverse=True)
    for key in by_remainder[: count - sum(quota.values())]:
        quota[key] += 1
    return np.sort(np.concatenate([groups[key][: quota[key]] for key in groups] or [np.zeros(0, int)]))


def split(samples: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified train/validation split (at least one validation sample)."""
    if not 0 < val_fraction < 1:
        raise MiffiError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    count = max(1, round(val_fraction * len(samples)))
    if count >= len(samples):
        raise MiffiError(f"{len(samples)} labelled micrographs are too few to split off a validation set")
    val = stratified_take(samples["stratum"], count, np.random.default_rng([seed, 1]))
    mask = np.zeros(len(samples), bool)
    mask[val] = True
    return samples[~mask].reset_index(drop=True), samples[mask].reset_index(drop=True)


def subset(samples: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """A stratified subset of ``count`` samples (the learning-curve experiment)."""
    return samples.iloc[stratified_take(samples["stratum"], count, np.random.default_rng([seed, 2]))].reset_index(
        drop=True
    )


def training_split(
    samples: pd.DataFrame, val_fraction: float, seed: int, train_size: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified training and validation samples (:func:`split`); with ``train_size``, the
    training samples are a stratified subset of at most that many (:func:`subset`)."""
    train_samples, val_samples = split(samples, val_fraction, seed)
    if train_size:
        train_samples = subset(train_samples, min(train_size, len(train_samples)), seed)
    return train_samples, val_samples


def augmented_tensor(
    data: np.ndarray,
    pixel_size: float,
    config: PreprocessConfig,
    rng: np.random.Generator,
    crop_range: tuple[float, float] = (0.8, 1.0),
) -> torch.Tensor:
    """One augmented ``[channels, size, size]`` tensor from a 2D micrograph array."""
    if data.shape[0] > data.shape[1]:
        data = data.T
    rows, cols = data.shape
    side = int(rng.uniform(*crop_range) * rows) // 2 * 2
    top, left = int(rng.integers(0, rows - side + 1)), int(rng.integers(0, cols - side + 1))
    square = np.asarray(data[top : top + side, left : left + side], dtype=np.float32)
    if rng.random() < 0.5:
        square = square[:, ::-1]
    if rng.random() < 0.5:
        square = square[::-1, :]
    offset = estimate_offset(square)
    square = np.ascontiguousarray(square - np.float32(offset))
    crop = crop_size(side, pixel_size, config.target_pixel_size)
    return squares_to_tensor(square[None], crop, config, torch.device("cpu"), offset)[0]


class AugmentedMicrographs(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Training samples: a fresh augmentation of each micrograph per epoch, reproducible
    from (seed, epoch, index), so an interrupted run resumes with the same draws."""

    def __init__(
        self, samples: pd.DataFrame, config: PreprocessConfig, seed: int, crop_range: tuple[float, float] = (0.8, 1.0)
    ):
        self.samples = samples.reset_index(drop=True)
        self.config = config
        self.seed = seed
        self.crop_range = crop_range
        self.epoch = 0
        self.targets = torch.as_tensor(self.samples[TARGETS].to_numpy(dtype=np.int64))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.samples.iloc[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        data, header = map_micrograph(row["path"])
        pixel_size = row["pixel_size"] if pd.notna(row["pixel_size"]) else header.pixel_size
        if pixel_size is None:
            raise MicrographError(row["path"], "no pixel size in the header or the metadata")
        tensor = augmented_tensor(data, float(pixel_size), self.config, rng, self.crop_range)
        if not bool(torch.isfinite(tensor).all()):
            raise MicrographError(row["path"], "augmented crop is not finite (NaN/Inf or no contrast)")
        return tensor, self.targets[index]


def class_counts(samples: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Label counts per group (logged, so users see how unbalanced their labels are)."""
    return {group: {name: int((samples[group] == name).sum()) for name in names} for group, names in GROUPS.items()}
