"""Reading human labels (CSV, Miffi's label pickles, star files) and matching them to results.

Every reader returns a *label table*: one row per labelled micrograph with ``micrograph``
(the name as written in the file), ``key`` (see :func:`name_key`), the four group columns
``film``, ``drift``, ``crystallinity``, ``contamination`` (missing when the file only says
good or bad) and ``good`` (the paper's definition: every group good).

Miffi's ``*_label_dict.pkl`` files are pickles. Unpickling can run arbitrary code, so they
are read with an unpickler that resolves no global at all: only the opcodes that build
dicts, lists and strings work, and anything else is refused before it is created.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import pandas as pd

from miffi.errors import MiffiError
from miffi.labels import GROUPS, is_good
from miffi.textfiles import read_text

#: Column names accepted for each group (case-insensitive; ``rln``/``miffi`` prefixes allowed).
GROUP_ALIASES: dict[str, tuple[str, ...]] = {
    "film": ("film",),
    "drift": ("drift", "crack_drift_empty", "crack_drift", "crackdriftempty"),
    "crystallinity": ("crystallinity", "crystalline"),
    "contamination": ("contamination",),
}
NAME_ALIASES = ("micrograph", "micrographname", "micrograph_name", "file", "filename", "name", "path")
FILE_SUFFIXES = re.compile(r"(\.(mrc|mrcs|map|tif|tiff|eer|npy|png|jpg|jpeg|bz2|gz|st))+$", re.IGNORECASE)
GOOD_WORDS = {"good", "1", "true", "yes", "keep", "accepted"}
BAD_WORDS = {"bad", "0", "false", "no", "reject", "rejected"}


def name_key(name: str) -> str:
    """The part of a micrograph name used for matching: base name without image suffixes.

    ``./Movies/a_001.mrc``, ``/data/Movies/a_001.mrc``, ``a_001.tiff`` and ``a_001`` all
    give ``a_001``.
    """
    base = PurePosixPath(str(name).strip().replace("\\", "/")).name
    return FILE_SUFFIXES.sub("", base)


def _normalised(column: str) -> str:
    text = re.sub(r"^_?(rln)?(miffi)?", "", column.strip(), flags=re.IGNORECASE)
    return text.lower().lstrip("_")


def _find_column(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    for column in columns:
        if _normalised(column) in aliases:
            return column
    return None


def _good_flag(value: object, source: str, row: str) -> bool:
    text = str(value).strip().lower()
    if text in GOOD_WORDS:
        return True
    if text in BAD_WORDS or text.startswith("bad"):
        return False
    raise MiffiError(
        f"{source}: micrograph {row!r}: label {value!r} is neither good nor bad "
        f"(use one of {', '.join(sorted(GOOD_WORDS))} / {', '.join(sorted(BAD_WORDS))}, "
        "or a Miffi category such as bad_film)"
    )


def _validate_group(values: pd.Series, group: str, names: pd.Series, source: str) -> None:
    allowed = GROUPS[group]
    wrong = ~values.isin(allowed)
    if wrong.any():
        first = int(wrong.to_numpy().argmax())  # (both have a RangeIndex: the position is the label)
        raise MiffiError(
            f"{source}: micrograph {names.iloc[first]!r}: {group} label {values.iloc[first]!r} is not a "
            f"{group} label; allowed: {', '.join(allowed)} ({int(wrong.sum())} such rows)"
        )


def label_table(frame: pd.DataFrame, source: str, good_column: str | None = None) -> pd.DataFrame:
    """A label table from a frame with a name column and label columns.

    With ``good_column``, that column holds good/bad per micrograph (``good``/``bad``,
    1/0, true/false, or Miffi categories); otherwise the four group columns must exist.
    """
    columns = [str(c) for c in frame.columns]
    name_column = _find_column(columns, NAME_ALIASES)
    if name_column is None:
        raise MiffiError(
            f"{source}: no micrograph name column (looked for {', '.join(NAME_ALIASES)}, "
            f"rlnMicrographName); columns: {', '.join(columns)}"
        )
    names = frame[name_column].astype(str).reset_index(drop=True)
    out = pd.DataFrame({"micrograph": names, "key": names.map(name_key)})
    if good_column is not None:
        if good_column not in frame:
            raise MiffiError(f"{source}: no column {good_column!r}; columns: {', '.join(columns)}")
        values = frame[good_column].reset_index(drop=True)
        out["good"] = [_good_flag(v, source, n) for v, n in zip(values, names)]
    else:
        found = {group: _find_column(columns, aliases) for group, aliases in GROUP_ALIASES.items()}
        missing = [group for group, column in found.items() if column is None]
        if missing:
            raise MiffiError(
                f"{source}: no column for {', '.join(missing)} (columns: {', '.join(columns)}); "
                "give the four groups, or name a good/bad column with --label-column"
            )
        for group, column in found.items():
            values = frame[column].astype(str).str.strip().reset_index(drop=True)
            _validate_group(values, group, names, source)
            out[group] = values
        out["good"] = [is_good({str(k): v for k, v in row.items()}) for row in out[list(GROUPS)].to_dict("records")]
    return _check_duplicates(out, source)


def _check_duplicates(table: pd.DataFrame, source: str) -> pd.DataFrame:
    duplicated = table["key"].duplicated(keep=False)
    if duplicated.any():
        label_columns = [c for c in table.columns if c not in ("micrograph", "key")]
        conflicting = table[duplicated].groupby("key")[label_columns].nunique().gt(1).any(axis=1)
        if conflicting.any():
            keys = conflicting[conflicting].index[:5].tolist()
            raise MiffiError(f"{source}: micrographs labelled twice with different labels: {', '.join(keys)}")
        table = table.drop_duplicates("key").reset_index(drop=True)
    return table


class _NoGlobals(pickle.Unpickler):
    """Builds only what pickle's own opcodes build (dicts, lists, strings, numbers...)."""

    def find_class(self, module: str, name: str) -> NoReturn:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only dict, list and str are allowed")

    def persistent_load(self, pid: Any) -> NoReturn:
        raise pickle.UnpicklingError("refusing a persistent reference: only dict, list and str are allowed")


def read_miffi_pickle(path: str | Path) -> pd.DataFrame:
    """A Miffi label file: ``{file name: [film, drift, crystallinity, contamination]}``."""
    path = Path(path)
    try:
        data = _NoGlobals(io.BytesIO(path.read_bytes())).load()
    except OSError as error:
        raise MiffiError(f"{path}: cannot read: {error.strerror or error}") from None
    except Exception as error:  # a malformed or hostile pickle: never partially trusted
        raise MiffiError(f"{path}: not a Miffi label pickle: {error}") from None
    if not isinstance(data, dict):
        raise MiffiError(f"{path}: expected a dict of micrograph → labels, found {type(data).__name__}")
    rows = []
    for name, labels in data.items():
        if (
            not isinstance(name, str)
            or not isinstance(labels, list)
            or len(labels) != len(GROUPS)
            or not all(isinstance(label, str) for label in labels)
        ):
            raise MiffiError(
                f"{path}: entry {name!r}: expected a file name and a list of four label "
                f"strings ({', '.join(GROUPS)}), found {labels!r}"
            )
        rows.append([name, *labels])
    return label_table(pd.DataFrame(rows, columns=["micrograph", *GROUPS]), str(path))


def _star_block(path: Path) -> pd.DataFrame:
    from miffi.intake.relion import read_star

    blocks = read_star(path)
    tables = [b for b in blocks.values() if isinstance(b, pd.DataFrame)]
    with_names = [b for b in tables if "rlnMicrographName" in b]
    if not (with_names or tables):
        raise MiffiError(f"{path}: no table in the star file")
    return (with_names or tables)[0]


def read_labels(path: str | Path, column: str | None = None) -> pd.DataFrame:
    """The label table of a CSV/TSV, Miffi ``.pkl`` or RELION ``.star`` file.

    ``column`` names a single good/bad column instead of the four group columns.
    """
    path = Path(path)
    if not path.is_file():
        raise MiffiError(f"{path}: label file not found")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        if column:
            raise MiffiError(f"{path}: --label-column does not apply to Miffi label pickles")
        return read_miffi_pickle(path)
    if suffix == ".star":
        return label_table(_star_block(path), str(path), column)
    if suffix in (".csv", ".tsv", ".txt"):
        text = read_text(path, "label table")
        try:  # names such as NA or null stay names
            frame = pd.read_csv(io.StringIO(text), sep=None, engine="python", dtype=str, keep_default_na=False)
        except Exception as error:
            raise MiffiError(f"{path}: cannot read label table: {error}") from None
        return label_table(frame, str(path), column)
    raise MiffiError(f"{path}: unknown label file type {suffix!r} (expected .csv, .tsv, .pkl or .star)")


def match_labels(results: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Results rows joined with their labels (truth columns prefixed ``true_``).

    A result matches a label by the key of its input path, or else of its micrograph id.
    Returns the joined rows (results order), the results without a label and the labels
    without a result.
    """
    by_key = labels.set_index("key")
    keys = []
    for path, micrograph in zip(results.get("path", results["micrograph"]), results["micrograph"]):
        key = name_key(path)
        keys.append(key if key in by_key.index else name_key(micrograph))
    keyed = results.assign(key=keys)
    found = keyed["key"].isin(by_key.index)
    truth = by_key.drop(columns="micrograph").add_prefix("true_")
    joined = keyed[found].join(truth, on="key").drop(columns="key").reset_index(drop=True)
    unmatched_labels = labels.loc[~labels["key"].isin(set(keyed["key"])), "micrograph"].tolist()
    return joined, keyed.loc[~found, "micrograph"].tolist(), unmatched_labels
