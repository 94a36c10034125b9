"""A review session: the micrographs, what the run said of them, and the user's decisions.

Built from a run's results table (``results.tsv`` of ``miffi run`` or the workflow: the
calls, probabilities, metrics, and the tensor cache beside it) or from any dataset input
``miffi intake`` reads (then micrographs are preprocessed into the cache the first time
they are shown, and the ones after them ahead of time). Everything a page asks for is
answered from memory or one cached file, so the next micrograph costs the same on a
dataset of 20 or 20,000.
"""

from __future__ import annotations

import datetime
import getpass
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miffi.classify.combine import CATEGORIES, PROBABILITY_COLUMNS
from miffi.errors import MiffiError
from miffi.export.overrides import final_category
from miffi.intake import TABLE_SUFFIX
from miffi.labels import GROUPS
from miffi.pipeline import read_results, where_mask
from miffi.preprocess.cache import TensorCache, existing_cache
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.metric_names import METRICS
from miffi.report.images import micrograph_view, png, resized, tensor_views
from miffi.review import ORDERS
from miffi.review.decisions import DecisionFile
from miffi.review.order import order_of, uncertainty
from miffi.textfiles import read_tsv

log = logging.getLogger(__name__)

MODES = ("label", "curate")
#: Pictures a page can ask for: the model's view of the image and of its spectrum, and
#: the micrograph itself, larger.
PICTURES = ("image", "spectrum", "micrograph")
#: Pictures kept rendered (a few pages' worth, each a few hundred kB at most).
PICTURE_CACHE = 96
#: Micrographs preprocessed ahead of the one shown, when the cache lacks them.
LOOKAHEAD = 3


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """A table value as JSON takes it (missing → None, numpy scalars → Python)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


@dataclass
class Decisions:
    """The files the user's decisions go to (either may be absent)."""

    labels: DecisionFile | None = None
    overrides: DecisionFile | None = None


class ReviewSession:
    """The micrographs of one review and everything shown or decided about them.

    Parameters
    ----------
    table
        One row per micrograph: ``micrograph``, ``path``, ``pixel_size`` and, for a run's
        results, its calls (``category``, the group columns, ``p_*``, ``confidence``,
        metrics, ``wf_*``).
    cache
        The tensor cache of those micrographs.
    mode
        ``label`` (group labels to a labels file) or ``curate`` (category overrides).
    decisions
        Where decisions are kept.
    predictions
        Per-square predictions of the run (its uncertainty uses their disagreement).
    device
        Where micrographs missing from the cache are preprocessed (``None``: never; a
        missing tensor is then shown as such).
    """

    def __init__(
        self,
        table: pd.DataFrame,
        cache: TensorCache,
        mode: str,
        decisions: Decisions,
        predictions: pd.DataFrame | None = None,
        device: Any = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.decisions = decisions
        self._store.claim()
        self.table = table.reset_index(drop=True)
        self.cache = cache
        self.device = device
        self.has_calls = "category" in self.table
        self.doubt = uncertainty(self.table, predictions) if self.has_calls else None
        self._orders: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self._pictures: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[int, threading.Lock] = {}
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miffi-ahead")
        self.user = getpass.getuser()

    # --- what the page shows ------------------------------------------------------------

    @property
    def orders(self) -> list[str]:
        return list(ORDERS) if self.has_calls else ["acquisition"]

    def order(self, order: str, where: Sequence[str] = ()) -> list[int]:
        """Rows in ``order``, only those satisfying every ``--where``-style expression."""
        if order not in self.orders:
            raise MiffiError(f"order {order!r} needs a run's results (orders here: {', '.join(self.orders)})")
        key = (order, tuple(where))
        if key not in self._orders:
            rows = order_of(self.table, order, self.doubt)
            if where:
                mask = where_mask(self._filterable(), where).to_numpy()
                rows = [r for r in rows if mask[r]]
            self._orders[key] = rows
        return self._orders[key]

    def _filterable(self) -> pd.DataFrame:
        """The table as filters see it: the category exports would follow (this session's
        overrides applied), and what the user has decided."""
        frame = self.table.copy()
        overrides = self.decisions.overrides
        if overrides is not None:
            frame["category_override"] = [
                (overrides.get(m) or {}).get("category_override") for m in frame["micrograph"]
            ]
        if self.has_calls:
            frame["category"] = final_category(frame)
        frame["decided"] = [self.decided(m) for m in frame["micrograph"]]
        return frame

    @property
    def _store(self) -> DecisionFile:
        """The decisions of this session's mode: labels, or overrides."""
        store = self.decisions.labels if self.mode == "label" else self.decisions.overrides
        if store is None:
            raise ValueError(f"mode {self.mode} needs its decision file")
        return store

    def decided(self, micrograph: str) -> bool:
        """Whether the user has decided on ``micrograph`` in this session's mode."""
        return self._store.get(micrograph) is not None

    def decided_count(self) -> int:
        return len(self._store)

    def first_undecided(self, rows: Sequence[int]) -> int:
        """Where a (re)started session resumes: the first row not yet decided."""
        names = self.table["micrograph"]
        return next((i for i, row in enumerate(rows) if not self.decided(names.iloc[row])), 0)

    def item(self, row: int) -> dict[str, Any]:
        """Everything the page shows of one micrograph, as JSON takes it."""
        record = self.table.iloc[row]
        micrograph = str(record["micrograph"])
        item: dict[str, Any] = {
            "row": row,
            "micrograph": micrograph,
            "path": str(record["path"]),
            "status": _plain(record.get("status")),
            "error": _plain(record.get("error")),
            "metrics": {m: _plain(record[m]) for m in METRICS if m in record},
            "suggested": self._suggested(record),
            "label": self._decision(self.decisions.labels, micrograph),
            "override": self._decision(self.decisions.overrides, micrograph),
        }
        if self.has_calls:
            item["call"] = {
                "classifier": _plain(record.get("classifier")),
                "category": _plain(record["category"]),
                "confidence": _plain(record.get("confidence")),
                "confidence_level": _plain(record.get("confidence_level")),
                "groups": {g: _plain(record.get(g)) for g in GROUPS},
                "probabilities": {c[2:]: _plain(record[c]) for c in PROBABILITY_COLUMNS if c in record},
                "uncertainty": _plain(self.doubt.iloc[row]) if self.doubt is not None else None,
            }
            if "wf_category" in record:
                item["second_opinion"] = {
                    "category": _plain(record["wf_category"]),
                    "groups": {g: _plain(record.get(f"wf_{g}")) for g in GROUPS},
                }
        return item

    def _suggested(self, record: pd.Series) -> dict[str, str]:
        """The labels a page starts from: the run's call where it made one, else each
        group's first (good) label, so a good micrograph takes one key."""
        return {
            g: str(record[g]) if self.has_calls and isinstance(record.get(g), str) else labels[0]
            for g, labels in GROUPS.items()
        }

    @staticmethod
    def _decision(store: DecisionFile | None, micrograph: str) -> dict[str, str] | None:
        return None if store is None else store.get(micrograph)

    # --- pictures -----------------------------------------------------------------------

    def picture(self, row: int, kind: str) -> bytes:
        """PNG of one micrograph: ``image``/``spectrum`` (the model's view, from the cache;
        preprocessed now if it is missing) or ``micrograph`` (the file, larger)."""
        if kind not in PICTURES:
            raise MiffiError(f"no picture {kind!r} (pictures: {', '.join(PICTURES)})")
        with self._lock:
            if (row, kind) in self._pictures:
                self._pictures.move_to_end((row, kind))
                return self._pictures[row, kind]
        if kind == "micrograph":
            data = png(micrograph_view(self.table["path"].iloc[row]), level=0)  # (served locally: speed first)
        else:
            views = tensor_views(self.tensor(row))
            if kind == "spectrum" and len(views) < 2:
                raise MiffiError(f"{self.table['micrograph'].iloc[row]}: the cache holds no power spectrum")
            wanted = views[0] if kind == "image" else views[1]
            data = png(resized(wanted, 768) if wanted.shape[1] > 768 else wanted, level=0)
        with self._lock:
            self._pictures[row, kind] = data
            while len(self._pictures) > PICTURE_CACHE:
                self._pictures.popitem(last=False)
        return data

    def tensor(self, row: int) -> np.ndarray:
        """The cached tensor of a row; made now when missing and a device is set."""
        micrograph, path = str(self.table["micrograph"].iloc[row]), str(self.table["path"].iloc[row])
        with self._lock:
            making = self._making.setdefault(row, threading.Lock())
        with making:  # one preprocessing per micrograph, however many requests wait for it
            try:
                return self.cache.load(micrograph, path)
            except FileNotFoundError:
                if self.device is None:
                    raise MiffiError(f"{micrograph}: not in the tensor cache {self.cache.directory}") from None
            self._preprocess([row])
            return self.cache.load(micrograph, path)

    def _preprocess(self, rows: Sequence[int]) -> None:
        from miffi.preprocess.batch import preprocess_table

        status = preprocess_table(self.table.iloc[list(rows)], self.cache, self.device, progress=False)
        failed = status[status["status"] == "failed"]
        if len(failed):
            first = failed.iloc[0]
            raise MiffiError(f"{first['path']}: {first['error']}")

    def look_ahead(self, rows: Sequence[int]) -> None:
        """Preprocess the coming micrographs in the background (when a device is set)."""
        if self.device is None:
            return
        for row in rows[:LOOKAHEAD]:
            self._ahead.submit(self._quietly_make, row)

    def _quietly_make(self, row: int) -> None:
        try:
            self.tensor(row)
        except Exception as error:  # shown when the page asks for it; never kills the server
            log.debug("look-ahead of row %d: %s", row, error)

    # --- decisions ----------------------------------------------------------------------

    def _names(self, rows: Sequence[int]) -> list[str]:
        bad = [r for r in rows if not 0 <= r < len(self.table)]
        if bad:
            raise MiffiError(f"no micrograph at row {bad[0]} (the session has {len(self.table)})")
        return [str(self.table["micrograph"].iloc[r]) for r in rows]

    def save_labels(self, rows: Sequence[int], labels: dict[str, str] | None) -> int:
        """Label micrographs (all four groups), or forget their labels (``None``)."""
        if self.decisions.labels is None:
            raise MiffiError("this session keeps no labels (start it with --labels)")
        if labels is not None:
            for group, allowed in GROUPS.items():
                if labels.get(group) not in allowed:
                    raise MiffiError(f"{group}: {labels.get(group)!r} is not one of {', '.join(allowed)}")
        when = _now()
        values = None if labels is None else {**{g: labels[g] for g in GROUPS}, "labelled_at": when}
        self.decisions.labels.update({name: values for name in self._names(rows)})
        self._orders.clear()  # filters on what is decided see the change
        return len(self.decisions.labels)

    def save_override(self, rows: Sequence[int], category: str | None) -> int:
        """Overrule the category of micrographs, or drop their overrides (``None``)."""
        if self.decisions.overrides is None:
            raise MiffiError("this session keeps no overrides (start it with --overrides)")
        if category is not None and category not in CATEGORIES:
            raise MiffiError(f"{category!r} is not a category ({', '.join(CATEGORIES)})")
        failed = [r for r in rows if "status" in self.table and self.table["status"].iloc[r] == "failed"]
        if failed and category is not None:
            raise MiffiError(f"{self.table['micrograph'].iloc[failed[0]]} failed: there is no image to overrule")
        source = f"manual:{self.user} {_now()}"
        values = None if category is None else {"category_override": category, "override_source": source}
        self.decisions.overrides.update({name: values for name in self._names(rows)})
        self._orders.clear()  # filters on the category or on what is decided see the change
        return len(self.decisions.overrides)


def is_results_table(path: str | Path) -> bool:
    """Whether an input names a run's results table (not an intake table, not a dataset)."""
    text = str(path)
    return text.endswith((".tsv", ".parquet")) and not text.endswith(TABLE_SUFFIX)


def results_session(
    results_path: str | Path, mode: str, decisions: Decisions, cache_dir: str | Path | None, device: Any
) -> ReviewSession:
    """A session on a run's results: the table (with its Parquet copy), the per-square
    predictions beside it when present, and its tensor cache (default: ``cache/`` beside)."""
    results_path = Path(results_path)
    results = read_results(results_path)
    folder = results_path.parent
    predictions = None
    if (folder / "predictions.tsv").is_file():
        predictions = read_tsv(folder / "predictions.tsv", ["micrograph"], "predictions table")
    cache = existing_cache(Path(cache_dir) if cache_dir else folder / "cache", list(results["micrograph"]))
    return ReviewSession(results, cache, mode, decisions, predictions, device)


def dataset_session(table: pd.DataFrame, decisions: Decisions, cache_dir: str | Path, device: Any) -> ReviewSession:
    """A labelling session on a dataset's micrograph table; the tensors are made in
    ``cache_dir`` as the micrographs are shown (with the default, ``miffi_v1``, recipe)."""
    return ReviewSession(table, TensorCache(cache_dir, PreprocessConfig()), "label", decisions, None, device)
