"""The ``miffi`` command line: one module per command, each with ``add_args(parser)`` and
``main(args) -> int``, whose docstring is the command's help (first line) and description
(the rest). It parses arguments and calls the package; no logic lives here."""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from miffi import __version__
from miffi.errors import REPORT_TO, MiffiError, output_error

#: The command modules, in the order ``miffi --help`` lists them (``_`` becomes ``-``).
COMMANDS = (
    "preprocess",
    "simulate",
    "run",
    "intake",
    "infer",
    "combine",
    "export",
    "evaluate",
    "report",
    "label",
    "curate",
    "png",
    "train",
    "learning_curve",
    "download",
)


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"miffi.cli.{name}")


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    module: ModuleType,
    parents: list[argparse.ArgumentParser],
) -> None:
    """A sub-command whose help and description are the first line and the rest of ``module``'s docstring."""
    help, _, description = inspect.cleandoc(module.__doc__ or "").partition("\n")
    parser = sub.add_parser(name, parents=parents, help=help, description=description.strip() or None)
    module.add_args(parser)
    parser.set_defaults(func=module.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miffi", description="Cryo-EM micrograph filtering with Miffi-class models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        add_command(sub, name.replace("_", "-"), command_module(name), [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="miffi: %(message)s", stream=sys.stderr
    )
    func: Callable[[argparse.Namespace], int] = args.func
    from miffi.device import retain_freed_memory

    retain_freed_memory()
    try:
        return func(args)
    except MiffiError as exc:  # bad inputs or settings (SettingError), named in one line
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
    print(
        f"miffi: internal error ({type(exc).__name__}: {exc}); this is a bug in miffi {__version__}: "
        f"please report it, with the traceback above and the command line, to {REPORT_TO}",
        file=sys.stderr,
    )
    return 3
