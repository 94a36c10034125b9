"""The learning-curve experiment (the paper's Figure 4).

The learning curve trains one model per training-set size, each on a stratified subset
of the same training set (every label combination keeps its share), validates all of
them on the same validation set, and plots the best validation accuracy against size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from miffi import atomic
from miffi.report import figures
from miffi.train.data import subset
from miffi.train.loop import TrainConfig, best_epoch, train
from miffi.train.plots import learning_curve_figure

log = logging.getLogger(__name__)


def learning_curve(
    train_samples: pd.DataFrame,
    val_samples: pd.DataFrame,
    sizes: Sequence[int],
    config: TrainConfig,
    out: str | Path,
    device: torch.device,
    progress: bool = True,
) -> pd.DataFrame:
    """Train on stratified subsets of each size; returns (and writes) ``curve.tsv``."""
    out = Path(out)
    rows = []
    losses = {}
    for size in sorted(set(sizes)):
        size = min(size, len(train_samples))
        log.info("learning curve: %d training micrographs", size)
        history = train(
            subset(train_samples, size, config.seed),
            val_samples,
            config,
            out / f"n{size:05d}",
            device,
            resume=True,
            progress=progress,
        )
        best = best_epoch(history)
        rows.append(
            {
                "train_size": size,
                "best_epoch": int(best["epoch"]),
                **{k: best[k] for k in history.columns if k.startswith("val_")},
            }
        )
        losses[size] = history
    curve = pd.DataFrame(rows)
    atomic.write_text(out / "curve.tsv", curve.to_csv(sep="\t", index=False))
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(losses)))
    for colour, (size, history) in zip(colours, losses.items()):
        ax.plot(history["epoch"], history["train_loss"], "-", color=colour, label=f"n={size} train")
        ax.plot(history["epoch"], history["val_loss"], "--", color=colour, label=f"n={size} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    fig.tight_layout()
    figures.save_all({"learning_curve": learning_curve_figure(curve), "loss_curves": fig}, out / "figures", pdf=True)
    return curve
