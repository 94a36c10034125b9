"""The ``miffi`` command line. It parses arguments and calls the package; no logic lives here."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from miffi import __version__
from miffi.classify.download import DEFAULT_MODELS, RECORD_URL
from miffi.errors import REPORT_TO, MiffiError, output_error

log = logging.getLogger("miffi")
T = TypeVar("T")


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


def _option_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose ValueError (the core's check) becomes the option's error, so
    a bad value fails while the arguments are parsed, before any work."""

    @functools.wraps(parse)
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


@_option_type
def _rule(text: str) -> str:
    from miffi.classify.combine import group_rules

    group_rules(text)
    return text


@_option_type
def _confidence(text: str) -> float:
    from miffi.classify.combine import check_threshold

    return check_threshold(text)


@_option_type
def _bad_thresholds(text: str) -> dict[str, float]:
    from miffi.classify.combine import parse_thresholds

    return parse_thresholds(text)


@_option_type
def _formats(text: str) -> list[str]:
    from miffi.export import check_formats

    return check_formats(text)


@_option_type
def _categories(text: str) -> list[str]:
    """Names any export can write; whether the confidence halves exist (--split-confidence)
    is checked before anything is read or written (miffi run) or written (miffi export)."""
    from miffi.export import check_categories

    return check_categories(text, split_confidence=True)


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
    parser.add_argument("--allow-outside-project", action="store_true",
                        help="accept star/cs/csg entries that lie outside the project directory "
                             "(refused by default: e.g. '../../etc/passwd')")


def cmd_preprocess(args: argparse.Namespace) -> int:
    from miffi import atomic
    from miffi.device import resolve_device
    from miffi.intake import read_micrographs
    from miffi.preprocess.batch import preprocess_table, summarise
    from miffi.preprocess.cache import TensorCache
    from miffi.preprocess.config import PreprocessConfig

    device = resolve_device(args.device)
    config = PreprocessConfig(power_spectrum=args.channels == 2, max_squares=args.max_squares)
    table = read_micrographs(args.inputs, args.project_dir, args.pixel_size, args.pattern,
                             allow_outside_project=args.allow_outside_project)
    if args.chunk is not None:
        if "chunk" not in table:
            raise MiffiError("--chunk needs a micrograph table written by miffi intake --chunks N")
        table = table[table["chunk"] == args.chunk].reset_index(drop=True)
    cache = TensorCache(args.out, config, full_hash=args.full_hash)
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


def _load_thresholds(path: Path | None):
    """Weight-free classifier thresholds: the defaults, or those in a YAML file."""
    from miffi.classify.weightfree import WeightFreeThresholds

    if path is None:
        return WeightFreeThresholds()
    from miffi.errors import InputError
    from miffi.textfiles import read_yaml_mapping

    try:
        return WeightFreeThresholds.from_mapping(read_yaml_mapping(path, "weight-free thresholds file"))
    except (ValueError, TypeError) as exc:
        raise InputError(path, str(exc)) from None


def _decisions(args: argparse.Namespace):
    """Combination rule, category settings and weight-free thresholds (no torch needed)."""
    from miffi.classify.combine import CategorySettings

    thresholds = _load_thresholds(args.thresholds)
    bad_crystallinity = ("major_crystalline",) if args.minor_crystalline_good else \
        ("minor_crystalline", "major_crystalline")
    return args.rule, CategorySettings(args.good_threshold, args.bad_threshold, bad_crystallinity), thresholds


def _run_options(args: argparse.Namespace):
    """RunOptions from whichever of the shared options a command has."""
    from miffi.pipeline import RunOptions

    def get(name: str, default=None):
        return getattr(args, name, default)

    rule, categories, thresholds = _decisions(args) if hasattr(args, "rule") else \
        ("miffi", None, _load_thresholds(get("thresholds")))
    options = RunOptions(
        model=get("model"), arch=get("arch", "convnext_small"), cache_dir=get("cache"),
        device=get("device", "cpu"), rule=rule, batch_size=get("batch_size", 16),
        bf16=bool(get("bf16")), pixel_size=get("pixel_size"), project_dir=get("project_dir"),
        pattern=get("pattern", "*.mrc"), progress=not get("no_progress", False), thresholds=thresholds,
        allow_outside_project=bool(get("allow_outside_project")), full_hash=bool(get("full_hash")),
    )
    if categories is not None:
        options.categories = categories
    if hasattr(args, "formats"):
        options.formats = args.formats
        options.export_categories = args.categories
        options.split_confidence = args.split_confidence
        options.where = args.where
        options.microscope = _microscope(args)
        options.cryosparc_project_dir = args.cryosparc_project_dir
    return options


def _microscope(args: argparse.Namespace):
    """The optics the user states for inputs that do not (checked before any work)."""
    from miffi.export.microscope import Microscope

    return Microscope(args.voltage, args.cs, args.amplitude_contrast)


def _report(results, where: Path) -> int:
    failed = results[results["status"] == "failed"]
    for row in failed.itertuples():
        log.warning("failed: %s: %s", row.path, row.error)
    counts = results["category"].value_counts()
    log.info("%d micrographs: %s; %d failed; results in %s", len(results),
             ", ".join(f"{k} {v}" for k, v in counts.items()), len(failed), where)
    return 1 if len(failed) == len(results) else 0


def cmd_run(args: argparse.Namespace) -> int:
    from miffi.pipeline import run_pipeline

    results = run_pipeline(args.input, args.outdir, _run_options(args))
    return _report(results, Path(args.outdir) / "results.tsv")


def cmd_intake(args: argparse.Namespace) -> int:
    from miffi import atomic
    from miffi.intake import TABLE_SUFFIX, chunk_of, read_micrographs, write_table

    if not str(args.out).endswith(TABLE_SUFFIX):
        raise MiffiError(f"{args.out}: the table's name must end with {TABLE_SUFFIX}")
    table = read_micrographs(args.inputs, args.project_dir, args.pixel_size, args.pattern,
                             allow_outside_project=args.allow_outside_project)
    table = table.drop(columns="chunk", errors="ignore")  # re-chunking a table of ours
    table.insert(1, "chunk", [chunk_of(m, args.chunks) for m in table["micrograph"]])
    write_table(table, args.out)
    if args.chunk_dir:  # rewritten only when their content changes, so unchanged chunks keep their mtime
        for chunk in range(args.chunks):
            path = args.chunk_dir / f"chunk_{chunk}{TABLE_SUFFIX}"
            text = table[table["chunk"] == chunk].to_csv(sep="\t", index=False)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                atomic.write_text(path, text)
    log.info("%d micrographs in %d chunks: %s", len(table), args.chunks, args.out)
    return 0


def _chunk_table(args: argparse.Namespace):
    from miffi.intake import read_micrographs

    table = read_micrographs([args.table])
    return table if args.chunk is None else table[table["chunk"] == args.chunk].reset_index(drop=True)


def cmd_infer(args: argparse.Namespace) -> int:
    from miffi.pipeline import predict_stage, write_table

    predictions, evaluated = predict_stage(_chunk_table(args), _run_options(args))
    write_table(predictions, args.out)
    total = predictions["micrograph"].nunique()
    log.info("predictions for %d micrographs (%d evaluated, %d reused): %s", total, evaluated,
             total - evaluated, args.out)
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    import pandas as pd

    from miffi.pipeline import combine_stage, write_table
    from miffi.textfiles import read_tsv

    rule, categories, thresholds = _decisions(args)
    frames = [read_tsv(p, ["micrograph"], "predictions table") for p in args.predictions]
    predictions = pd.concat(frames, ignore_index=True)
    results = combine_stage(_chunk_table(args), predictions, args.cache, args.model, rule, categories, thresholds)
    write_table(predictions, args.out.with_name("predictions.tsv"))
    write_table(results, args.out)
    return _report(results, args.out)


def cmd_export(args: argparse.Namespace) -> int:

    from miffi.pipeline import export_stage, read_results

    microscope = _microscope(args)
    results = read_results(args.results)
    export_stage(results, args.outdir, args.formats, args.categories, args.split_confidence, args.where,
                 microscope=microscope, cryosparc_project_dir=args.cryosparc_project_dir)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from miffi.evaluate.label_files import read_labels
    from miffi.evaluate.scores import evaluate
    from miffi.pipeline import read_results
    from miffi.report.html import write_evaluation

    labels = read_labels(args.labels, args.label_column)
    results = [read_results(path) for path in args.results]
    evaluation = evaluate(results, labels, args.dataset or args.results[0].parent.name)
    write_evaluation(evaluation, args.out)
    if evaluation.unmatched_labels or evaluation.unmatched_results:
        log.warning("%d micrographs have no label (e.g. %s); %d labels match no micrograph (e.g. %s)",
                    len(evaluation.unmatched_results), ", ".join(evaluation.unmatched_results[:3]) or "-",
                    len(evaluation.unmatched_labels), ", ".join(evaluation.unmatched_labels[:3]) or "-")
    for name, method_score in evaluation.scores.items():
        c, m = method_score.counts, method_score.counts.metrics()
        log.info("%s: accuracy %.3f (TP %d FP %d TN %d FN %d) precision %.3f recall %.3f",
                 name, m["accuracy"], c.tp, c.fp, c.tn, c.fn, m["precision"], m["recall"])
    log.info("evaluation of %d labelled micrographs in %s", len(evaluation.matched), args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from miffi.report.html import dataset_report, read_evaluation, summary_report

    if args.summary:
        if args.results or args.cache:
            raise MiffiError("--summary takes --evaluation directories only (no --results or --cache)")
        if not args.evaluation:
            raise MiffiError("--summary needs --evaluation DIR for each dataset")
        evaluations = [read_evaluation(directory)[0] for directory in args.evaluation]
        links = dict(link.split("=", 1) for link in args.link)
        summary = summary_report(evaluations, args.out, args.title or "Miffi benchmark", args.figures, links)
        log.info("summary of %d datasets (%d rows) in %s", len(evaluations), len(summary), args.out)
        return 0
    if not args.results:
        raise MiffiError("a dataset report needs --results (or use --summary)")
    from miffi.pipeline import read_results

    results = read_results(args.results)
    evaluation, matched = read_evaluation(args.evaluation[0]) if args.evaluation else (None, None)
    dataset_report(results, args.out, args.title or f"Miffi report: {args.results.parent.name}", evaluation,
                   matched, args.cache, args.figures, args.examples, args.errors)
    log.info("report in %s", args.out)
    return 0


def _training_setup(args: argparse.Namespace):
    """The training config, the device and the stratified train/validation samples."""
    from miffi.classify.models import build_convnext
    from miffi.device import resolve_device
    from miffi.evaluate.label_files import read_labels
    from miffi.intake import read_micrographs
    from miffi.train.data import class_counts, labelled_samples, split, subset
    from miffi.train.layer_decay import describe
    from miffi.train.loop import preset_config

    config = preset_config(args.preset, arch=args.arch, channels=args.channels, size=args.size,
                           pretrained=str(args.pretrained) if args.pretrained else None, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                           weight_decay=args.weight_decay, layer_decay=args.layer_decay,
                           warmup_epochs=args.warmup_epochs, val_fraction=args.val_fraction, seed=args.seed,
                           workers=args.workers, bf16=False if args.no_bf16 else None)
    groups = describe(build_convnext(config.arch, config.channels), config.layer_decay, config.lr)
    if args.show_groups:
        print(groups)
        return None
    log.info("layer-wise learning rates (decay %g):\n%s", config.layer_decay, groups)
    table = read_micrographs(args.inputs, args.project_dir, args.pixel_size, args.pattern,
                             allow_outside_project=args.allow_outside_project)
    samples = labelled_samples(table, read_labels(args.labels))
    train_samples, val_samples = split(samples, config.val_fraction, config.seed)
    if args.train_size:
        train_samples = subset(train_samples, min(args.train_size, len(train_samples)), config.seed)
    log.info("%d training and %d validation micrographs; labels %s", len(train_samples), len(val_samples),
             class_counts(samples))
    return config, resolve_device(args.device), train_samples, val_samples


def cmd_train(args: argparse.Namespace) -> int:
    from miffi.train.loop import best_epoch, train

    setup = _training_setup(args)
    if setup is None:
        return 0
    config, device, train_samples, val_samples = setup
    history = train(train_samples, val_samples, config, args.out, device, args.resume, not args.no_progress)
    best = best_epoch(history)
    log.info("best epoch %d: validation accuracy %.3f; model in %s", best["epoch"], best["val_accuracy"],
             args.out / "best.safetensors")
    return 0


def cmd_learning_curve(args: argparse.Namespace) -> int:
    from miffi.train.curves import learning_curve

    setup = _training_setup(args)
    if setup is None:
        return 0
    config, device, train_samples, val_samples = setup
    curve = learning_curve(train_samples, val_samples, args.sizes, config, args.out, device, not args.no_progress)
    for row in curve.itertuples():
        log.info("%5d training micrographs: validation accuracy %.3f", row.train_size, row.val_accuracy)
    return 0


def _sizes(text: str) -> list[int]:
    return [_positive_int(part) for part in text.split(",")]


def add_train_options(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--labels", required=True, type=Path,
                        help="labels: CSV/TSV with the four groups, Miffi's *_label_dict.pkl, or a .star")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--preset", help="the paper's cases: scratch-1ch, finetune-1ch, finetune-2ch "
                                         "(other options override the preset)")
    parser.add_argument("--arch", help="timm ConvNeXt, e.g. convnext_atto, convnext_small (default convnext_small)")
    parser.add_argument("--channels", type=int, choices=(1, 2), help="2: image + power spectrum (default), 1: image")
    parser.add_argument("--size", type=_positive_int, help="network input side (default 384, as miffi_v1)")
    parser.add_argument("--pretrained", type=Path, help="local ImageNet ConvNeXt weights (timm or Meta file)")
    parser.add_argument("--epochs", type=_positive_int)
    parser.add_argument("--batch-size", type=_positive_int)
    parser.add_argument("--lr", type=_positive_float, help="peak learning rate (the head's)")
    parser.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay (1: none)")
    parser.add_argument("--warmup-epochs", type=float, help="linear warm-up length in epochs")
    parser.add_argument("--val-fraction", type=float, help="stratified validation share (default 0.1)")
    parser.add_argument("--train-size", type=_positive_int, help="train on a stratified subset of this size")
    parser.add_argument("--seed", type=int, help="seed for the split, initialisation and augmentation")
    parser.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=int, help="data-loading processes (default 0: in the main process)")
    parser.add_argument("--no-bf16", action="store_true", help="no bfloat16 autocast on the GPU")
    parser.add_argument("--show-groups", action="store_true", help="print the layer-decay groups and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_download(args: argparse.Namespace) -> int:
    from miffi.classify.download import download_models, fetch_record

    if args.list:
        for remote in fetch_record(args.record_url):
            print(f"{remote.model}\t{remote.key}\t{remote.size or '?'} bytes")
        return 0
    models = None if args.all else args.models
    for path in download_models(args.dir, models, args.record_url, args.retries, progress=not args.no_progress):
        log.info("ready: %s", path)
    return 0


def add_hash_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full-hash", action="store_true",
                        help="tell micrographs apart in the cache by a hash of every byte (default: of the "
                             "header and 16 sampled blocks, with path, size and mtime)")


def add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", type=Path, help="micrograph table from miffi intake")
    parser.add_argument("--chunk", type=int, help="only the micrographs of this chunk")
    parser.add_argument("--cache", required=True, type=Path, help="tensor cache directory")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="TorchScript model (miffi_v1.pt), timm state dict or "
                                                   "miffi .safetensors checkpoint (default: the weight-free "
                                                   "classifier on Fourier-space metrics)")
    parser.add_argument("--arch", default="convnext_small", help="timm architecture for state dicts")
    parser.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=_positive_int, default=16, help="squares per batch")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster; logits within ~0.01)")


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--thresholds", type=Path, help="YAML with weight-free classifier thresholds")
    parser.add_argument("--rule", type=_rule, default="miffi",
                        help="combining squares: miffi (default), strict, lenient, mean, or Miffi's grammar "
                             "e.g. '0,111,010,222:2,111,010'")
    parser.add_argument("--good-threshold", type=_confidence, default=0.7,
                        help="good micrographs below this confidence are low-confidence")
    parser.add_argument("--bad-threshold", type=_bad_thresholds, default="0.7",
                        help="per-group thresholds for bad micrographs: 0.7 or film=0.8,drift=0.9")
    parser.add_argument("--minor-crystalline-good", action="store_true",
                        help="count minor_crystalline as good (Miffi counts it as bad)")


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--formats", type=_formats, default="relion,cryosparc,lists",
                        help="export formats (comma-separated): relion, cryosparc, lists")
    parser.add_argument("--categories", type=_categories,
                        help="export only these categories (comma-separated; default all non-empty)")
    parser.add_argument("--split-confidence", action="store_true", help="also export high/low-confidence halves")
    parser.add_argument("--where", action="append", default=[], metavar="EXPR",
                        help="export only micrographs with COLUMN OP VALUE, e.g. 'water_ring < 1.3' or "
                             "'ctf_baseline == good' (repeatable; all must hold)")
    optics = parser.add_argument_group(
        "microscope", "for inputs that do not state them (lists, folders, some .cs files); written into the "
                      "RELION optics groups and cryoSPARC's ctf/mscope_params (default 300 kV, 2.7 mm, 0.1, "
                      "with a warning)")
    optics.add_argument("--voltage", type=float, metavar="KV", help="acceleration voltage (kV)")
    optics.add_argument("--cs", type=float, metavar="MM", help="spherical aberration (mm)")
    optics.add_argument("--amplitude-contrast", type=float, metavar="FRACTION", help="amplitude contrast (0..1)")
    parser.add_argument("--cryosparc-project-dir", type=Path, metavar="DIR",
                        help="write cryoSPARC exposure paths relative to this project directory (as cryoSPARC "
                             "reads them; default: absolute paths)")


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
    add_hash_option(pre)
    pre.add_argument("--status", type=Path, help="status table to write (default: DIR/preprocess.tsv)")
    pre.add_argument("--chunk", type=int, help="with a miffi intake table: only the micrographs of this chunk")
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
    run.add_argument("--outdir", required=True, type=Path)
    run.add_argument("--cache", type=Path, help="tensor cache directory (default: OUTDIR/cache)")
    add_hash_option(run)
    add_model_options(run)
    add_decision_options(run)
    add_export_options(run)
    add_input_options(run)
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=cmd_run)

    stage = "; a stage of the Snakemake workflow (miffi run does all in one process)"
    intake = sub.add_parser("intake", parents=[common], help="inputs → micrograph table" + stage)
    add_input_arguments(intake)
    intake.add_argument("--out", required=True, type=Path, help="table to write (NAME.micrographs.tsv)")
    intake.add_argument("--chunks", type=_positive_int, default=1,
                        help="split into this many stable chunks (by micrograph id)")
    intake.add_argument("--chunk-dir", type=Path,
                        help="also write each chunk's table to DIR/chunk_N.micrographs.tsv")
    intake.set_defaults(func=cmd_intake)

    infer = sub.add_parser("infer", parents=[common], help="cached tensors → per-square probabilities" + stage)
    add_table_options(infer)
    add_model_options(infer)
    infer.add_argument("--thresholds", type=Path, help="YAML with weight-free classifier thresholds")
    infer.add_argument("--out", required=True, type=Path, help="predictions TSV to write")
    infer.add_argument("--no-progress", action="store_true", help="no progress bars")
    infer.set_defaults(func=cmd_infer)

    comb = sub.add_parser("combine", parents=[common], help="predictions → results.tsv" + stage)
    add_table_options(comb)
    comb.add_argument("--predictions", nargs="+", required=True, type=Path, help="predictions TSVs")
    comb.add_argument("--model", type=Path, help="the model that made the predictions (none: weight-free)")
    add_decision_options(comb)
    comb.add_argument("--out", required=True, type=Path, help="results TSV to write (a .parquet copy beside)")
    comb.set_defaults(func=cmd_combine)

    exp = sub.add_parser("export", parents=[common], help="results → RELION/cryoSPARC/lists" + stage)
    exp.add_argument("results", type=Path, help="results.tsv of miffi run or miffi combine (its .parquet is read)")
    exp.add_argument("--outdir", required=True, type=Path)
    add_export_options(exp)
    exp.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", parents=[common], help="accuracy against human labels (metrics JSON + figures)",
                        description="Compare results with labels: good-vs-bad TP/FP/TN/FN, accuracy, "
                                    "precision, recall, per-group accuracy and confusion matrices for "
                                    "every method in the results (model, weight-free, CTF baseline).")
    ev.add_argument("--results", nargs="+", required=True, type=Path,
                    help="results.tsv of one or more runs over the same micrographs (e.g. two models)")
    ev.add_argument("--labels", required=True, type=Path,
                    help="labels: CSV/TSV (micrograph + film, drift, crystallinity, contamination), Miffi's "
                         "*_label_dict.pkl, or a RELION .star")
    ev.add_argument("--label-column", help="a single good/bad column instead of the four groups")
    ev.add_argument("--dataset", help="dataset name (default: the results' folder name)")
    ev.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="writes evaluation.json, matched.tsv, summary.tsv, figures/")
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("report", parents=[common], help="self-contained HTML report (one dataset, or --summary)",
                         description="Write an offline HTML report with counts, confidence histograms, "
                                     "categories along acquisition order, metric distributions, "
                                     "thumbnails and, with --evaluation, accuracy and the most "
                                     "confident errors. With --summary: one report across datasets.")
    rep.add_argument("--results", type=Path, help="results.tsv of the dataset")
    rep.add_argument("--evaluation", nargs="+", type=Path, default=[], metavar="DIR",
                     help="miffi evaluate output directory (one per dataset with --summary)")
    rep.add_argument("--cache", type=Path, help="tensor cache, for thumbnails (image + power spectrum)")
    rep.add_argument("--summary", action="store_true", help="a report across the datasets of --evaluation")
    rep.add_argument("--link", action="append", default=[], metavar="NAME=HREF",
                     help="with --summary: link to a dataset's report (repeatable)")
    rep.add_argument("--out", required=True, type=Path, help="HTML file to write")
    rep.add_argument("--figures", type=Path, help="folder for PNG/PDF figures (default: <out>_figures)")
    rep.add_argument("--title", help="report title")
    rep.add_argument("--examples", type=_positive_int, default=4, help="thumbnails per category")
    rep.add_argument("--errors", type=_positive_int, default=8, help="most confident errors shown")
    rep.set_defaults(func=cmd_report)

    tr = sub.add_parser("train", parents=[common], help="train or fine-tune a model on labelled micrographs",
                        description="Train a ConvNeXt on labelled micrographs as in the Miffi paper (AdamW, "
                                    "cosine schedule, layer-wise decay, crop/flip augmentation with the "
                                    "power spectrum computed after it); writes per-epoch checkpoints and "
                                    "DIR/best.safetensors for miffi run --model.")
    add_train_options(tr)
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR")
    tr.set_defaults(func=cmd_train)

    lc = sub.add_parser("learning-curve", parents=[common], help="accuracy vs training-set size (paper's Fig. 4)",
                        description="Train on stratified subsets of the training set and plot the best "
                                    "validation accuracy against their size, with the loss curves.")
    add_train_options(lc)
    lc.add_argument("--sizes", type=_sizes, required=True, help="training-set sizes, e.g. 10,20,40,80")
    lc.set_defaults(func=cmd_learning_curve)

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
    except OSError as exc:  # a resource failure outside our atomic writes (e.g. a library writing)
        error = output_error(exc, exc.filename or ".")
        if error is None:
            return report_internal(exc)
        print(f"miffi: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("miffi: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return report_internal(exc)


def report_internal(exc: BaseException) -> int:
    """An unexpected error: its traceback, and where to report it."""
    import traceback

    traceback.print_exception(exc)
    print(f"miffi: internal error ({type(exc).__name__}: {exc}); this is a bug in miffi {__version__}: "
          f"please report it, with the traceback above and the command line, to {REPORT_TO}", file=sys.stderr)
    return 3
