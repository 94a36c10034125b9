"""write a labelled dataset of simulated micrographs

Simulate micrographs with known Miffi labels (CTF, vitreous and crystalline ice, drift, cracks,
empty holes, support film, contamination, shot noise): micrographs/*.mrc, labels.csv,
micrographs.star and exposures.cs/.csg.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from miffi.cli import options
from miffi.device import frozen_imports

log = logging.getLogger("miffi")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("--n", required=True, type=options.positive_int, help="number of micrographs")
    parser.add_argument(
        "--detector", default="k3", help="k3, k2, falcon or WxH@APIX, e.g. 1024x1024@1.0 (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--config", type=Path, help="YAML with the label mix and parameter ranges")
    parser.add_argument("--float16", action="store_true", help="write MRC mode 12 (float16) instead of float32")
    parser.add_argument("--workers", type=options.positive_int, help="processes (default: one per four cores)")
    options.add_progress_option(parser, "no progress bar")


def main(args: argparse.Namespace) -> int:
    with frozen_imports():
        from miffi.simulate.config import SimulationConfig, parse_detector
        from miffi.simulate.dataset import describe_labels, simulate_dataset

    config = SimulationConfig.from_yaml(args.config) if args.config else SimulationConfig()
    table = simulate_dataset(
        args.out,
        args.n,
        parse_detector(args.detector),
        config,
        seed=args.seed,
        float16=args.float16,
        workers=args.workers,
        progress=not args.no_progress,
    )
    log.info("wrote %d micrographs to %s (%s)", len(table), args.out, describe_labels(table))
    return 0
