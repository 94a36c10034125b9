"""self-contained HTML report (one dataset, or --summary)

Write an offline HTML report with counts, confidence histograms, categories along acquisition
order, metric distributions, thumbnails and, with --evaluation, accuracy and the most confident
errors. With --summary: one report across datasets.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options
from miffi.errors import MiffiError

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, help="results.tsv of the dataset")
    parser.add_argument(
        "--evaluation",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="miffi evaluate output directory (one per dataset with --summary)",
    )
    parser.add_argument("--cache", type=Path, help="tensor cache, for thumbnails (image + power spectrum)")
    parser.add_argument("--summary", action="store_true", help="a report across the datasets of --evaluation")
    parser.add_argument(
        "--link",
        action="append",
        default=[],
        metavar="NAME=HREF",
        help="with --summary: link to a dataset's report (repeatable)",
    )
    parser.add_argument("--out", required=True, type=Path, help="HTML file to write")
    parser.add_argument("--figures", type=Path, help="folder for the PNG figures (default: <out>_figures)")
    options.add_pdf_option(parser)
    parser.add_argument("--title", help="report title")
    parser.add_argument("--examples", type=options.positive_int, default=4, help="thumbnails per category")
    parser.add_argument("--errors", type=options.positive_int, default=8, help="most confident errors shown")


def links(values: list[str]) -> dict[str, str]:
    """``--link NAME=HREF`` values as a mapping."""
    pairs = [value.split("=", 1) for value in values]
    for value, pair in zip(values, pairs):
        if len(pair) != 2:
            raise MiffiError(f"--link {value!r}: expected NAME=HREF")
    return dict(pairs)


def main(args: argparse.Namespace) -> int:
    from miffi.report.html import dataset_report, read_evaluation, summary_report

    if args.summary:
        if args.results or args.cache:
            raise MiffiError("--summary takes --evaluation directories only (no --results or --cache)")
        if not args.evaluation:
            raise MiffiError("--summary needs --evaluation DIR for each dataset")
        evaluations = [read_evaluation(directory)[0] for directory in args.evaluation]
        summary = summary_report(
            evaluations, args.out, args.title or "Miffi benchmark", args.figures, links(args.link), args.pdf
        )
        log.info("summary of %d datasets (%d rows) in %s", len(evaluations), len(summary), args.out)
        return 0
    if not args.results:
        raise MiffiError("a dataset report needs --results (or use --summary)")
    from miffi.pipeline import read_results

    results = read_results(args.results)
    evaluation, matched = read_evaluation(args.evaluation[0]) if args.evaluation else (None, None)
    dataset_report(
        results,
        args.out,
        args.title or f"Miffi report: {args.results.parent.name}",
        evaluation,
        matched,
        args.cache,
        args.figures,
        args.examples,
        args.errors,
        args.pdf,
        args.evaluation[0] / "figures" if args.evaluation else None,
    )
    log.info("report in %s", args.out)
    return 0
