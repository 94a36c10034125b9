"""accuracy vs training-set size (paper's Fig. 4)

Train on stratified subsets of the training set and plot the best validation accuracy against
their size, with the loss curves.
"""

from __future__ import annotations

import argparse
import logging

from miffi.cli import options
from miffi.cli.train import add_train_options, training_setup
from miffi.device import frozen_imports

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser)
    parser.add_argument("--sizes", type=options.sizes, required=True, help="training-set sizes, e.g. 10,20,40,80")


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi.train.curves import learning_curve

    setup = training_setup(args)
    if setup is None:
        return 0
    config, device, train_samples, val_samples = setup
    curve = learning_curve(train_samples, val_samples, args.sizes, config, args.out, device, not args.no_progress)
    for row in curve.itertuples():
        log.info("%5d training micrographs: validation accuracy %.3f", row.train_size, row.val_accuracy)
    return 0
