"""Preprocess a micrograph table into a tensor cache, one bad micrograph never stopping the rest.

Reading runs in background threads a few micrographs ahead, so disk I/O overlaps
the transforms (which use every core through scipy / torch).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from miffi import atomic
from miffi.device import available_cores
from miffi.errors import MicrographError, OutputError
from miffi.preprocess.cache import TensorCache, cached_row, status_frame
from miffi.preprocess.recipe import LoadedMicrograph, load_squares, preprocess_loaded

log = logging.getLogger(__name__)


def _given_pixel_size(value: float | None) -> float | None:  # (NaN: none given)
    return None if value is None or pd.isna(value) else float(value)


def _describe(exc: Exception) -> str:
    if isinstance(exc, MicrographError):
        return exc.problem
    return f"{type(exc).__name__}: {exc}"


def preprocess_table(
    table: pd.DataFrame,
    cache: TensorCache,
    device: torch.device,
    force: bool = False,
    progress: bool = True,
    readers: int | None = None,
) -> pd.DataFrame:
    """Make (or reuse) the cached tensor of every micrograph in ``table``.

    ``readers`` threads read micrographs ahead of the transforms (default: one per
    four cores, at least one, at most four). Returns one row per micrograph:
    ``status`` is ``cached`` (reused), ``computed`` or ``failed`` (with ``error``);
    failures are also recorded in the cache.
    """
    readers = readers or max(1, min(4, available_cores() // 4))
    atomic.ensure_folder(cache.directory)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, str, float | None]] = []
    for micrograph, path, psize in zip(table["micrograph"], table["path"], table["pixel_size"]):
        given = _given_pixel_size(psize)
        meta = None if force else cache.lookup(micrograph, path, given)
        if meta is None:
            todo.append((micrograph, path, given))
        else:
            rows[micrograph] = cached_row(meta)

    with (
        tqdm(total=len(table), desc="preprocess", unit="mic", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=readers, thread_name_prefix="miffi-read") as reader,
    ):
        bar.update(len(rows))
        pending: deque[tuple[str, str, float | None, Future[LoadedMicrograph]]] = deque()
        queue = iter(todo)

        def submit_next() -> None:
            item = next(queue, None)
            if item is not None:
                micrograph, path, given = item
                pending.append((micrograph, path, given, reader.submit(load_squares, path, given, cache.config)))

        for _ in range(readers + 1):
            submit_next()
        while pending:
            started = time.perf_counter()
            micrograph, path, given, future = pending.popleft()
            submit_next()
            try:
                loaded = future.result()
                result = preprocess_loaded(loaded, cache.config, device)
                cache.store(micrograph, path, given, result.tensor, loaded.layout, result.square_metrics)
                rows[micrograph] = {
                    "status": "computed",
                    "squares": loaded.layout.count,
                    "pixel_size": loaded.layout.pixel_size,
                    **result.metrics,
                }
            except OutputError:  # the cache's folder, not the micrograph: stop the run
                raise
            except Exception as exc:  # one bad micrograph is recorded, the rest goes on
                if not isinstance(exc, MicrographError):
                    log.exception("unexpected error preprocessing %s", path)
                error = _describe(exc)
                cache.store_failure(micrograph, path, given, error)
                rows[micrograph] = {"status": "failed", "error": error}
            rows[micrograph]["seconds"] = time.perf_counter() - started
            bar.update(1)

    return status_frame([{"micrograph": m, "path": p, **rows[m]} for m, p in zip(table["micrograph"], table["path"])])


def summarise(status: pd.DataFrame) -> str:
    """One line: how many micrographs were computed, reused and failed, and the median time."""
    counts = status["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("computed", "cached", "failed")]
    computed = status.loc[status["status"] == "computed", "seconds"]
    timing = f"; {computed.median():.3f} s median per computed micrograph" if len(computed) else ""
    return f"{len(status)} micrographs: " + ", ".join(parts) + timing
