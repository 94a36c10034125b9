"""results → RELION/cryoSPARC/lists; a stage of the Snakemake workflow (miffi run does all in one process)"""

from __future__ import annotations

import argparse
from pathlib import Path

from miffi.cli import options


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results.tsv of miffi run or miffi combine (its .parquet is read)")
    parser.add_argument("--outdir", required=True, type=Path)
    options.add_export_options(parser)
    options.add_overrides_option(parser)


def main(args: argparse.Namespace) -> int:
    from miffi.pipeline import export_stage, read_results

    microscope = options.microscope(args)
    results = read_results(args.results)
    export_stage(
        results,
        args.outdir,
        args.formats,
        args.categories,
        args.split_confidence,
        args.where,
        microscope=microscope,
        cryosparc_project_dir=args.cryosparc_project_dir,
        overrides=options.overrides(args),
    )
    return 0
