"""Preprocess a micrograph table into a tensor cache, one bad micrograph never stopping the rest.

Three stages overlap, each with a bounded queue: background threads read micrographs
ahead; the transforms run on the device, several micrographs of one square size at a
time on a GPU, one micrograph per core on the CPU; background threads compute each
micrograph's metrics and write its cache entry meanwhile. Memory is bounded by the
queue depths, not by the table's size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
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
    transformers
        Batches transformed at the same time, each in its own thread; on the CPU each
        one's FFTs and torch operations then share the cores among them.
    """

    readers: int
    batch: int
    finishers: int
    transformers: int = 1

    def __post_init__(self) -> None:
        if min(self.readers, self.batch, self.finishers, self.transformers) < 1:
            raise ValueError(f"every stage needs a width of at least 1: {self}")

    @classmethod
    def for_device(cls, device: torch.device, cores: int | None = None) -> Stages:
        """On the CPU, one micrograph per core (at most eight at once, then each with
        two or more cores): the parts of a transform that use one core (reading the
        file's rows, copies, the power-spectrum image) then run beside the others, and
        the metrics too. Each micrograph being transformed holds about 100 MB for a K3
        one (its squares go one at a time). Measured on 2 cores with 8 K3 micrographs,
        a fresh ``miffi run`` took 0.4-0.6 s less with this and the frozen imports
        (:func:`miffi.device.frozen_imports`) than one micrograph at a time on both
        cores, about 0.2 s of it the imports'.

        A GPU transforms eight at once and needs the cores for reading and metrics (at
        most eight threads each: for a GPU every micrograph read ahead holds its squares
        in pinned memory, 134 MB for a K3 one, which PyTorch's pinned allocator can round
        up to 256 MB)."""
        cores = cores or available_cores()
        if device.type == "cpu":
            side = max(1, min(4, cores // 4))
            share = -(-cores // 8)  # (cores per micrograph: 12 cores are 6 micrographs × 2, not 8 × 1)
            return cls(readers=side, batch=1, finishers=side, transformers=cores // share)
        side = max(2, min(8, cores // 2))
        return cls(readers=side, batch=8, finishers=side)

    def workers(self, cores: int | None = None) -> int:
        """CPU threads for each transform's FFTs and torch operations."""
        return max(1, (cores or available_cores()) // self.transformers)


#: What a transformer thread gives back: :func:`_timed`.
_Outcomes = tuple[list[Transformed | Exception], Exception | None, float]


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
    members: list[LoadedMicrograph], config: PreprocessConfig, device: torch.device, workers: int
) -> tuple[list[Transformed | Exception], Exception | None]:
    """:func:`transform_batch`, never raising: where a batch fails as a whole (out of
    device memory, say), each of its micrographs is tried on its own, so one bad
    micrograph never fails the others. Also returns the whole batch's error, if any."""
    try:
        return list(transform_batch(members, config, device, workers)), None
    except Exception as exc:
        if len(members) == 1:
            return [exc], None
        return [_transform([loaded], config, device, workers)[0][0] for loaded in members], exc


def _timed(members: list[LoadedMicrograph], config: PreprocessConfig, device: torch.device, workers: int) -> _Outcomes:
    """:func:`_transform` (in a transformer thread), and the seconds it took."""
    started = time.perf_counter()
    outcomes, whole = _transform(members, config, device, workers)
    return outcomes, whole, time.perf_counter() - started


class _TorchThreads:
    """torch's CPU threads per operation, set while any preprocessing runs, then as before.

    The setting is the process's (new threads take it): transforms running side by side
    would otherwise each start a thread per core. Overlapping runs (the review server's
    requests and look-ahead) share it: the first one in sets it, the last one out puts
    the old value back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._before = 0

    @contextlib.contextmanager
    def __call__(self, count: int) -> Iterator[None]:
        with self._lock:
            if not self._users:
                self._before = torch.get_num_threads()
                torch.set_num_threads(count)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    torch.set_num_threads(self._before)


_torch_threads = _TorchThreads()


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

    # (fewer micrographs than transformers: each gets more of the cores)
    stages = dataclasses.replace(stages, transformers=max(1, min(stages.transformers, len(todo))))
    workers = stages.workers()
    with (
        _torch_threads(workers) if device.type == "cpu" else contextlib.nullcontext(),
        tqdm(total=len(table), desc="preprocess", unit="mic", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=stages.readers, thread_name_prefix="miffi-read") as reader,
        ThreadPoolExecutor(max_workers=stages.transformers, thread_name_prefix="miffi-transform") as transformer,
        ThreadPoolExecutor(max_workers=stages.finishers, thread_name_prefix="miffi-finish") as finisher,
    ):
        bar.update(len(rows))
        queue: Iterator[_Item] = iter(todo)
        reading: deque[tuple[_Item, Future[tuple[LoadedMicrograph, float]]]] = deque()
        transforming: deque[tuple[list[tuple[_Item, float]], Future[_Outcomes]]] = deque()
        finishing: deque[tuple[_Item, Future[None], float]] = deque()
        batch = stages.batch

        def open_ahead() -> None:
            for item in itertools.islice(queue, max(0, stages.readers + batch - len(reading))):
                reading.append((item, reader.submit(_read, item, cache.config, device)))

        def hand_over(members: list[tuple[_Item, float]], future: Future[_Outcomes]) -> None:
            """A batch's transforms done: its micrographs to the finishers, or failed."""
            nonlocal batch
            outcomes, whole, seconds = future.result()
            if whole is not None and batch > 1:
                log.warning(
                    "a batch of %d micrographs failed (%s): one at a time from here on", len(members), _describe(whole)
                )
                batch = 1
            for (item, read_seconds), outcome in zip(members, outcomes):
                spent = read_seconds + seconds / len(members)
                if isinstance(outcome, Transformed):
                    finishing.append((item, finisher.submit(finish, item, outcome, spent), spent))
                else:
                    fail(item, outcome, spent)
                    bar.update(1)

        def free_transformer() -> None:
            while len(transforming) >= stages.transformers:
                hand_over(*transforming.popleft())

        def collect(item: _Item, future: Future[None], seconds: float) -> None:
            try:
                future.result()
            except Exception as exc:  # one bad micrograph is recorded, the rest goes on
                fail(item, exc, seconds)
            bar.update(1)

        try:
            open_ahead()
            while reading:
                # A free transformer first: a batch that failed as a whole then sets the
                # next one's size, and a GPU's readers hold no more micrographs than before.
                free_transformer()
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
                    free_transformer()  # (again: the batch's micrographs may have several sizes)
                    work = transformer.submit(_timed, [m for _, m, _ in members], cache.config, device, workers)
                    transforming.append(([(item, seconds) for item, _, seconds in members], work))
                while len(finishing) > 2 * stages.finishers:
                    collect(*finishing.popleft())
            while transforming:
                hand_over(*transforming.popleft())
            while finishing:
                collect(*finishing.popleft())
        except BaseException:  # (a full disk, Ctrl-C): stop without the queued work
            for pool in (reader, transformer, finisher):
                pool.shutdown(cancel_futures=True)
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
