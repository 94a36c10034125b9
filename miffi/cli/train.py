"""train or fine-tune a model on labelled micrographs

Train a ConvNeXt on labelled micrographs as in the Miffi paper (AdamW, cosine schedule,
layer-wise decay, crop/flip augmentation with the power spectrum computed after it); writes
per-epoch checkpoints and DIR/best.safetensors for miffi run --model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from miffi.cli import options
from miffi.device import frozen_imports

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from miffi.train.loop import TrainConfig

log = logging.getLogger("miffi")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``miffi train`` and ``miffi learning-curve``."""
    options.add_input_arguments(parser)
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="labels: CSV/TSV with the four groups, Miffi's *_label_dict.pkl, or a .star",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--preset",
        help="the paper's cases: scratch-1ch, finetune-1ch, finetune-2ch (other options override the preset)",
    )
    parser.add_argument("--arch", help="timm ConvNeXt, e.g. convnext_atto, convnext_small (default convnext_small)")
    parser.add_argument("--channels", type=int, choices=(1, 2), help="2: image + power spectrum (default), 1: image")
    parser.add_argument("--size", type=options.positive_int, help="network input side (default 384, as miffi_v1)")
    parser.add_argument("--pretrained", type=Path, help="local ImageNet ConvNeXt weights (timm or Meta file)")
    parser.add_argument("--epochs", type=options.positive_int)
    parser.add_argument("--batch-size", type=options.positive_int)
    parser.add_argument("--lr", type=options.positive_float, help="peak learning rate (the head's)")
    parser.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay (1: none)")
    parser.add_argument("--warmup-epochs", type=float, help="linear warm-up length in epochs")
    parser.add_argument("--val-fraction", type=float, help="stratified validation share (default 0.1)")
    parser.add_argument("--train-size", type=options.positive_int, help="train on a stratified subset of this size")
    parser.add_argument("--seed", type=int, help="seed for the split, initialisation and augmentation")
    options.add_device_option(parser)
    parser.add_argument("--workers", type=int, help="data-loading processes (default 0: in the main process)")
    parser.add_argument("--no-bf16", action="store_true", help="no bfloat16 autocast on the GPU")
    parser.add_argument("--show-groups", action="store_true", help="print the layer-decay groups and exit")
    options.add_progress_option(parser)


def training_setup(
    args: argparse.Namespace,
) -> tuple[TrainConfig, torch.device, pd.DataFrame, pd.DataFrame] | None:
    """The training config, the device and the stratified train/validation samples (None
    with --show-groups, after printing the layer-decay groups)."""
    from miffi.classify.models import build_convnext
    from miffi.device import resolve_device
    from miffi.evaluate.label_files import read_labels
    from miffi.train.data import class_counts, labelled_samples, training_split
    from miffi.train.layer_decay import describe
    from miffi.train.loop import preset_config

    config = preset_config(
        args.preset,
        arch=args.arch,
        channels=args.channels,
        size=args.size,
        pretrained=str(args.pretrained) if args.pretrained else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        layer_decay=args.layer_decay,
        warmup_epochs=args.warmup_epochs,
        val_fraction=args.val_fraction,
        seed=args.seed,
        workers=args.workers,
        bf16=False if args.no_bf16 else None,
    )
    groups = describe(build_convnext(config.arch, config.channels), config.layer_decay, config.lr)
    if args.show_groups:
        print(groups)
        return None
    log.info("layer-wise learning rates (decay %g):\n%s", config.layer_decay, groups)
    samples = labelled_samples(options.read_inputs(args), read_labels(args.labels))
    train_samples, val_samples = training_split(samples, config.val_fraction, config.seed, args.train_size)
    log.info(
        "%d training and %d validation micrographs; labels %s",
        len(train_samples),
        len(val_samples),
        class_counts(samples),
    )
    return config, resolve_device(args.device), train_samples, val_samples


def add_args(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR")


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi.train.loop import best_epoch, train

    setup = training_setup(args)
    if setup is None:
        return 0
    config, device, train_samples, val_samples = setup
    history = train(train_samples, val_samples, config, args.out, device, args.resume, not args.no_progress)
    best = best_epoch(history)
    log.info(
        "best epoch %d: validation accuracy %.3f; model in %s",
        best["epoch"],
        best["val_accuracy"],
        args.out / "best.safetensors",
    )
    return 0
