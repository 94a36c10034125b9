"""The ``miffi`` command line. It parses arguments and calls the package; no logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from miffi import __version__
from miffi.download import DEFAULT_MODELS, RECORD_URL
from miffi.errors import MiffiError

log = logging.getLogger("miffi")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="MRC files, RELION .star, cryoSPARC .cs/.csg, a text list of paths, "
                             "a directory, or a quoted glob such as 'Movies/*.mrc'")
    add_input_options(parser)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pixel-size", type=_positive_float, metavar="Å",
                        help="pixel size for every micrograph (overrides metadata and headers)")
    parser.add_argument("--project-dir", type=Path,
                        help="directory that paths in star/cs/csg/list files are relative to "
                             "(default: found automatically: the current directory, the file's "
                             "folder or one of its parents)")
    parser.add_argument("--pattern", default="*.mrc",
                        help="file pattern for directory inputs (default: %(default)s)")


def cmd_preprocess(args: argparse.Namespace) -> int:
    from miffi import atomic
    from miffi.batch import preprocess_table, summarise
    from miffi.cache import TensorCache
    from miffi.config import PreprocessConfig
    from miffi.device import resolve_device
    from miffi.intake import read_micrographs

    device = resolve_device(args.device)
    config = PreprocessConfig(power_spectrum=args.channels == 2, max_squares=args.max_squares)
    table = read_micrographs(args.inputs, args.project_dir, args.pixel_size, args.pattern)
    cache = TensorCache(args.out, config)
    status = preprocess_table(table, cache, device, force=args.force, progress=not args.no_progress)
    status_file = args.status or Path(args.out) / "preprocess.tsv"
    atomic.write_text(status_file, status.to_csv(sep="\t", index=False))
    for row in status[status["status"] == "failed"].itertuples():
        log.warning("failed: %s: %s", row.path, row.error)
    log.info("%s; status in %s", summarise(status), status_file)
    return 1 if (status["status"] == "failed").all() else 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from miffi.labels import GROUPS
    from miffi.simulate.config import SimulationConfig, parse_detector
    from miffi.simulate.dataset import simulate_dataset

    config = SimulationConfig.from_yaml(args.config) if args.config else SimulationConfig()
    table = simulate_dataset(args.out, args.n, parse_detector(args.detector), config, seed=args.seed,
                             float16=args.float16, workers=args.workers, progress=not args.no_progress)
    counts = "; ".join(
        f"{group}: " + ", ".join(f"{label} {count}" for label, count in table[group].value_counts().items())
        for group in GROUPS
    )
    log.info("wrote %d micrographs to %s (%s)", len(table), args.out, counts)
    return 0


def _thresholds(text: str) -> dict[str, float]:
    """``0.8`` (all groups) or ``film=0.8,drift=0.9``."""
    from miffi.labels import GROUPS

    if "=" not in text:
        return {group: float(text) for group in GROUPS}
    values = {}
    for part in text.split(","):
        group, _, value = part.partition("=")
        if group.strip() not in GROUPS:
            raise argparse.ArgumentTypeError(f"unknown group {group.strip()!r} (groups: {', '.join(GROUPS)})")
        values[group.strip()] = float(value)
    return {**{group: 0.7 for group in GROUPS}, **values}


def cmd_run(args: argparse.Namespace) -> int:
    from miffi.combine import CategorySettings, group_rules
    from miffi.device import resolve_device
    from miffi.run import RunOptions, run_pipeline
    from miffi.weightfree import WeightFreeThresholds

    group_rules(args.rule)  # fail on a bad rule before any work
    thresholds = WeightFreeThresholds()
    if args.thresholds:
        import yaml

        thresholds = WeightFreeThresholds.from_mapping(yaml.safe_load(args.thresholds.read_text()) or {})
    bad_crystallinity = ("major_crystalline",) if args.minor_crystalline_good else \
        ("minor_crystalline", "major_crystalline")
    options = RunOptions(
        model=args.model, arch=args.arch, cache_dir=args.cache, device=resolve_device(args.device),
        rule=args.rule,
        categories=CategorySettings(args.good_threshold, args.bad_threshold, bad_crystallinity),
        formats=args.formats.split(","), export_categories=args.categories.split(",") if args.categories else None,
        split_confidence=args.split_confidence, batch_size=args.batch_size, bf16=args.bf16,
        pixel_size=args.pixel_size, project_dir=args.project_dir, pattern=args.pattern,
        progress=not args.no_progress, thresholds=thresholds, where=args.where,
    )
    results = run_pipeline(args.input, args.outdir, options)
    failed = results[results["status"] == "failed"]
    for row in failed.itertuples():
        log.warning("failed: %s: %s", row.path, row.error)
    counts = results["category"].value_counts()
    log.info("%d micrographs: %s; %d failed; results in %s", len(results),
             ", ".join(f"{k} {v}" for k, v in counts.items()), len(failed), Path(args.outdir) / "results.tsv")
    return 1 if len(failed) == len(results) else 0


def cmd_download(args: argparse.Namespace) -> int:
    from miffi.download import download_models, fetch_record

    if args.list:
        for remote in fetch_record(args.record_url):
            print(f"{remote.model}\t{remote.key}\t{remote.size or '?'} bytes")
        return 0
    models = None if args.all else args.models
    for path in download_models(args.dir, models, args.record_url, args.retries, progress=not args.no_progress):
        log.info("ready: %s", path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miffi", description="Cryo-EM micrograph filtering with Miffi-class models."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pre = sub.add_parser("preprocess", parents=[common], help="micrographs → cached [squares, channels, 384, 384] tensors",
                         description="Preprocess micrographs exactly as the published Miffi models "
                                     "expect (miffi_v1 recipe) into DIR/<micrograph>.npy, reusing "
                                     "tensors whose micrograph and settings have not changed.")
    add_input_arguments(pre)
    pre.add_argument("--out", required=True, type=Path, metavar="DIR", help="cache directory")
    pre.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda or cuda:N")
    pre.add_argument("--channels", type=int, choices=(1, 2), default=2,
                     help="2: image + power spectrum (miffi_v1), 1: image only (no_ps models)")
    pre.add_argument("--max-squares", type=_positive_int, help="keep at most this many squares")
    pre.add_argument("--force", action="store_true", help="recompute even when the cache is fresh")
    pre.add_argument("--status", type=Path, help="status table to write (default: DIR/preprocess.tsv)")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.set_defaults(func=cmd_preprocess)

    sim = sub.add_parser("simulate", parents=[common], help="write a labelled dataset of simulated micrographs",
                         description="Simulate micrographs with known Miffi labels (CTF, vitreous and "
                                     "crystalline ice, drift, cracks, empty holes, support film, "
                                     "contamination, shot noise): micrographs/*.mrc, labels.csv, "
                                     "micrographs.star and exposures.cs/.csg.")
    sim.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    sim.add_argument("--n", required=True, type=_positive_int, help="number of micrographs")
    sim.add_argument("--detector", default="k3", help="k3, k2, falcon or WxH@APIX, e.g. 1024x1024@1.0 "
                                                      "(default: %(default)s)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    sim.add_argument("--config", type=Path, help="YAML with the label mix and parameter ranges")
    sim.add_argument("--float16", action="store_true", help="write MRC mode 12 (float16) instead of float32")
    sim.add_argument("--workers", type=_positive_int, help="processes (default: one per four cores)")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", parents=[common], help="intake → preprocess → infer → combine → export",
                         description="Classify micrographs and write predictions.tsv, results.tsv, "
                                     "relion/<category>.star, cryosparc/<category>.cs + .csg and "
                                     "lists/<category>.txt under OUTDIR.")
    run.add_argument("--input", nargs="+", required=True, metavar="INPUT",
                     help="star/cs/csg/list files, MRC files, directories or quoted globs")
    run.add_argument("--model", type=Path, help="TorchScript model (miffi_v1.pt), timm state dict or "
                                                "miffi .safetensors checkpoint (default: the weight-free "
                                                "classifier on Fourier-space metrics)")
    run.add_argument("--thresholds", type=Path, help="YAML with weight-free classifier thresholds")
    run.add_argument("--where", action="append", default=[], metavar="EXPR",
                     help="export only micrographs with COLUMN OP VALUE, e.g. 'water_ring < 1.3' or "
                          "'ctf_baseline == good' (repeatable; all must hold)")
    run.add_argument("--arch", default="convnext_small", help="timm architecture for state dicts")
    run.add_argument("--outdir", required=True, type=Path)
    run.add_argument("--cache", type=Path, help="tensor cache directory (default: OUTDIR/cache)")
    run.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda or cuda:N")
    run.add_argument("--batch-size", type=_positive_int, default=16, help="squares per batch")
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster; logits within ~0.01)")
    run.add_argument("--rule", default="miffi",
                     help="combining squares: miffi (default), strict, lenient, mean, or Miffi's grammar "
                          "e.g. '0,111,010,222:2,111,010'")
    run.add_argument("--good-threshold", type=float, default=0.7,
                     help="good micrographs below this confidence are low-confidence")
    run.add_argument("--bad-threshold", type=_thresholds, default=_thresholds("0.7"),
                     help="per-group thresholds for bad micrographs: 0.7 or film=0.8,drift=0.9")
    run.add_argument("--minor-crystalline-good", action="store_true",
                     help="count minor_crystalline as good (Miffi counts it as bad)")
    run.add_argument("--formats", default="relion,cryosparc,lists", help="export formats (comma-separated)")
    run.add_argument("--categories", help="export only these categories (comma-separated; default all non-empty)")
    run.add_argument("--split-confidence", action="store_true", help="also export high/low-confidence halves")
    add_input_options(run)
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    down = sub.add_parser("download", parents=[common], help="fetch the published Miffi models (Zenodo)",
                          description="Download published Miffi models, verify their md5 checksums, "
                                      "resume interrupted downloads.")
    down.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME",
                      help="model names, e.g. miffi_v1 miffi_no_ps_v1 (default: %(default)s)")
    down.add_argument("--all", action="store_true", help="every file of the record")
    down.add_argument("--list", action="store_true", help="list the record's files and exit")
    down.add_argument("--dir", type=Path, default=Path("models"), help="target folder (default: %(default)s)")
    down.add_argument("--record-url", default=RECORD_URL, help="Zenodo record API URL (default: %(default)s)")
    down.add_argument("--retries", type=int, default=5, help="retries per file (default: %(default)s)")
    down.add_argument("--no-progress", action="store_true", help="no progress bars")
    down.set_defaults(func=cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="miffi: %(message)s", stream=sys.stderr)
    func: Callable[[argparse.Namespace], int] = args.func
    from miffi.device import retain_freed_memory

    retain_freed_memory()
    try:
        return func(args)
    except MiffiError as exc:
        print(f"miffi: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad settings (e.g. a config value) from the core
        print(f"miffi: error: {exc}", file=sys.stderr)
        return 2
