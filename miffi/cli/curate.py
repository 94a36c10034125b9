"""review a run's calls in the browser and overrule them

Starts a local web app over a results.tsv of miffi run or the workflow: each micrograph as
the model saw it, its call and probabilities; Enter confirms the call, a number key sets
another category. Decisions go to --overrides at once (default: overrides.tsv beside the
results), which miffi export, miffi run, miffi combine and the workflow apply (recorded
in results.tsv as category_override and override_source), so the RELION and cryoSPARC
exports follow them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from miffi.cli import options


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results.tsv of miffi run or the workflow")
    parser.add_argument("--overrides", type=Path, help="overrides TSV to write (default: overrides.tsv beside results)")
    parser.add_argument("--cache", type=Path, help="tensor cache (default: cache/ beside the results)")
    options.add_review_options(parser, default_order="uncertain")


def main(args: argparse.Namespace) -> int:
    from miffi.review.decisions import override_file
    from miffi.review.server import serve
    from miffi.review.session import Decisions, results_session

    overrides = args.overrides or args.results.parent / "overrides.tsv"
    session = results_session(args.results, "curate", Decisions(overrides=override_file(overrides)), args.cache, None)
    serve(session, args.host, args.port, args.order)
    return 0
