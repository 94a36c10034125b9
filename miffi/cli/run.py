"""intake → preprocess → infer → combine → export

Classify micrographs and write predictions.tsv, results.tsv, relion/<category>.star,
cryosparc/<category>.cs + .csg and lists/<category>.txt under OUTDIR.
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

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="INPUT",
        help="star/cs/csg/list files, MRC files, directories or quoted globs",
    )
    parser.add_argument("--outdir", required=True, type=Path)
    parser.add_argument("--cache", type=Path, help="tensor cache directory (default: OUTDIR/cache)")
    options.add_hash_option(parser)
    options.add_model_options(parser)
    options.add_decision_options(parser)
    options.add_export_options(parser)
    options.add_overrides_option(parser)
    options.add_input_options(parser)
    options.add_progress_option(parser)


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi.pipeline import RunOptions, run_pipeline

    settings = RunOptions(
        **options.prediction_settings(args),
        categories=options.category_settings(args),
        rule=args.rule,
        pixel_size=args.pixel_size,
        project_dir=args.project_dir,
        pattern=args.pattern,
        allow_outside_project=args.allow_outside_project,
        full_hash=args.full_hash,
        formats=args.formats,
        export_categories=args.categories,
        split_confidence=args.split_confidence,
        where=args.where,
        microscope=options.microscope(args),
        cryosparc_project_dir=args.cryosparc_project_dir,
        overrides=args.overrides,
    )
    results = run_pipeline(args.input, args.outdir, settings)
    return report_results(results, Path(args.outdir) / "results.tsv")


def report_results(results: pd.DataFrame, where: Path) -> int:
    """Log the failures and the counts per category; 1 when every micrograph failed."""
    failed = results[results["status"] == "failed"]
    for row in failed.itertuples():
        log.warning("failed: %s: %s", row.path, row.error)
    counts = results["category"].value_counts()
    log.info(
        "%d micrographs: %s; %d failed; results in %s",
        len(results),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        len(failed),
        where,
    )
    return 1 if len(failed) == len(results) else 0
