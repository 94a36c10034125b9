"""accuracy against human labels (metrics JSON + figures)

Compare results with labels: good-vs-bad TP/FP/TN/FN, accuracy, precision, recall, per-group
accuracy and confusion matrices for every method in the results (model, weight-free, CTF baseline).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        nargs="+",
        required=True,
        type=Path,
        help="results.tsv of one or more runs over the same micrographs (e.g. two models)",
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="labels: CSV/TSV (micrograph + film, drift, crystallinity, contamination), Miffi's "
        "*_label_dict.pkl, or a RELION .star",
    )
    parser.add_argument("--label-column", help="a single good/bad column instead of the four groups")
    parser.add_argument("--dataset", help="dataset name (default: the results' folder name)")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="writes evaluation.json, matched.tsv, summary.tsv, figures/",
    )
    options.add_pdf_option(parser)


def main(args: argparse.Namespace) -> int:
    from miffi.evaluate.label_files import read_labels
    from miffi.evaluate.scores import evaluate
    from miffi.pipeline import read_results
    from miffi.report.html import write_evaluation

    labels = read_labels(args.labels, args.label_column)
    results = [read_results(path) for path in args.results]
    evaluation = evaluate(results, labels, args.dataset or args.results[0].parent.name)
    write_evaluation(evaluation, args.out, args.pdf)
    if evaluation.unmatched_labels or evaluation.unmatched_results:
        log.warning(
            "%d micrographs have no label (e.g. %s); %d labels match no micrograph (e.g. %s)",
            len(evaluation.unmatched_results),
            ", ".join(evaluation.unmatched_results[:3]) or "-",
            len(evaluation.unmatched_labels),
            ", ".join(evaluation.unmatched_labels[:3]) or "-",
        )
    for name, method_score in evaluation.scores.items():
        c, m = method_score.counts, method_score.counts.metrics()
        log.info(
            "%s: accuracy %.3f (TP %d FP %d TN %d FN %d) precision %.3f recall %.3f",
            name,
            m["accuracy"],
            c.tp,
            c.fp,
            c.tn,
            c.fn,
            m["precision"],
            m["recall"],
        )
    log.info("evaluation of %d labelled micrographs in %s", len(evaluation.matched), args.out)
    return 0
