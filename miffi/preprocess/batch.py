"""Preprocess a micrograph table into a tensor cache, one bad micrograph never stopping the rest.

Three stages overlap, each with a bounded queue: background threads read micrographs
ahead; the transforms run on the device, several micrographs of one square size at a
time on a GPU; background threads compute each micrograph's metrics and write its cache
entry meanwhile. Memory is bounded by the queue depths, not by the table's size.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from miffi import atomic
from miffi.device import available_cores
from miffi.errors import MicrographError, OutputError
from miffi.mrc import read_ahead
from miffi.preprocess.cache import TensorCache, cached_row, status_frame
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import LoadedMicrograph, Transformed, batch_key, load_squares, transform_batch

log = logging.getLogger(__name__)


def _given_pixel_size(value: float | None) -> float | None:  # (NaN: none given)
    return None if value is None or pd.isna(value) else float(value)


def _describe(exc: Exception) -> str:
    if isinstance(exc, MicrographError):
        return exc.problem
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Stages:
    """How wide each stage of :func:`preprocess_table` is.

    Attributes
    ----------
    readers
        Threads reading micrographs ahead.
    batch
        Micrographs transformed at once (those of one square size).
    finishers
        Threads computing metrics and writing cache entries.
    """

    readers: int
    batch: int
    finishers: int

    def __post_init__(self) -> None:
        if min(self.readers, self.batch, self.finishers) < 1:
            raise ValueError(f"every stage needs a width of at least 1: {self}")

    @classmethod
    def for_device(cls, device: torch.device, cores: int | None = None) -> Stages:
        """The CPU's FFTs already use every core, so one micrograph at a time there, its
        metrics (one core each, about half the transforms' time on two cores) beside the
        next ones' transforms; a GPU transforms eight at once and needs the cores for
        reading and metrics (at most eight threads each: for a GPU every micrograph read
        ahead holds its squares in pinned memory, 134 MB for a K3 one, which PyTorch's
        pinned allocator can round up to 256 MB)."""
        cores = cores or available_cores()
        if device.type == "cpu":
            side = max(1, min(4, cores // 4))
            return cls(readers=side, batch=1, finishers=side)
        side = max(2, min(8, cores // 2))
        return cls(readers=side, batch=8, finishers=side)


@dataclass(frozen=True)
class _Item:
    micrograph: str
    path: str
    pixel_size: float | None


def _read(item: _Item, config: PreprocessConfig, device: torch.device) -> tuple[LoadedMicrograph, float]:
    """The micrograph opened and read (for a GPU: its squares into pinned memory; for the
    CPU: the file into memory, where the transforms read its map), and the seconds that
    took."""
    started = time.perf_counter()
    loaded = load_squares(item.path, item.pixel_size, config, pin=device.type == "cuda")
    if device.type == "cpu":
        read_ahead(item.path, loaded.data)
    return loaded, time.perf_counter() - started


def _transform(
    members: list[LoadedMicrograph], config: PreprocessConfig, device: torch.device
) -> tuple[list[Transformed | Exception], Exception | None]:
    """:func:`transform_batch`, never raising: where a batch fails as a whole (out of
    device memory, say), each of its micrographs is tried on its own, so one bad
    micrograph never fails the others. Also returns the whole batch's error, if any."""
    try:
        return list(transform_batch(members, config, device)), None
    except Exception as exc:
        if len(members) == 1:
            return [exc], None
        return [_transform([loaded], config, device)[0][0] for loaded in members], exc


def preprocess_table(
    table: pd.DataFrame,
    cache: TensorCache,
    device: torch.device,
    force: bool = False,
    progress: bool = True,
    stages: Stages | None = None,
) -> pd.DataFrame:
    """Make (or reuse) the cached tensor of every micrograph in ``table``.

    ``stages`` sets the width of each stage (default: :meth:`Stages.for_device`). Returns
    one row per micrograph: ``status`` is ``cached`` (reused), ``computed`` or ``failed``
    (with ``error``); failures are also recorded in the cache. ``seconds`` is the time
    spent on the micrograph (its read, its share of its batch's transforms, its metrics
    and cache write), not the wall time from its read to its write, since the stages of
    different micrographs overlap.
    """
    stages = stages or Stages.for_device(device)
    atomic.ensure_folder(cache.directory)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[_Item] = []
    for micrograph, path, psize in zip(table["micrograph"], table["path"], table["pixel_size"]):
        item = _Item(micrograph, path, _given_pixel_size(psize))
        meta = None if force else cache.lookup(item.micrograph, item.path, item.pixel_size)
        if meta is None:
            todo.append(item)
        else:
            rows[micrograph] = cached_row(meta)

    def fail(item: _Item, exc: Exception, seconds: float) -> None:
        if isinstance(exc, OutputError):  # the cache's folder, not the micrograph: stop the run
            raise exc
        if not isinstance(exc, MicrographError):
            log.error("unexpected error preprocessing %s", item.path, exc_info=exc)
        error = _describe(exc)
        cache.store_failure(item.micrograph, item.path, item.pixel_size, error)
        rows[item.micrograph] = {"status": "failed", "error": error, "seconds": seconds}

    def finish(item: _Item, transformed: Transformed, seconds: float) -> None:  # (in a finisher thread)
        started = time.perf_counter()
        result = transformed.finish()
        layout = transformed.layout
        cache.store(item.micrograph, item.path, item.pixel_size, result.tensor, layout, result.square_metrics)
        rows[item.micrograph] = {  # (one key per micrograph: threads never share one)
            "status": "computed",
            "squares": layout.count,
            "pixel_size": layout.pixel_size,
            **result.metrics,
            "seconds": seconds + time.perf_counter() - started,
        }

    with (
        tqdm(total=len(table), desc="preprocess", unit="mic", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=stages.readers, thread_name_prefix="miffi-read") as reader,
        ThreadPoolExecutor(max_workers=stages.finishers, thread_name_prefix="miffi-finish") as finisher,
    ):
        bar.update(len(rows))
        queue: Iterator[_Item] = iter(todo)
        reading: deque[tuple[_Item, Future[tuple[LoadedMicrograph, float]]]] = deque()
        finishing: deque[tuple[_Item, Future[None], float]] = deque()
        batch = stages.batch

        def open_ahead() -> None:
            for item in itertools.islice(queue, stages.readers + batch - len(reading)):
                reading.append((item, reader.submit(_read, item, cache.config, device)))

        def collect(item: _Item, future: Future[None], seconds: float) -> None:
            try:
                future.result()
            except Exception as exc:  # one bad micrograph is recorded, the rest goes on
                fail(item, exc, seconds)
            bar.update(1)

        try:
            open_ahead()
            while reading:
                loaded: dict[tuple[int, int, int], list[tuple[_Item, LoadedMicrograph, float]]] = {}
                for item, future in [reading.popleft() for _ in range(min(batch, len(reading)))]:
                    try:
                        micrograph, seconds = future.result()
                        loaded.setdefault(batch_key(micrograph), []).append((item, micrograph, seconds))
                    except Exception as exc:
                        fail(item, exc, 0.0)
                        bar.update(1)
                open_ahead()
                for members in loaded.values():
                    started = time.perf_counter()
                    outcomes, whole = _transform([m for _, m, _ in members], cache.config, device)
                    share = (time.perf_counter() - started) / len(members)
                    if whole is not None and batch > 1:
                        log.warning(
                            "a batch of %d micrographs failed (%s): one at a time from here on",
                            len(members),
                            _describe(whole),
                        )
                        batch = 1
                    for (item, _, seconds), outcome in zip(members, outcomes):
                        spent = seconds + share
                        if isinstance(outcome, Transformed):
                            finishing.append((item, finisher.submit(finish, item, outcome, spent), spent))
                        else:
                            fail(item, outcome, spent)
                            bar.update(1)
                while len(finishing) > 2 * stages.finishers:
                    collect(*finishing.popleft())
            while finishing:
                collect(*finishing.popleft())
        except BaseException:  # (a full disk, Ctrl-C): stop without the queued work
            reader.shutdown(cancel_futures=True)
            finisher.shutdown(cancel_futures=True)
            raise

    return status_frame([{"micrograph": m, "path": p, **rows[m]} for m, p in zip(table["micrograph"], table["path"])])


def summarise(status: pd.DataFrame, wall_seconds: float) -> str:
    """One line: how many micrographs were computed, reused and failed, in how long (the
    stages of different micrographs overlap, so the wall time per micrograph is the
    throughput, not the ``seconds`` each one took)."""
    counts = status["status"].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in ("computed", "cached", "failed")]
    computed = int(counts.get("computed", 0))
    timing = f"; {wall_seconds / computed:.3f} s per computed micrograph" if computed else ""
    return f"{len(status)} micrographs: " + ", ".join(parts) + f" in {wall_seconds:.1f} s" + timing
