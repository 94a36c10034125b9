"""fetch the published Miffi models (Zenodo)

Download published Miffi models, verify their md5 checksums, resume interrupted downloads.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    # from the registry, not miffi.classify.download: its urllib and tqdm imports
    # (~0.09 s) would be paid by every miffi command, whose parser this builds
    from miffi.classify.registry import DEFAULT_MODELS, RECORD_URL

    parser.add_argument(
        "--models",
        nargs="+",
        default=list(DEFAULT_MODELS),
        metavar="NAME",
        help="model names, e.g. miffi_v1 miffi_no_ps_v1 (default: %(default)s)",
    )
    parser.add_argument("--all", action="store_true", help="every file of the record")
    parser.add_argument("--list", action="store_true", help="list the record's files and exit")
    parser.add_argument("--dir", type=Path, default=Path("models"), help="target folder (default: %(default)s)")
    parser.add_argument("--record-url", default=RECORD_URL, help="Zenodo record API URL (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=5, help="retries per file (default: %(default)s)")
    options.add_progress_option(parser)


def main(args: argparse.Namespace) -> int:
    from miffi.classify.download import download_models, fetch_record

    if args.list:
        for remote in fetch_record(args.record_url):
            print(f"{remote.model}\t{remote.key}\t{remote.size or '?'} bytes")
        return 0
    models = None if args.all else args.models
    for path in download_models(args.dir, models, args.record_url, args.retries, progress=not args.no_progress):
        log.info("ready: %s", path)
    return 0
