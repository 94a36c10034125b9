"""predictions → results.tsv; a stage of the Snakemake workflow (miffi run does all in one process)"""

from __future__ import annotations

import argparse
from pathlib import Path

from miffi.cli import options
from miffi.cli.run import report_results


def add_args(parser: argparse.ArgumentParser) -> None:
    options.add_table_options(parser)
    parser.add_argument("--predictions", nargs="+", required=True, type=Path, help="predictions TSVs")
    parser.add_argument("--model", type=Path, help="the model that made the predictions (none: weight-free)")
    options.add_decision_options(parser)
    options.add_overrides_option(parser)
    parser.add_argument("--out", required=True, type=Path, help="results TSV to write (a .parquet copy beside)")


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    from miffi.pipeline import combine_stage, write_table
    from miffi.textfiles import read_tsv

    thresholds, categories = options.weightfree_thresholds(args), options.category_settings(args)
    frames = [read_tsv(p, ["micrograph"], "predictions table") for p in args.predictions]
    predictions = pd.concat(frames, ignore_index=True)
    table = options.chunk_table(args)
    results = combine_stage(
        table, predictions, args.cache, args.model, args.rule, categories, thresholds, overrides=options.overrides(args)
    )
    write_table(predictions, args.out.with_name("predictions.tsv"))
    write_table(results, args.out)
    return report_results(results, args.out)
