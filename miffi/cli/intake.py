"""inputs → micrograph table; a stage of the Snakemake workflow (miffi run does all in one process)"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    options.add_input_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="table to write (NAME.micrographs.tsv)")
    parser.add_argument(
        "--chunks",
        type=options.positive_int,
        default=1,
        help="split into this many stable chunks (by micrograph id; with --chunk-dir, new micrographs fill the "
        "chunk with the fewest, so that they change one chunk)",
    )
    parser.add_argument(
        "--chunk-dir",
        type=Path,
        help="also write each chunk's table to DIR/chunk_N.micrographs.tsv; the tables already there keep their "
        "micrographs' chunks",
    )


def main(args: argparse.Namespace) -> int:
    from miffi.intake import check_table_name, write_table
    from miffi.intake.chunks import assign_chunks, previous_chunks, write_chunks

    check_table_name(args.out)
    previous = previous_chunks(args.chunk_dir, args.chunks) if args.chunk_dir else None
    table = assign_chunks(options.read_inputs(args), args.chunks, previous)
    write_table(table, args.out)
    if args.chunk_dir:
        write_chunks(table, args.chunks, args.chunk_dir)
    log.info("%d micrographs in %d chunks: %s", len(table), args.chunks, args.out)
    return 0
