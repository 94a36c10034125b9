"""The learning-curve experiment (the paper's Figure 4) and the loss curves (Figure 3).

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

from miffi import atomic, figures
from miffi.labels import GROUPS
from miffi.train.data import subset
from miffi.train.loop import TrainConfig, best_epoch, train

log = logging.getLogger(__name__)


def _accuracy_lines(ax: plt.Axes, x: pd.Series, scores: pd.DataFrame, xlabel: str, ylabel: str) -> None:
    """Good-vs-bad and per-group validation accuracy against ``x``."""
    ax.plot(x, scores["val_accuracy"], "o-", color="black", label="good vs bad")
    for group in GROUPS:
        ax.plot(x, scores[f"val_{group}_accuracy"], ".--", linewidth=0.8, label=group)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8)


def loss_figure(history: pd.DataFrame, iterations: pd.DataFrame) -> plt.Figure:
    """Training loss per iteration (and its running mean), validation loss and accuracy per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    per_epoch = max(1, len(iterations) // max(1, len(history)))
    x = (iterations["step"] + 1) / per_epoch
    left.plot(x, iterations["loss"], color="#90a4ae", linewidth=0.8, label="train (iteration)")
    left.plot(x, iterations["loss"].rolling(per_epoch, min_periods=1).mean(), color="#1565c0", label="train (running mean)")
    left.plot(history["epoch"], history["val_loss"], "o-", color="#c62828", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss (sum of 4 cross-entropies)")
    left.legend(frameon=False, fontsize=8)
    _accuracy_lines(right, history["epoch"], history, "epoch", "validation accuracy")
    fig.tight_layout()
    return fig


def learning_curve_figure(curve: pd.DataFrame) -> plt.Figure:
    """Best validation accuracy against the number of training micrographs."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.set_xscale("log")
    _accuracy_lines(ax, curve["train_size"], curve, "training micrographs", "validation accuracy (best epoch)")
    ax.set_xticks(curve["train_size"], [str(n) for n in curve["train_size"]])
    ax.minorticks_off()
    fig.tight_layout()
    return fig


def learning_curve(train_samples: pd.DataFrame, val_samples: pd.DataFrame, sizes: Sequence[int],
                   config: TrainConfig, out: str | Path, device: torch.device, progress: bool = True) -> pd.DataFrame:
    """Train on stratified subsets of each size; returns (and writes) ``curve.tsv``."""
    out = Path(out)
    rows = []
    losses = {}
    for size in sorted(set(sizes)):
        size = min(size, len(train_samples))
        log.info("learning curve: %d training micrographs", size)
        history = train(subset(train_samples, size, config.seed), val_samples, config, out / f"n{size:05d}",
                        device, resume=True, progress=progress)
        best = best_epoch(history)
        rows.append({"train_size": size, "best_epoch": int(best["epoch"]),
                     **{k: best[k] for k in history if k.startswith("val_")}})
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
    figures.save_all({"learning_curve": learning_curve_figure(curve), "loss_curves": fig}, out / "figures")
    return curve
