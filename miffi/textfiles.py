"""Reading the text files users hand us: lists, YAML settings, tables, star files.

Files from Windows or Excel start with a UTF-8 byte-order mark and end lines with CRLF;
both are read as if they did not. Problems are :class:`~miffi.errors.InputError`
naming the file (missing, a folder, not UTF-8 text, not valid YAML, the wrong shape),
never a traceback.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from miffi.errors import InputError

BOM = b"\xef\xbb\xbf"


def read_text(path: str | Path, what: str = "text file") -> str:
    """The file's text, without a byte-order mark and with ``\\n`` line ends."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not a {what}") from None
    except OSError as exc:
        raise InputError(path, f"cannot read {what} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"is not a UTF-8 {what} (undecodable byte at offset {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty mapping)."""
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"the {what} must be a mapping of NAME: VALUE lines, not a {type(data).__name__}")
    return data


def read_tsv(path: str | Path, text_columns: Sequence[str] = (), what: str = "table") -> pd.DataFrame:
    """A tab-separated table of ours; ``text_columns`` (ids, paths) are kept as written
    (only empty fields are missing): a micrograph called ``NA``, ``null`` or ``1e3`` keeps
    its name."""
    path = Path(path)
    try:
        header = pd.read_csv(path, sep="\t", nrows=0).columns
        text = [c for c in text_columns if c in header]
        table = pd.read_csv(
            path,
            sep="\t",
            dtype={c: str for c in text},
            keep_default_na=False,
            na_values={c: _NA_VALUES for c in header if c not in text},
        )
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            path, f"cannot read {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    for column in text:  # an empty field is missing; a word is a name
        table[column] = table[column].mask(table[column] == "")
    return table


#: pandas' default missing-value words, for the columns that are not text.
_NA_VALUES = [
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
]


@contextlib.contextmanager
def clean_copy(path: str | Path) -> Iterator[Path]:
    """``path`` itself, or, when it has a byte-order mark or CRLF line ends, a cleaned
    temporary copy of it (for parsers that take a file name, such as starfile)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from None
    if not raw.startswith(BOM) and b"\r" not in raw:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="miffi-clean-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(raw.removeprefix(BOM).replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        yield copy
