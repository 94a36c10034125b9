"""label micrographs in the browser, for training and evaluation

Starts a local web app showing each micrograph as the model sees it (image and power
spectrum, from the tensor cache) with the four groups' labels as buttons and keys; every
label is written to --labels at once (the CSV miffi train and miffi evaluate read), so a
restart resumes where it stopped. Give a run's results.tsv to see its calls and to label
the most uncertain micrographs first, or any dataset input (then micrographs are
preprocessed into --cache as they are shown). Opens on 127.0.0.1 with a random token in
the printed URL; from another machine, forward the port with ssh -L.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from miffi.cli import options


def add_args(parser: argparse.ArgumentParser) -> None:
    options.add_input_arguments(parser)
    parser.add_argument("--labels", required=True, type=Path, help="labels CSV to write (resumed when it exists)")
    parser.add_argument(
        "--cache",
        type=Path,
        help="tensor cache (default: cache/ beside a results table; for a dataset, cache/ beside --labels)",
    )
    options.add_review_options(parser, default_order="uncertain")
    options.add_device_option(parser)


def main(args: argparse.Namespace) -> int:
    from miffi.device import resolve_device
    from miffi.review.decisions import label_file
    from miffi.review.server import serve
    from miffi.review.session import Decisions, dataset_session, is_results_table, results_session

    decisions = Decisions(labels=label_file(args.labels))
    device = resolve_device(args.device)
    if len(args.inputs) == 1 and is_results_table(args.inputs[0]):
        session = results_session(args.inputs[0], "label", decisions, args.cache, device)
    else:
        cache = args.cache or args.labels.resolve().parent / "cache"
        session = dataset_session(options.read_inputs(args), decisions, cache, device)
    serve(session, args.host, args.port, args.order)
    return 0
