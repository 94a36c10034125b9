"""The tensor cache: one ``<micrograph>.npy`` per micrograph plus a JSON sidecar.

``<id>.npy``
    float32 array ``[squares, channels, size, size]`` (``size`` = 384 for ``miffi_v1``);
    channel 0 is the real-space image, channel 1 (two-channel configs) the power spectrum.
``<id>.json``
    how it was made: the preprocessing config, the source file's fingerprint (resolved
    path, size, mtime and a content digest, :func:`miffi.mrc.file_fingerprint`), the pixel
    size used, the square layout, the metrics of the micrograph and of each square
    (:mod:`miffi.preprocess.metrics`) and the stamp (inode, size, mtime) of the tensor file it
    describes; or ``"status": "failed"`` and the error.

An entry is reused only when the sidecar says ``ok``, its config equals the current
one, the source fingerprint is unchanged (same resolved file, same content) and the
pixel size given is the same. Several runs may share a cache, even at the same time:
both files are written atomically, and a reader accepts a sidecar only together with
the very tensor file it was written for (the stamp), retrying while another run is
replacing the pair, so no reader ever sees a half-replaced or foreign entry. An entry
for another file of the same name (two datasets in one cache) is never used for this
one: it is remade, and a reader that finds it replaced says so.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miffi import atomic
from miffi.errors import InputError, MiffiError, SettingError
from miffi.labels import LABELS
from miffi.mrc import file_fingerprint
from miffi.preprocess.config import CACHE_FORMAT, PreprocessConfig
from miffi.preprocess.metric_names import METRICS, micrograph_metrics
from miffi.preprocess.metric_names import VERSION as METRICS_VERSION
from miffi.preprocess.squares import SquareLayout

#: Columns of a preprocessing status table (``preprocess.tsv``), metrics included.
STATUS_COLUMNS = ["micrograph", "path", "status", "error", "squares", "pixel_size", "seconds", *METRICS]
#: Why an entry can belong to another file, and what to do about it.
SHARED_NAME = "another dataset with a micrograph of the same name shares this cache: give each its own --cache"
#: How often a reader retries while another run replaces an entry.
READ_ATTEMPTS = 8
#: Sidecars read once (:meth:`TensorCache.read_sidecars`): micrograph → sidecar, None where unreadable.
Sidecars = Mapping[str, dict[str, Any] | None]


class CacheConflict(MiffiError):
    """A cache entry that belongs to another file, or is being replaced by another run."""


def _same_pixel_size(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6)


def _stamp(stat: os.stat_result) -> dict[str, int]:
    return {"inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _resolved(source: str | Path) -> str:
    return str(Path(source).resolve())


class TensorCache:
    """A directory of cached micrograph tensors made with one preprocessing config.

    ``full_hash`` fingerprints sources by every byte instead of sampled blocks.
    """

    def __init__(self, directory: str | Path, config: PreprocessConfig, full_hash: bool = False):
        self.directory = Path(directory)
        self.config = config
        self.full_hash = full_hash

    def tensor_path(self, micrograph: str) -> Path:
        return self.directory / f"{micrograph}.npy"

    def sidecar_path(self, micrograph: str) -> Path:
        return self.directory / f"{micrograph}.json"

    def read_sidecar(self, micrograph: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.sidecar_path(micrograph).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return meta if isinstance(meta, dict) else None

    def _tensor_matches(self, meta: dict[str, Any]) -> bool:
        try:
            recorded: object = meta["tensor"]["stamp"]
            return _stamp(os.stat(self.tensor_path(meta["micrograph"]))) == recorded
        except (OSError, KeyError, TypeError):
            return False

    def lookup(self, micrograph: str, source: str | Path, pixel_size: float | None) -> dict[str, Any] | None:
        """The sidecar of a reusable entry, or None when the tensor must be (re)made."""
        meta = self.read_sidecar(micrograph)
        if meta is None or meta.get("status") != "ok" or meta.get("format") != CACHE_FORMAT:
            return None
        if meta.get("config") != self.config.to_dict() or meta.get("metrics_version") != METRICS_VERSION:
            return None
        if not _same_pixel_size(meta.get("pixel_size_given"), pixel_size):
            return None
        try:
            fingerprint = file_fingerprint(source, self.full_hash)
        except OSError:
            return None
        if meta.get("source", {}).get("fingerprint") != fingerprint or not self._tensor_matches(meta):
            return None
        return meta

    def read_sidecars(self, micrographs: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The sidecar of each micrograph (None where unreadable), read once for the later stages."""
        return {micrograph: self.read_sidecar(micrograph) for micrograph in micrographs}

    def entry(self, micrograph: str, source: str | Path) -> dict[str, Any] | None:
        """The sidecar of a finished entry made from ``source`` (without re-reading the
        source: a usable entry for a later stage), or None."""
        return finished_entry(self.read_sidecar(micrograph), source)

    def _base(self, micrograph: str, source: str | Path, pixel_size: float | None) -> dict[str, Any]:
        try:
            fingerprint = file_fingerprint(source, self.full_hash)
        except OSError:
            fingerprint = {"path": _resolved(source)}
        return {
            "format": CACHE_FORMAT,
            "micrograph": micrograph,
            "source": {"path": str(source), "fingerprint": fingerprint},
            "pixel_size_given": pixel_size,
            "config": self.config.to_dict(),
        }

    def store(
        self,
        micrograph: str,
        source: str | Path,
        pixel_size: float | None,
        tensor: np.ndarray,
        layout: SquareLayout,
        square_metrics: list[dict[str, float]],
    ) -> dict[str, Any]:
        """Write a tensor and its sidecar (with the squares' metrics); returns the sidecar."""
        expected = (layout.count, self.config.channels, self.config.size, self.config.size)
        if tensor.shape != expected or tensor.dtype != np.float32:
            raise ValueError(f"tensor {tensor.shape} {tensor.dtype} does not match {expected} float32")
        base = self._base(micrograph, source, pixel_size)  # the source as read, before the (slow) write
        written = atomic.save_npy(self.tensor_path(micrograph), tensor)
        meta = {
            **base,
            "status": "ok",
            "pixel_size": layout.pixel_size,
            "layout": asdict(layout),
            "tensor": {
                "file": self.tensor_path(micrograph).name,
                "shape": list(tensor.shape),
                "dtype": "float32",
                "stamp": _stamp(written),
            },
            "metrics_version": METRICS_VERSION,
            "metrics": micrograph_metrics(square_metrics),
            "square_metrics": square_metrics,
        }
        atomic.write_text(self.sidecar_path(micrograph), json.dumps(meta, indent=1))
        return meta

    def store_failure(self, micrograph: str, source: str | Path, pixel_size: float | None, error: str) -> None:
        """Record why a micrograph failed (a stale tensor no longer matches the sidecar)."""
        meta = {**self._base(micrograph, source, pixel_size), "status": "failed", "error": error}
        atomic.write_text(self.sidecar_path(micrograph), json.dumps(meta, indent=1))

    def load(self, micrograph: str, source: str | Path | None = None) -> np.ndarray:
        """The cached tensor, checked against its sidecar, this cache's config and, when
        given, the source file it must have been made from.

        Raises
        ------
        FileNotFoundError
            No finished entry.
        CacheConflict
            The entry belongs to another file, or another run keeps replacing it.
        """
        path = self.tensor_path(micrograph)
        for attempt in range(READ_ATTEMPTS):
            meta = self.read_sidecar(micrograph)
            if meta is None or meta.get("status") != "ok":
                raise FileNotFoundError(f"{path}: no valid cache entry")
            if meta.get("config") != self.config.to_dict():
                raise SettingError(
                    f"{path}: made with preprocessing config {meta.get('config')}, expected {self.config.to_dict()}"
                )
            made_from = (meta.get("source", {}).get("fingerprint") or {}).get("path")
            if source is not None and made_from != _resolved(source):
                raise CacheConflict(f"{path}: cache entry was made from {made_from}, not {source} ({SHARED_NAME})")
            try:
                with open(path, "rb") as handle:
                    if _stamp(os.fstat(handle.fileno())) == meta["tensor"].get("stamp"):
                        tensor: np.ndarray = np.load(handle, allow_pickle=False)
                        return tensor
            except FileNotFoundError:
                pass
            time.sleep(0.02 * (attempt + 1))  # another run is replacing the pair: read it again
        raise CacheConflict(f"{path}: cache entry keeps being replaced by another run; try again when it ends")


def existing_cache(directory: str | Path, micrographs: Sequence[str]) -> TensorCache:
    """A run's tensor cache, with the preprocessing config its entries were made with (the
    first readable sidecar's among ``micrographs``; else ``miffi_v1``'s)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "tensor cache not found (give the run's cache with --cache)")
    probe = TensorCache(directory, PreprocessConfig())
    for micrograph in micrographs[:50]:
        meta = probe.read_sidecar(micrograph)
        if meta and meta.get("status") == "ok" and isinstance(meta.get("config"), dict):
            return TensorCache(directory, PreprocessConfig.from_dict(meta["config"]))
    return probe


def finished_entry(meta: dict[str, Any] | None, source: str | Path) -> dict[str, Any] | None:
    """``meta`` when it is the sidecar of a finished entry made from ``source``, else None."""
    if meta is None or meta.get("status") != "ok":
        return None
    made_from = meta.get("source", {}).get("fingerprint") or {}
    return meta if made_from.get("path") == _resolved(source) else None


def cached_row(meta: dict[str, Any]) -> dict[str, Any]:
    """The status row of a usable cache entry (its sidecar ``meta``)."""
    return {
        "status": "cached",
        "squares": meta["tensor"]["shape"][0],
        "pixel_size": meta["pixel_size"],
        "seconds": 0.0,
        **meta["metrics"],
    }


def status_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A status table (:data:`STATUS_COLUMNS`) from one row per micrograph."""
    out = pd.DataFrame(rows).reindex(columns=STATUS_COLUMNS)
    out["squares"] = out["squares"].astype("Int64")
    return out


def cache_status(table: pd.DataFrame, cache: TensorCache, sidecars: Sidecars | None = None) -> pd.DataFrame:
    """What the cache holds for each micrograph of ``table``, as a status table:
    ``cached`` (with its metrics), or ``failed`` with the recorded error (or
    "not preprocessed", or a note that the entry was made from another file).
    ``sidecars``: those already read (:meth:`TensorCache.read_sidecars`), else read here."""
    sidecars = cache.read_sidecars(table["micrograph"]) if sidecars is None else sidecars
    rows = []
    for micrograph, path in zip(table["micrograph"], table["path"]):
        meta = finished_entry(sidecars.get(micrograph), path)
        if meta is not None:
            rows.append({"micrograph": micrograph, "path": path, **cached_row(meta)})
            continue
        found = sidecars.get(micrograph) or {}
        error = found.get("error", "not preprocessed")
        if found.get("status") == "ok":
            error = (
                f"cache entry {cache.sidecar_path(micrograph)} was made from "
                f"{found.get('source', {}).get('path')} ({SHARED_NAME})"
            )
        rows.append({"micrograph": micrograph, "path": path, "status": "failed", "error": error})
    return status_frame(rows)


def predict_reusing(
    run: Callable[[list[str]], pd.DataFrame],
    micrographs: Sequence[str],
    cache: TensorCache,
    store: Path,
    sidecars: Sidecars | None = None,
) -> tuple[pd.DataFrame, int]:
    """Predictions for ``micrographs``, evaluating only those without a stored result.

    ``run`` predicts a list of micrographs; results are kept per micrograph under
    ``store`` (one folder per model), each tagged with the stamp of the tensor it was
    computed from and reused while that tensor is the entry's, so adding micrographs to a
    dataset never re-runs the model on the old ones. ``sidecars``: the entries' sidecars
    already read (else read here). Returns the predictions (in order) and how many
    micrographs were evaluated.
    """
    atomic.ensure_folder(store)

    def entry_stamp(micrograph: str) -> dict[str, int] | None:
        meta = cache.read_sidecar(micrograph) if sidecars is None else sidecars.get(micrograph)
        return ((meta or {}).get("tensor") or {}).get("stamp")

    def saved(micrograph: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads((store / f"{micrograph}.json").read_text(encoding="utf-8"))
            return record
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    stamps = {m: entry_stamp(m) for m in micrographs}
    kept = {m: s for m in micrographs if (s := saved(m)) is not None and s.get("entry") == stamps[m]}
    todo = [m for m in micrographs if m not in kept]
    if todo:
        new = run(todo)
        for name, rows in new.groupby("micrograph", sort=False):
            micrograph = str(name)  # (an id of ``todo``)
            record = {"entry": stamps[micrograph], "rows": rows.drop(columns="micrograph").to_dict("list")}
            atomic.write_text(store / f"{micrograph}.json", json.dumps(record))
            kept[micrograph] = record
    frames = [pd.DataFrame({"micrograph": m, **kept[m]["rows"]}) for m in micrographs if m in kept]
    if not frames:
        return pd.DataFrame(columns=["micrograph", "square", *LABELS]), len(todo)
    return pd.concat(frames, ignore_index=True), len(todo)
