"""micrographs → cached [squares, channels, 384, 384] tensors

Preprocess micrographs exactly as the published Miffi models expect (miffi_v1 recipe) into
DIR/<micrograph>.npy, reusing tensors whose micrograph and settings have not changed.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from miffi.cli import options
from miffi.device import frozen_imports

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    options.add_input_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="cache directory")
    options.add_device_option(parser)
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: image + power spectrum (miffi_v1), 1: image only (no_ps models)",
    )
    parser.add_argument("--max-squares", type=options.positive_int, help="keep at most this many squares")
    parser.add_argument("--force", action="store_true", help="recompute even when the cache is fresh")
    options.add_hash_option(parser)
    parser.add_argument("--status", type=Path, help="status table to write (default: DIR/preprocess.tsv)")
    parser.add_argument("--chunk", type=int, help="with a miffi intake table: only the micrographs of this chunk")
    options.add_progress_option(parser, "no progress bar")


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi import atomic
        from miffi.device import resolve_device
        from miffi.intake.chunks import select_chunk
        from miffi.preprocess.batch import preprocess_table, summarise
        from miffi.preprocess.cache import TensorCache
        from miffi.preprocess.config import PreprocessConfig

    device = resolve_device(args.device)
    config = PreprocessConfig(power_spectrum=args.channels == 2, max_squares=args.max_squares)
    table = select_chunk(options.read_inputs(args), args.chunk)
    cache = TensorCache(args.out, config, full_hash=args.full_hash)
    started = time.perf_counter()
    status = preprocess_table(table, cache, device, force=args.force, progress=not args.no_progress)
    wall = time.perf_counter() - started
    status_file = args.status or Path(args.out) / "preprocess.tsv"
    atomic.write_text(status_file, status.to_csv(sep="\t", index=False))
    for row in status[status["status"] == "failed"].itertuples():
        log.warning("failed: %s: %s", row.path, row.error)
    log.info("%s; status in %s", summarise(status, wall), status_file)
    return 1 if (status["status"] == "failed").all() else 0
