"""The tensor cache: one ``<micrograph>.npy`` per micrograph plus a JSON sidecar.

``<id>.npy``
    float32 array ``[squares, channels, size, size]`` (``size`` = 384 for ``miffi_v1``);
    channel 0 is the real-space image, channel 1 (two-channel configs) the power spectrum.
``<id>.json``
    how it was made: the preprocessing config, the source file's size and mtime, the
    pixel size used, the square layout, the metrics of the micrograph and of each square
    (:mod:`miffi.metrics`); or ``"status": "failed"`` and the error.

An entry is reused only when the sidecar says ``ok``, its config equals the current
one, and the source file and the given pixel size are unchanged. Both files are
written atomically, the tensor first; a sidecar is removed before its tensor is
replaced, so a sidecar never describes a tensor it was not written for.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miffi import atomic
from miffi.config import CACHE_FORMAT, PreprocessConfig
from miffi.labels import LABELS
from miffi import metrics
from miffi.mrc import file_fingerprint
from miffi.squares import SquareLayout


#: Columns of a preprocessing status table (``preprocess.tsv``), metrics included.
STATUS_COLUMNS = ["micrograph", "path", "status", "error", "squares", "pixel_size", "seconds", *metrics.METRICS]


def _same_pixel_size(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6)


class TensorCache:
    """A directory of cached micrograph tensors made with one preprocessing config."""

    def __init__(self, directory: str | Path, config: PreprocessConfig):
        self.directory = Path(directory)
        self.config = config

    def tensor_path(self, micrograph: str) -> Path:
        return self.directory / f"{micrograph}.npy"

    def sidecar_path(self, micrograph: str) -> Path:
        return self.directory / f"{micrograph}.json"

    def read_sidecar(self, micrograph: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.sidecar_path(micrograph).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def lookup(self, micrograph: str, source: str | Path, pixel_size: float | None) -> dict[str, Any] | None:
        """The sidecar of a reusable entry, or None when the tensor must be (re)made."""
        meta = self.read_sidecar(micrograph)
        if meta is None or meta.get("status") != "ok" or meta.get("format") != CACHE_FORMAT:
            return None
        if meta.get("config") != self.config.to_dict() or meta.get("metrics_version") != metrics.VERSION:
            return None
        try:
            fingerprint = file_fingerprint(source)
        except OSError:
            return None
        if meta.get("source", {}).get("fingerprint") != fingerprint:
            return None
        if not _same_pixel_size(meta.get("pixel_size_given"), pixel_size):
            return None
        if not self.tensor_path(micrograph).is_file():
            return None
        return meta

    def _base(self, micrograph: str, source: str | Path, pixel_size: float | None) -> dict[str, Any]:
        try:
            fingerprint = file_fingerprint(source)
        except OSError:
            fingerprint = None
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
        with contextlib.suppress(FileNotFoundError):
            self.sidecar_path(micrograph).unlink()
        atomic.save_npy(self.tensor_path(micrograph), tensor)
        meta = {
            **self._base(micrograph, source, pixel_size),
            "status": "ok",
            "pixel_size": layout.pixel_size,
            "layout": asdict(layout),
            "tensor": {"file": self.tensor_path(micrograph).name, "shape": list(tensor.shape), "dtype": "float32"},
            "metrics_version": metrics.VERSION,
            "metrics": metrics.micrograph_metrics(square_metrics),
            "square_metrics": square_metrics,
        }
        atomic.write_text(self.sidecar_path(micrograph), json.dumps(meta, indent=1))
        return meta

    def store_failure(self, micrograph: str, source: str | Path, pixel_size: float | None, error: str) -> None:
        """Record why a micrograph failed (its stale tensor, if any, is removed)."""
        with contextlib.suppress(FileNotFoundError):
            self.sidecar_path(micrograph).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.tensor_path(micrograph).unlink()
        meta = {**self._base(micrograph, source, pixel_size), "status": "failed", "error": error}
        atomic.write_text(self.sidecar_path(micrograph), json.dumps(meta, indent=1))

    def load(self, micrograph: str) -> np.ndarray:
        """The cached tensor, checked against its sidecar and this cache's config."""
        meta = self.read_sidecar(micrograph)
        path = self.tensor_path(micrograph)
        if meta is None or meta.get("status") != "ok":
            raise FileNotFoundError(f"{path}: no valid cache entry")
        if meta.get("config") != self.config.to_dict():
            raise ValueError(
                f"{path}: made with preprocessing config {meta.get('config')}, "
                f"expected {self.config.to_dict()}"
            )
        return np.load(path, mmap_mode="r", allow_pickle=False)


def cache_status(table: pd.DataFrame, cache: TensorCache) -> pd.DataFrame:
    """What the cache holds for each micrograph of ``table``, as a status table:
    ``cached`` (with its metrics), or ``failed`` with the recorded error (or
    "not preprocessed")."""
    rows = []
    for micrograph, path in zip(table["micrograph"], table["path"]):
        meta = cache.read_sidecar(micrograph) or {}
        if meta.get("status") == "ok":
            rows.append({"micrograph": micrograph, "path": path, "status": "cached",
                         "squares": meta["tensor"]["shape"][0], "pixel_size": meta["pixel_size"],
                         "seconds": 0.0, **meta["metrics"]})
        else:
            rows.append({"micrograph": micrograph, "path": path, "status": "failed",
                         "error": meta.get("error", "not preprocessed")})
    out = pd.DataFrame(rows).reindex(columns=STATUS_COLUMNS)
    out["squares"] = out["squares"].astype("Int64")
    return out


def predict_reusing(
    run: Callable[[list[str]], pd.DataFrame],
    micrographs: Sequence[str],
    cache: TensorCache,
    store: Path,
) -> tuple[pd.DataFrame, int]:
    """Predictions for ``micrographs``, evaluating only those without a stored result.

    ``run`` predicts a list of micrographs; results are kept per micrograph under
    ``store`` (one folder per model) and reused while newer than the cached tensor, so
    adding micrographs to a dataset never re-runs the model on the old ones. Returns
    the predictions (in order) and how many micrographs were evaluated.
    """
    store.mkdir(parents=True, exist_ok=True)

    def fresh(micrograph: str) -> bool:
        saved = store / f"{micrograph}.tsv"
        return saved.is_file() and saved.stat().st_mtime_ns >= cache.sidecar_path(micrograph).stat().st_mtime_ns

    todo = [m for m in micrographs if not fresh(m)]
    if todo:
        new = run(todo)
        for micrograph, rows in new.groupby("micrograph", sort=False):
            atomic.write_text(store / f"{micrograph}.tsv", rows.to_csv(sep="\t", index=False))
    frames = [pd.read_csv(store / f"{m}.tsv", sep="\t", dtype={"micrograph": str}) for m in micrographs]
    columns = ["micrograph", "square", *LABELS]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), len(todo)
