"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted run therefore never leaves a half-written file under a final name.
A write that fails for want of space, permission or a writable folder raises
:class:`~miffi.errors.OutputError` naming the folder, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from miffi.errors import output_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Permissions of files we write: what ``open()`` would give (mkstemp alone gives 0600).
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def resource_errors(folder: str | Path) -> Iterator[None]:
    """Turn resource failures (disk full, read-only, permission, a file in the way) of
    writing into ``folder`` into :class:`~miffi.errors.OutputError`."""
    try:
        yield
    except OSError as exc:
        error = output_error(exc, folder)
        if error is None:
            raise
        raise error from None


def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and check that a file can be written in it."""
    folder = Path(folder)
    with resource_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    return folder


def _temporary(path: Path, prefix: str, suffix: str) -> tuple[int, str]:
    with resource_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.fchmod(fd, FILE_MODE)
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it over ``path`` on success."""
    path = Path(path)
    fd, tmp = _temporary(path, f".{path.name}.", ".tmp")
    try:
        with resource_errors(path.parent):
            with os.fdopen(fd, mode, **kwargs) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def save_npy(path: str | Path, array: np.ndarray) -> os.stat_result:
    """Save ``array``; returns the written file's status (its inode and mtime survive the rename)."""
    array = np.ascontiguousarray(array)
    with atomic_open(path, "wb") as handle:
        # The .npy format, written through Python's file object: np.save's own short-write
        # error carries no errno, so a full disk would not read as one.
        np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(array))
        handle.write(array.data.cast("B"))  # (the array's own memoryview)
        handle.flush()
        written = os.fstat(handle.fileno())
    return written


@contextlib.contextmanager
def temporary_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for libraries that write files by name.

    Renamed over ``path`` when the block succeeds, removed when it fails.
    """
    path = Path(path)
    fd, tmp = _temporary(path, f".{path.stem}.", f".tmp{path.suffix}")
    os.close(fd)
    try:
        with resource_errors(path.parent):
            yield Path(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
