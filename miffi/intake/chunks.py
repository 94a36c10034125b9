"""Chunks: the micrograph table split into parts that the workflow preprocesses and
classifies in jobs of their own.

A micrograph keeps its chunk for good, so that a re-run after new micrographs arrive
re-runs only the chunks that changed. The first split is by micrograph id (CRC-32 modulo
the count: balanced, and the same on every machine). After that, the chunk tables an
earlier intake wrote (``DIR/chunk_N.micrographs.tsv``) are the assignment: the micrographs
in them stay where they are, and new ones fill the chunk that has the fewest, up to
``FILL`` times the mean chunk size, then the next fewest, so that a batch of new
micrographs re-runs one chunk (one preprocessing job, one inference job) rather than
every chunk its ids hash to. A batch larger than the room below that cap fills several
chunks, and the chunks stay as they were filled: another number of chunks, or an empty
chunk folder, splits afresh by id.

The weight-free classifier's dataset-relative decisions (``weightfree.shifted_thresholds``)
are made per chunk in the workflow: with the fill, micrographs that arrived together are
judged against their chunk, the earlier micrographs in it and the batch they came with.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from miffi.errors import MiffiError
from miffi.intake import TABLE_SUFFIX

log = logging.getLogger("miffi")

#: The chunk tables' names in their folder.
CHUNK_NAME = re.compile(rf"chunk_(0|[1-9]\d*){re.escape(TABLE_SUFFIX)}")
#: New micrographs fill a chunk up to this many times the mean chunk size (rounded up).
FILL = 1.5


def chunk_path(folder: str | Path, chunk: int) -> Path:
    return Path(folder) / f"chunk_{chunk}{TABLE_SUFFIX}"


def chunk_of(micrograph: str, chunks: int) -> int:
    """The first-split chunk of a micrograph id."""
    return zlib.crc32(micrograph.encode("utf-8")) % chunks


def _tables(folder: str | Path) -> dict[int, Path]:
    """The chunk tables in ``folder`` by chunk number."""
    names = ((CHUNK_NAME.fullmatch(path.name), path) for path in Path(folder).glob(f"chunk_*{TABLE_SUFFIX}"))
    return {int(match.group(1)): path for match, path in names if match}


def previous_chunks(folder: str | Path, chunks: int) -> dict[str, int]:
    """Each micrograph's chunk in the chunk tables already in ``folder``: empty when there
    are none, or when they were written for another number of chunks (a table missing,
    or one beyond ``chunks``)."""
    found = _tables(folder)
    if found and sorted(found) != list(range(chunks)):
        log.info("the chunk tables in %s were written for another number of chunks: split afresh", folder)
        return {}
    assignment: dict[str, int] = {}
    for chunk, path in sorted(found.items()):
        try:
            ids = pd.read_csv(path, sep="\t", usecols=["micrograph"], dtype=str, keep_default_na=False)["micrograph"]
        except (OSError, ValueError) as exc:  # not one of ours after all: start afresh
            log.warning("%s: not a chunk table (%s): split afresh", path, exc)
            return {}
        for micrograph in ids:
            assignment.setdefault(micrograph, chunk)
    return assignment


def assign_chunks(table: pd.DataFrame, chunks: int, previous: Mapping[str, int] | None = None) -> pd.DataFrame:
    """``table`` with a ``chunk`` column (second): a micrograph's chunk in ``previous``
    when it has one there; the others by the fill of the module docstring, or, where
    ``previous`` has none of the micrographs, all by their first-split chunk
    (:func:`chunk_of`). A table of ours that had a ``chunk`` column is re-chunked."""
    table = table.drop(columns="chunk", errors="ignore")
    micrographs = table["micrograph"].tolist()
    if not previous or not any(m in previous for m in micrographs):  # nothing to keep: a first split
        table.insert(1, "chunk", [chunk_of(m, chunks) for m in micrographs])
        return table
    assigned = [previous.get(m, -1) for m in micrographs]
    assigned = [chunk if 0 <= chunk < chunks else -1 for chunk in assigned]  # another count's: new
    counted = Counter(assigned)
    sizes = [counted[chunk] for chunk in range(chunks)]
    cap = math.ceil(FILL * len(micrographs) / chunks)
    fewest_first = sorted(range(chunks), key=lambda chunk: (sizes[chunk], chunk))
    filling = 0
    for i, chunk in enumerate(assigned):
        if chunk >= 0:
            continue
        while filling < chunks - 1 and sizes[fewest_first[filling]] >= cap:
            filling += 1
        assigned[i] = fewest_first[filling]
        sizes[assigned[i]] += 1
    table.insert(1, "chunk", assigned)
    return table


def write_chunks(table: pd.DataFrame, chunks: int, folder: str | Path) -> None:
    """Write each chunk's rows of ``table`` to ``folder/chunk_N.micrographs.tsv``, rewriting
    only the files whose content changes (unchanged chunks keep their mtime, so the
    workflow's later stages of those chunks do not run again), and removing the tables of
    chunks beyond ``chunks`` (left by a split into more)."""
    from miffi import atomic

    for chunk in range(chunks):
        path = chunk_path(folder, chunk)
        text = table[table["chunk"] == chunk].to_csv(sep="\t", index=False)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic.write_text(path, text)
    for chunk, path in _tables(folder).items():
        if chunk >= chunks:
            path.unlink(missing_ok=True)


def select_chunk(table: pd.DataFrame, chunk: int | None) -> pd.DataFrame:
    """The rows of one chunk of a table written by ``miffi intake --chunks N`` (None: all rows)."""
    if chunk is None:
        return table
    if "chunk" not in table:
        raise MiffiError("--chunk needs a micrograph table written by miffi intake --chunks N")
    return table[table["chunk"] == chunk].reset_index(drop=True)
