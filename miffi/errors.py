"""Exceptions that carry the offending file, so every message names it."""

from __future__ import annotations

from pathlib import Path


class MiffiError(Exception):
    """Base class for errors reported to the user as one line."""


class MicrographError(MiffiError):
    """A micrograph that cannot be read or preprocessed.

    In a many-micrograph run it is recorded as failed and the run goes on.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InputError(MiffiError):
    """An input table (star, cs, csg, list) or option that cannot be used at all."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
