"""Decision files: one row per micrograph, rewritten atomically on every change.

A label or an override is on disk before the browser is told it was saved, so a killed
server loses nothing, and a restart reads back every decision made. The files are plain
delimited text that the other commands read: the labels CSV is what ``miffi evaluate`` and
``miffi train`` take (``--labels``), the overrides TSV what ``miffi export``/``run``/
``combine`` apply (``--overrides``).
"""

from __future__ import annotations

import csv
import fcntl
import io
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from miffi import atomic
from miffi.errors import InputError
from miffi.export.overrides import OVERRIDE_COLUMNS
from miffi.labels import GROUPS
from miffi.textfiles import read_text

#: Columns of a labels file written by ``miffi label`` (``labelled_at``: ISO time, UTC).
LABEL_COLUMNS = ("micrograph", *GROUPS, "labelled_at")


class DecisionFile:
    """Rows keyed by ``micrograph`` in a CSV or TSV file, kept in memory and on disk.

    Parameters
    ----------
    path
        The file; read when it exists (it must have exactly ``columns``, in any order),
        created at the first change.
    columns
        Its columns; the first is the key, ``micrograph``.
    delimiter
        ``","`` (CSV) or ``"\\t"`` (TSV).
    """

    def __init__(self, path: str | Path, columns: Sequence[str], delimiter: str = ","):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.delimiter = delimiter
        self._lock = threading.Lock()
        self.rows: dict[str, dict[str, str]] = self._read() if self.path.exists() else {}
        # each row's line as written, so a change formats only its own rows
        self._lines = {key: self._line(row) for key, row in self.rows.items()}

    def claim(self) -> None:
        """Hold the file for this process until it exits (a lock beside it, released by
        the system even after kill -9): a second server on the same file would overwrite
        this one's decisions with its own."""
        lock = self.path.with_name(f".{self.path.name}.lock")
        atomic.ensure_folder(lock.parent)
        handle = open(lock, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(self.path, "is in use by another miffi label or curate: stop that one first") from None
        self._claimed = handle

    def _read(self) -> dict[str, dict[str, str]]:
        reader = csv.DictReader(io.StringIO(read_text(self.path, "decision file")), delimiter=self.delimiter)
        found = tuple(reader.fieldnames or ())
        if set(found) != set(self.columns):
            raise InputError(
                self.path,
                f"is not a file this command writes: its columns are {', '.join(found) or 'none'}, "
                f"expected {', '.join(self.columns)} (give a new file name to start one)",
            )
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            key = row["micrograph"]
            if not key:
                raise InputError(self.path, f"line {reader.line_num}: no micrograph name")
            rows[key] = {c: row[c] or "" for c in self.columns}
        return rows

    def _line(self, row: Mapping[str, str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n").writerow([row[c] for c in self.columns])
        return buffer.getvalue()

    def get(self, micrograph: str) -> dict[str, str] | None:
        return self.rows.get(micrograph)

    def update(self, changes: Mapping[str, Mapping[str, str] | None]) -> None:
        """Set (a mapping of column → value) or remove (``None``) the rows of several
        micrographs, written at once: the file holds all of them or none."""
        with self._lock:
            rows, lines = dict(self.rows), dict(self._lines)
            for micrograph, values in changes.items():
                if values is None:
                    rows.pop(micrograph, None)
                    lines.pop(micrograph, None)
                else:
                    rows[micrograph] = {"micrograph": micrograph, **{c: str(values[c]) for c in self.columns[1:]}}
                    lines[micrograph] = self._line(rows[micrograph])
            header = self._line({c: c for c in self.columns})
            atomic.write_text(self.path, header + "".join(lines.values()))
            self.rows, self._lines = rows, lines  # only once on disk: memory never claims more

    def keys(self) -> Iterable[str]:
        return self.rows.keys()

    def __len__(self) -> int:
        return len(self.rows)


def label_file(path: str | Path) -> DecisionFile:
    """The labels CSV of ``miffi label``."""
    return DecisionFile(path, LABEL_COLUMNS, ",")


def override_file(path: str | Path) -> DecisionFile:
    """The overrides TSV of ``miffi curate``."""
    return DecisionFile(path, OVERRIDE_COLUMNS, "\t")
