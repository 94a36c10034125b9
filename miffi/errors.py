"""Exceptions that carry the offending file, so every message names it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: Where unexpected internal errors are to be reported (printed with their traceback).
REPORT_TO = "the miffi-pipeline issue tracker (see the README, 'Reliability and security')"


class MiffiError(Exception):
    """Base class for errors reported to the user as one line."""


class FileError(MiffiError):
    """A file (or an option, named like one) that cannot be used: ``path: problem``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MicrographError(FileError):
    """A micrograph that cannot be read or preprocessed.

    In a many-micrograph run it is recorded as failed and the run goes on.
    """


class InputError(FileError):
    """An input table (star, cs, csg, list) or option that cannot be used at all."""


class ModelError(FileError):
    """A model file that cannot be used (or a model that gives unusable outputs)."""


class OutputError(MiffiError):
    """An output folder that cannot take our files (full, read-only, not a folder, ...).

    ``problem`` is a template with one ``{}`` for the folder, e.g. ``"no space left on {}"``.

    A resource problem, never a micrograph's: it stops the run with one line, whichever
    micrograph was being written when it happened.
    """

    def __init__(self, folder: str | Path, problem: str):
        self.folder = str(folder)
        self.problem = problem
        super().__init__(problem.format(self.folder))


#: What each resource errno means for an output folder.
_OUTPUT_PROBLEMS = {
    errno.ENOSPC: "no space left on {}",
    errno.EDQUOT: "disk quota exceeded on {}",
    errno.EROFS: "{} is on a read-only file system",
    errno.EACCES: "no permission to write in {}",
    errno.EPERM: "no permission to write in {}",
    errno.ENOTDIR: "{} is a file, not a folder: cannot write outputs into it",
    errno.EEXIST: "{} is a file, not a folder: cannot write outputs into it",
    errno.EISDIR: "a folder stands where an output file should be written in {}",
    errno.EFBIG: "file too large for the file system at {}",
}


def output_error(exc: OSError, folder: str | Path) -> OutputError | None:
    """The :class:`OutputError` for a failed write into ``folder``, or None when ``exc`` is
    not a resource problem (then it is re-raised as it is)."""
    problem = _OUTPUT_PROBLEMS.get(exc.errno or -1)
    if problem is None:
        return None
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        # Name the file that stands where a folder should be.
        blocker = next(
            (p for p in [Path(folder), *Path(folder).parents] if p.exists() and not p.is_dir()), Path(folder)
        )
        return OutputError(blocker, problem)
    return OutputError(os.path.abspath(folder), problem)


class SettingError(MiffiError, ValueError):
    """A setting the user gave (an option, a config value) that cannot be used.

    Also a ``ValueError``, so argparse ``type=`` functions that call the core's checks
    still turn it into the option's error.
    """
