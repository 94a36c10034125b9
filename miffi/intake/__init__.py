"""Intake: any supported input → one micrograph table.

The table has one row per micrograph with the columns

``micrograph``
    unique id (the file stem; parent folders are prefixed when stems collide),
``path``
    absolute path of the MRC file,
``pixel_size``, ``pixel_size_source``
    Å/px and where it came from: ``user`` > ``metadata`` > ``header`` (``header_default``
    when the header holds 1.0 Å, the value of an unset cell; ``none`` if unknown),
``optics_group``, ``height``, ``width``
    when known (shape from the metadata, else the MRC header),
``input``, ``input_row``, ``input_block``
    the file the row came from and its row there (for exports),

plus every original column of the input (``rln*`` labels, cryoSPARC fields).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from miffi.errors import InputError, MicrographError, MiffiError
from miffi.intake.cryosparc import read_cs, read_csg
from miffi.intake.files import expand_glob, is_glob, read_directory, read_list, single_file
from miffi.intake.relion import read_relion
from miffi.mrc import MOVIE_SUFFIXES, UNSET_PIXEL_SIZE, read_header
from miffi.textfiles import read_tsv

if TYPE_CHECKING:
    from pandas.api.typing import NAType

log = logging.getLogger(__name__)

MRC_SUFFIXES = {".mrc", ".mrcs", ".map"}
TABLE_READERS = {".star": read_relion, ".cs": read_cs, ".csg": read_csg}
#: How many folders above a table file are tried as its project directory.
ROOT_SEARCH_DEPTH = 4
#: Our own micrograph tables (``miffi intake``) end with this and are read back as they are.
TABLE_SUFFIX = ".micrographs.tsv"
TABLE_COLUMNS = [
    "micrograph",
    "path",
    "pixel_size",
    "pixel_size_source",
    "optics_group",
    "height",
    "width",
    "input",
    "input_row",
    "input_block",
]


def _candidate_roots(source: Path) -> list[Path]:
    roots = [Path.cwd(), source.parent.resolve()]
    roots += list(source.parent.resolve().parents)[:ROOT_SEARCH_DEPTH]
    return list(dict.fromkeys(roots))


def resolve_root(raw_paths: Sequence[str], source: Path, project_dir: Path | None) -> Path:
    """The directory relative paths of ``source`` are relative to.

    The user's ``project_dir`` if given; otherwise the first of the current
    directory, the file's own folder and its parents in which the first relative
    paths exist (RELION and cryoSPARC write paths relative to the project root).
    """
    if project_dir is not None:
        return project_dir.resolve()
    relative = [p for p in raw_paths[:20] if not os.path.isabs(p)]
    if not relative:
        return Path.cwd()
    for root in _candidate_roots(source):
        if any((root / p).exists() for p in relative):
            return root
    return Path.cwd()


def unique_ids(paths: Sequence[str]) -> list[str]:
    """File stems, made unique: as many parent folders prefixed (joined by ``__``) as tell
    colliding stems apart, then the file's suffix (``x.mrc`` + ``x.mrcs``), then a counter.

    Ids are compared without case, so their cache files stay distinct on case-insensitive
    file systems too (``y.mrc`` + ``y.MRC`` give ``y_mrc~1`` and ``y_MRC~2``). ``paths``
    must be distinct absolute paths.
    """
    folders = [Path(p).parent.parts[1:] for p in paths]
    stems = [Path(p).stem for p in paths]

    def clashing(ids: list[str]) -> set[int]:
        counts = Counter(i.casefold() for i in ids)
        return {k for k, i in enumerate(ids) if counts[i.casefold()] > 1}

    ids = list(stems)
    for depth in range(1, max((len(f) for f in folders), default=0) + 1):
        clash = clashing(ids)
        if not clash:
            return ids
        ids = ["__".join([*folders[k][-depth:], stems[k]]) if k in clash else i for k, i in enumerate(ids)]
    for k in clashing(ids):
        ids[k] = f"{ids[k]}_{Path(paths[k]).suffix.lstrip('.')}"
    taken = Counter(i.casefold() for i in ids)
    seen: Counter[str] = Counter()
    for k in sorted(clashing(ids)):
        key = ids[k].casefold()
        seen[key] += 1
        candidate = f"{ids[k]}~{seen[key]}"
        while candidate.casefold() in taken:
            seen[key] += 1
            candidate = f"{ids[k]}~{seen[key]}"
        taken[candidate.casefold()] += 1
        ids[k] = candidate
    return ids


def check_inside(paths: Sequence[str], root: Path, source: Path) -> None:
    """Refuse entries of ``source`` that lie outside its project directory ``root``
    (``../../etc/passwd``, or an absolute path elsewhere). Judged on the path as written,
    so symbolic links inside the project (``Movies -> /data/...``) are fine."""
    base = os.path.normpath(root)
    for number, raw in enumerate(paths, start=1):
        full = os.path.normpath(os.path.join(base, raw))
        if os.path.commonpath([base, full]) != base:
            raise InputError(
                source,
                f"row {number}: {raw!r} lies outside the project directory {base}; "
                "give the right --project-dir, or --allow-outside-project if this is meant",
            )


def _read_one(text: str, project_dir: Path | None, pattern: str, allow_outside: bool) -> pd.DataFrame:
    path = Path(text)
    if path.is_dir():
        table = read_directory(path, pattern)
    elif is_glob(text) and not path.exists():
        table = expand_glob(text)
    elif path.suffix.lower() in MRC_SUFFIXES | MOVIE_SUFFIXES:  # a movie fails as a micrograph, with its reason
        table = single_file(path)
    else:
        if not path.is_file():
            raise InputError(path, "file not found")
        reader = TABLE_READERS.get(path.suffix.lower(), read_list)
        table = reader(path)
        root = resolve_root(list(table["raw_path"]), path, project_dir)
        if reader is not read_list and not allow_outside:
            check_inside(list(table["raw_path"]), root, path)
        table["raw_path"] = [str(root / p) for p in table["raw_path"]]
    table["input"] = str(path.absolute()) if path.exists() else text
    table["input_row"] = np.arange(len(table))
    return table


def _add_headers(table: pd.DataFrame) -> None:
    """Fill shape and header pixel size from the MRC headers (unset: 0; unreadable files: left empty)."""
    height: list[int | NAType] = []
    width: list[int | NAType] = []
    header_psize: list[float] = []
    for path in table["path"]:
        try:
            header = read_header(path)
        except MicrographError:
            height.append(pd.NA)
            width.append(pd.NA)
            header_psize.append(np.nan)
            continue
        height.append(header.height)
        width.append(header.width)
        header_psize.append(header.pixel_size if header.pixel_size is not None else 0.0)
    for column, values in (("height", height), ("width", width)):
        from_header = pd.Series(pd.array(values, dtype="Int64"), index=table.index)
        table[column] = table[column].fillna(from_header) if column in table else from_header
    table["header_pixel_size"] = np.asarray(header_psize, dtype=float)


def _binned(table: pd.DataFrame, metadata: pd.Series, header: pd.Series) -> pd.Series:
    """Rows whose metadata pixel size is the movies' (``rlnMicrographOriginalPixelSize``, all
    a particles star may say) while the MRC header states another: motion correction
    binned, and the header is right. Reported with a warning."""
    original = table.get("original_pixel_size", pd.Series(False, index=table.index)).fillna(False).astype(bool)
    stated = header.notna() & (header != UNSET_PIXEL_SIZE)
    binned = original & stated & ((header - metadata).abs() > 0.01 * metadata)
    if binned.any():
        pairs = sorted({(round(m, 4), round(h, 4)) for m, h in zip(metadata[binned], header[binned])})
        log.warning(
            "%d micrograph(s): the star file gives only the movies' pixel size (%s Å, "
            "rlnMicrographOriginalPixelSize) but the MRC headers say %s Å (binned in motion correction?); "
            "using the headers' value (give --pixel-size to override)",
            int(binned.sum()),
            "/".join(f"{m:g}" for m, _ in pairs),
            "/".join(f"{h:g}" for _, h in pairs),
        )
    return binned


def _resolve_pixel_size(table: pd.DataFrame, user_pixel_size: float | None) -> None:
    metadata = table.get("metadata_pixel_size", pd.Series(np.nan, index=table.index)).astype(float)
    header = table.get("header_pixel_size", pd.Series(np.nan, index=table.index)).astype(float)
    metadata = metadata.where(metadata > 0)
    header = header.where(header > 0)
    if user_pixel_size is not None:
        table["pixel_size"] = float(user_pixel_size)
        table["pixel_size_source"] = "user"
        return
    metadata = metadata.where(~_binned(table, metadata, header))
    table["pixel_size"] = metadata.fillna(header)
    from_header = np.where(header == UNSET_PIXEL_SIZE, "header_default", "header")
    table["pixel_size_source"] = np.where(metadata.notna(), "metadata", np.where(header.notna(), from_header, "none"))


#: How many micrographs a pixel-size warning or error names (the rest are counted).
NAMED = 5


def _named(paths: pd.Series) -> str:
    names = ", ".join(Path(p).name for p in paths.iloc[:NAMED])
    return names + (f" and {len(paths) - NAMED} more" if len(paths) > NAMED else "")


def check_pixel_sizes(table: pd.DataFrame) -> None:
    """Say which micrographs lack a trustworthy pixel size: never silently.

    Header 1.0 Å without metadata (often a cell nobody set) is used, with a warning.
    Micrographs whose header was read but holds no pixel size (0) are warned about and
    later recorded as failed, unless none of the readable micrographs has one: then the
    run could do nothing, and this raises.

    Raises
    ------
    InputError
        When no readable micrograph has a pixel size.
    """
    source = table["pixel_size_source"]
    unset = table.loc[source == "header_default", "path"]
    if len(unset):
        log.warning(
            "%d micrograph(s) use pixel size %.1f Å from the MRC header, which is the value of an unset "
            "header (%s); give --pixel-size if that is wrong",
            len(unset),
            UNSET_PIXEL_SIZE,
            _named(unset),
        )
    readable = table.get("header_pixel_size", pd.Series(np.nan, index=table.index)).notna()
    missing = table.loc[(source == "none") & readable, "path"]
    if len(missing) and len(missing) == readable.sum():
        which = f"none of the {len(missing)} micrographs has a" if len(missing) > 1 else "the micrograph has no"
        raise InputError(
            "--pixel-size",
            f"needed: {which} pixel size in its MRC header (which holds 0) or in metadata ({_named(missing)})",
        )
    if len(missing):
        log.warning(
            "%d micrograph(s) have no pixel size in the MRC header (0) or the metadata and will be "
            "recorded as failed (%s); give --pixel-size",
            len(missing),
            _named(missing),
        )


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Save a micrograph table as TSV; :func:`read_micrographs` reads it back as it is."""
    from miffi import atomic

    atomic.write_text(path, table.to_csv(sep="\t", index=False))


def check_table_name(path: str | Path) -> None:
    """A micrograph table of ours is named ``NAME.micrographs.tsv`` (so inputs can tell it apart)."""
    if not str(path).endswith(TABLE_SUFFIX):
        raise MiffiError(f"{path}: the table's name must end with {TABLE_SUFFIX}")


#: Columns of a micrograph table that are names, never numbers or missing values.
TEXT_COLUMNS = ["micrograph", "path", "input", "input_block", "optics_group", "pixel_size_source"]


def read_table(path: Path) -> pd.DataFrame:
    table = read_tsv(path, TEXT_COLUMNS, "micrograph table")
    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise InputError(path, f"not a micrograph table written by `miffi intake` (missing {missing})")
    for column in ("height", "width"):
        table[column] = table[column].astype("Int64")
    return table


def read_micrographs(
    inputs: Sequence[str | Path],
    project_dir: str | Path | None = None,
    pixel_size: float | None = None,
    pattern: str = "*.mrc",
    read_headers: bool = True,
    allow_outside_project: bool = False,
) -> pd.DataFrame:
    """Read star/cs/csg/list files, globs, directories and MRC paths into one table.

    Parameters
    ----------
    inputs
        Any mix of the supported inputs; rows keep the inputs' order.
    project_dir
        Directory that relative paths in star/cs/csg/list files are relative to;
        found automatically when not given (see :func:`resolve_root`).
    pixel_size
        User override (Å/px) applied to every micrograph.
    pattern
        Glob pattern for inputs that are directories.
    read_headers
        Read each MRC header for shape and header pixel size (about 0.2 ms a file from the page cache, 2-core EPYC).
    allow_outside_project
        Accept star/cs/csg entries outside the project directory (refused by default:
        see :func:`check_inside`).
    """
    if not inputs:
        raise InputError("<inputs>", "no input given")
    if len(inputs) == 1 and str(inputs[0]).endswith(TABLE_SUFFIX):
        table = read_table(Path(inputs[0]))
        if pixel_size is not None:
            table["pixel_size"], table["pixel_size_source"] = float(pixel_size), "user"
        return table
    if pixel_size is not None and not pixel_size > 0:
        raise InputError("--pixel-size", f"must be > 0, got {pixel_size}")
    root = Path(project_dir) if project_dir is not None else None
    table = pd.concat([_read_one(str(i), root, pattern, allow_outside_project) for i in inputs], ignore_index=True)
    table["path"] = [os.path.abspath(p) for p in table["raw_path"]]
    duplicated = table["path"].duplicated()
    if duplicated.any():
        log.warning("%d micrograph(s) listed more than once; keeping the first", int(duplicated.sum()))
        table = table[~duplicated].reset_index(drop=True)
    table.insert(0, "micrograph", unique_ids(list(table["path"])))
    if read_headers:
        _add_headers(table)
    _resolve_pixel_size(table, pixel_size)
    check_pixel_sizes(table)
    for column in ("optics_group", "height", "width", "input_block"):
        if column not in table:
            table[column] = pd.NA
    rest = [c for c in table.columns if c not in TABLE_COLUMNS and c != "raw_path"]
    return table[TABLE_COLUMNS + rest]
