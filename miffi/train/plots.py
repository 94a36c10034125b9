"""Figures of training: the loss curves (the paper's Figure 3) and the learning curve (Figure 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import pandas as pd

from miffi.labels import GROUPS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _accuracy_lines(ax: Axes, x: pd.Series, scores: pd.DataFrame, xlabel: str, ylabel: str) -> None:
    """Good-vs-bad and per-group validation accuracy against ``x``."""
    ax.plot(x, scores["val_accuracy"], "o-", color="black", label="good vs bad")
    for group in GROUPS:
        ax.plot(x, scores[f"val_{group}_accuracy"], ".--", linewidth=0.8, label=group)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8)


def loss_figure(history: pd.DataFrame, iterations: pd.DataFrame) -> Figure:
    """Training loss per iteration (and its running mean), validation loss and accuracy per epoch."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    per_epoch = max(1, len(iterations) // max(1, len(history)))
    x = (iterations["step"] + 1) / per_epoch
    left.plot(x, iterations["loss"], color="#90a4ae", linewidth=0.8, label="train (iteration)")
    left.plot(
        x, iterations["loss"].rolling(per_epoch, min_periods=1).mean(), color="#1565c0", label="train (running mean)"
    )
    left.plot(history["epoch"], history["val_loss"], "o-", color="#c62828", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("loss (sum of 4 cross-entropies)")
    left.legend(frameon=False, fontsize=8)
    _accuracy_lines(right, history["epoch"], history, "epoch", "validation accuracy")
    fig.tight_layout()
    return fig


def learning_curve_figure(curve: pd.DataFrame) -> Figure:
    """Best validation accuracy against the number of training micrographs."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.set_xscale("log")
    _accuracy_lines(ax, curve["train_size"], curve, "training micrographs", "validation accuracy (best epoch)")
    ax.set_xticks(curve["train_size"], [str(n) for n in curve["train_size"]])
    ax.minorticks_off()
    fig.tight_layout()
    return fig
