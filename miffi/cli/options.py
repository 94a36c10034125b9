"""Option types and the option groups several commands share (each defined once here)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from miffi.classify import DEFAULT_THRESHOLD
from miffi.classify.registry import DEFAULT_ARCH

if TYPE_CHECKING:
    import pandas as pd

    from miffi.classify.combine import CategorySettings
    from miffi.classify.weightfree import WeightFreeThresholds
    from miffi.export.microscope import Microscope

T = TypeVar("T")


# --- option types ---------------------------------------------------------------------------


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def sizes(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",")]


def option_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose ValueError (the core's check) becomes the option's error, so
    a bad value fails while the arguments are parsed, before any work."""

    @functools.wraps(parse)
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


@option_type
def rule(text: str) -> str:
    from miffi.classify.combine import group_rules

    group_rules(text)
    return text


@option_type
def confidence(text: str) -> float:
    from miffi.classify.combine import check_threshold

    return check_threshold(text)


@option_type
def bad_thresholds(text: str) -> dict[str, float]:
    from miffi.classify.combine import parse_thresholds

    return parse_thresholds(text)


@option_type
def formats(text: str) -> list[str]:
    from miffi.export import check_formats

    return check_formats(text)


@option_type
def categories(text: str) -> list[str]:
    """Names any export can write; whether the confidence halves exist (--split-confidence)
    is checked before anything is read or written (miffi run) or written (miffi export)."""
    from miffi.export import check_categories

    return check_categories(text, split_confidence=True)


# --- option groups --------------------------------------------------------------------------


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="MRC files, RELION .star, cryoSPARC .cs/.csg, a text list of paths, "
        "a directory, or a quoted glob such as 'Movies/*.mrc'",
    )
    add_input_options(parser)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pixel-size",
        type=positive_float,
        metavar="Å",
        help="pixel size for every micrograph (overrides metadata and headers)",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        help="directory that paths in star/cs/csg/list files are relative to "
        "(default: found automatically: the current directory, the file's "
        "folder or one of its parents)",
    )
    parser.add_argument("--pattern", default="*.mrc", help="file pattern for directory inputs (default: %(default)s)")
    parser.add_argument(
        "--allow-outside-project",
        action="store_true",
        help="accept star/cs/csg entries that lie outside the project directory "
        "(refused by default: e.g. '../../etc/passwd')",
    )


def read_inputs(args: argparse.Namespace) -> pd.DataFrame:
    """The micrograph table of the inputs given by :func:`add_input_arguments`."""
    from miffi.intake import read_micrographs

    return read_micrographs(
        args.inputs, args.project_dir, args.pixel_size, args.pattern, allow_outside_project=args.allow_outside_project
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (GPU if visible), cpu, cuda or cuda:N")


def add_progress_option(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    parser.add_argument("--no-progress", action="store_true", help=help)


def add_pdf_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pdf", action="store_true", help="write each figure as PDF (vector, for publication) beside its PNG"
    )


def add_hash_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full-hash",
        action="store_true",
        help="tell micrographs apart in the cache by a hash of every byte (default: of the "
        "header and 16 sampled blocks, with path, size and mtime)",
    )


def add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", type=Path, help="micrograph table from miffi intake")
    parser.add_argument("--chunk", type=int, help="only the micrographs of this chunk")
    parser.add_argument("--cache", required=True, type=Path, help="tensor cache directory")


def chunk_table(args: argparse.Namespace) -> pd.DataFrame:
    """The rows of ``--chunk`` (all without it) of the table given by :func:`add_table_options`."""
    from miffi.intake import read_micrographs
    from miffi.intake.chunks import select_chunk

    return select_chunk(read_micrographs([args.table]), args.chunk)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        help="a published model by name (miffi_v1, miffi_no_ps_v1, ...: the file in $MIFFI_MODELS, default "
        "models/), a TorchScript model (miffi_v1.pt), timm state dict or miffi .safetensors checkpoint "
        "(default: the weight-free classifier on Fourier-space metrics)",
    )
    parser.add_argument("--arch", default=DEFAULT_ARCH, help="timm architecture for state dicts")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=positive_int, help="squares per batch (default: 4 on a CPU, 16 on a GPU)")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast (logits within ~0.01): faster on GPUs and on CPUs with native bfloat16, "
        "slower on other CPUs (a warning says so)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="the fastest precision on this device: bfloat16 on a GPU or a CPU with native bfloat16 "
        "(avx512_bf16/AMX/Arm BF16), else float32",
    )


def add_thresholds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--thresholds", type=Path, help="YAML with weight-free classifier thresholds")


def weightfree_thresholds(args: argparse.Namespace) -> WeightFreeThresholds:
    """The weight-free classifier's thresholds: those of ``--thresholds``, else the defaults."""
    from miffi.classify.weightfree import WeightFreeThresholds

    return WeightFreeThresholds.from_file(args.thresholds) if args.thresholds else WeightFreeThresholds()


def prediction_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunOptions`` fields (:class:`miffi.pipeline.RunOptions`) of making predictions:
    :func:`add_model_options`, ``--thresholds``, ``--cache`` and ``--no-progress``."""
    return {
        "thresholds": weightfree_thresholds(args),
        "model": args.model,
        "arch": args.arch,
        "cache_dir": args.cache,
        "device": args.device,
        "batch_size": args.batch_size,
        "bf16": args.bf16,
        "fast": args.fast,
        "progress": not args.no_progress,
    }


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    add_thresholds_option(parser)
    parser.add_argument(
        "--rule",
        type=rule,
        default="miffi",
        help="combining squares: miffi (default), strict, lenient, mean, or Miffi's grammar "
        "e.g. '0,111,010,222:2,111,010'",
    )
    parser.add_argument(
        "--good-threshold",
        type=confidence,
        default=DEFAULT_THRESHOLD,
        help="good micrographs below this confidence are low-confidence",
    )
    parser.add_argument(
        "--bad-threshold",
        type=bad_thresholds,
        default=str(DEFAULT_THRESHOLD),
        help="per-group thresholds for bad micrographs: 0.7 or film=0.8,drift=0.9",
    )
    parser.add_argument(
        "--minor-crystalline-good", action="store_true", help="count minor_crystalline as good (Miffi counts it as bad)"
    )


def category_settings(args: argparse.Namespace) -> CategorySettings:
    """The category settings of :func:`add_decision_options`."""
    from miffi.classify.combine import CategorySettings

    return CategorySettings.from_options(args.good_threshold, args.bad_threshold, args.minor_crystalline_good)


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--formats",
        type=formats,
        default="relion,cryosparc,lists",
        help="export formats (comma-separated): relion, cryosparc, lists",
    )
    parser.add_argument(
        "--categories", type=categories, help="export only these categories (comma-separated; default all non-empty)"
    )
    parser.add_argument("--split-confidence", action="store_true", help="also export high/low-confidence halves")
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="EXPR",
        help="export only micrographs with COLUMN OP VALUE, e.g. 'water_ring < 1.3' or "
        "'ctf_baseline == good' (repeatable; all must hold)",
    )
    optics = parser.add_argument_group(
        "microscope",
        "for inputs that do not state them (lists, folders, some .cs files); written into the "
        "RELION optics groups and cryoSPARC's ctf/mscope_params (default 300 kV, 2.7 mm, 0.1, "
        "with a warning)",
    )
    optics.add_argument("--voltage", type=float, metavar="KV", help="acceleration voltage (kV)")
    optics.add_argument("--cs", type=float, metavar="MM", help="spherical aberration (mm)")
    optics.add_argument("--amplitude-contrast", type=float, metavar="FRACTION", help="amplitude contrast (0..1)")
    parser.add_argument(
        "--cryosparc-project-dir",
        type=Path,
        metavar="DIR",
        help="write cryoSPARC exposure paths relative to this project directory (as cryoSPARC "
        "reads them; default: absolute paths)",
    )


def microscope(args: argparse.Namespace) -> Microscope:
    """The optics the user states for inputs that do not (checked before any work)."""
    from miffi.export.microscope import Microscope

    return Microscope(args.voltage, args.cs, args.amplitude_contrast)


def add_overrides_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overrides",
        type=Path,
        metavar="TSV",
        help="the user's category overrides (miffi curate writes them): recorded in results.tsv as "
        "category_override and override_source, and followed by every export",
    )


def overrides(args: argparse.Namespace) -> pd.DataFrame | None:
    """The checked overrides of ``--overrides`` (None without it)."""
    from miffi.export.overrides import read_overrides

    return read_overrides(args.overrides) if args.overrides else None


def add_review_options(parser: argparse.ArgumentParser, default_order: str) -> None:
    from miffi.review import ORDERS

    parser.add_argument(
        "--order",
        choices=ORDERS,
        default=default_order,
        help="which micrograph comes next: acquisition order, by category, or the most uncertain first "
        "(default: %(default)s where the run's calls are known, else acquisition)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every network, "
        "still behind the URL's token)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default: %(default)s; 0: any free one)")
