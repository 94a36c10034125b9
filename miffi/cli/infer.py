"""cached tensors → per-square probabilities; a stage of the Snakemake workflow (miffi run does all in one process)"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options
from miffi.device import frozen_imports

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    options.add_table_options(parser)
    options.add_model_options(parser)
    options.add_thresholds_option(parser)
    parser.add_argument("--out", required=True, type=Path, help="predictions TSV to write")
    options.add_progress_option(parser)


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi.pipeline import RunOptions, predict_stage, write_table

    table = options.chunk_table(args)
    settings = RunOptions(**options.prediction_settings(args))
    predictions, evaluated = predict_stage(table, settings)
    write_table(predictions, args.out)
    total = predictions["micrograph"].nunique()
    log.info(
        "predictions for %d micrographs (%d evaluated, %d reused): %s", total, evaluated, total - evaluated, args.out
    )
    return 0
