"""PNGs of image and power spectrum per micrograph, one folder per category

Writes OUT/<category>/<micrograph>.png from a run's results and tensor cache: what the
model saw (the normalised image, then its power spectrum, squares side by side), grouped
by the category the exports follow (overrides included), for inspection without a browser.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results.tsv of miffi run or the workflow")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the category folders into")
    parser.add_argument("--cache", type=Path, help="tensor cache (default: cache/ beside the results)")
    parser.add_argument(
        "--categories", type=options.categories, help="only these categories, e.g. good,bad_film (default: all)"
    )
    options.add_progress_option(parser)


def main(args: argparse.Namespace) -> int:
    from miffi.pipeline import read_results
    from miffi.preprocess.cache import existing_cache
    from miffi.report.pngs import write_pngs

    results = read_results(args.results)
    cache = existing_cache(args.cache or args.results.parent / "cache", list(results["micrograph"]))
    written = write_pngs(results, cache, args.out, args.categories, not args.no_progress)
    log.info("wrote %s", ", ".join(f"{name} {count}" for name, count in sorted(written.items())) or "nothing")
    return 0
