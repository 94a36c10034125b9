"""Fetch the published Miffi models from their Zenodo record.

The record API (``GET https://zenodo.org/api/records/8342009``) lists ``files[]`` with
``key`` (file name), ``links.self`` (download URL) and ``checksum`` (``md5:<hex>``); a
model's name is its key before the first dot. Downloads go to ``<key>.part``, resume
with HTTP ``Range`` after a dropped connection, are verified against the checksum and
only then renamed to ``<key>``: a partial or corrupt file never has the final name.

Which models exist, their record, file names and pinned checksums: :mod:`miffi.classify.registry`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from tqdm import tqdm

from miffi.classify.registry import DEFAULT_MODELS, MODELS, RECORD_URL
from miffi.errors import MiffiError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODELS", "RECORD_URL", "RemoteFile", "download_file", "download_models", "fetch_record", "md5sum"]
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    key: str
    url: str
    md5: str
    size: int | None

    @property
    def model(self) -> str:
        return self.key.split(".", 1)[0]


def _open(url: str, timeout: float, headers: dict[str, str] | None = None) -> Any:  # (urlopen's own type)
    request = urllib.request.Request(url, headers={"User-Agent": "miffi-download", **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) URLs from the record)


def fetch_record(url: str = RECORD_URL, timeout: float = 30.0, retries: int = 3) -> list[RemoteFile]:
    """The files of a Zenodo record."""
    for attempt in range(retries + 1):
        try:
            with _open(url, timeout) as response:
                record = json.load(response)
            break
        except (urllib.error.URLError, HTTPException, OSError, json.JSONDecodeError) as exc:
            if attempt == retries:
                raise MiffiError(f"{url}: cannot read the model record ({exc})") from None
            time.sleep(0.5 * 2**attempt)
    try:
        return [
            RemoteFile(f["key"], f["links"]["self"], f["checksum"].removeprefix("md5:"), f.get("size"))
            for f in record["files"]
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise MiffiError(f"{url}: unexpected record format (missing {exc})") from None


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_into(remote: RemoteFile, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``remote`` to ``part`` (resuming with Range when it has data)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(remote.url, timeout, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # nothing left to send: the part is complete (or wrong)
            return
        raise
    with response:
        if have and response.status != 206:  # server ignored the range: start over
            have = 0
        expected = int(response.headers.get("Content-Length", -1))
        received = 0
        with (
            open(part, "ab" if have else "wb") as handle,
            tqdm(
                total=remote.size or None,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=remote.key,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if 0 <= received < expected:
            raise ConnectionError(f"connection closed after {have + received} bytes")


def download_file(
    remote: RemoteFile, directory: Path, retries: int = 5, timeout: float = 60.0, progress: bool = True
) -> Path:
    """Download one file with retries and resume; returns its final path."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / remote.key
    if final.exists() and md5sum(final) == remote.md5:
        log.info("%s is already there (checksum ok)", final)
        return final
    part = directory / f"{remote.key}.part"
    for attempt in range(retries + 1):
        try:
            _fetch_into(remote, part, timeout, progress)
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            if attempt == retries:
                raise MiffiError(
                    f"{remote.url}: download failed after {retries + 1} attempts ({exc}); "
                    f"the partial file {part} is kept for the next try"
                ) from None
            log.warning("%s: %s; retrying (attempt %d of %d)", remote.key, exc, attempt + 2, retries + 1)
            time.sleep(min(0.5 * 2**attempt, 30))
            continue
        if md5sum(part) == remote.md5:
            os.replace(part, final)
            return final
        part.unlink()
        if attempt == retries:
            break
        log.warning("%s: checksum mismatch; downloading again", remote.key)
    raise MiffiError(f"{remote.url}: checksum does not match md5 {remote.md5} after {retries + 1} attempts")


def download_models(
    directory: str | Path,
    models: Sequence[str] | None = DEFAULT_MODELS,
    url: str = RECORD_URL,
    retries: int = 5,
    progress: bool = True,
) -> list[Path]:
    """Download the named models (None: every file of the record) into ``directory``."""
    files = fetch_record(url, retries=min(retries, 3))
    if models is not None:
        available = {f.model for f in files}
        unknown = sorted(set(models) - available)
        if unknown:
            raise MiffiError(f"unknown model(s) {unknown}; the record has: {', '.join(sorted(available))}")
        files = [f for f in files if f.model in set(models)]
    for remote in files:
        _check_against_registry(remote, url)
    return [download_file(f, Path(directory), retries, progress=progress) for f in files]


def _check_against_registry(remote: RemoteFile, url: str) -> None:
    """A record file of a registry model must have the registry's file name (resolution by
    name looks for it) and, where the registry pins one, its checksum."""
    entry = MODELS.get(remote.model)
    if entry is None:
        return
    if remote.key != entry.key:
        log.warning(
            "%s: the record names %s's file %s, the registry %s; `--model %s` will not find it",
            url,
            entry.name,
            remote.key,
            entry.key,
            entry.name,
        )
    if entry.md5 is not None and remote.md5 != entry.md5:
        raise MiffiError(
            f"{url}: {remote.key} has md5 {remote.md5} in the record, the registry pins "
            f"{entry.md5} (miffi/classify/registry.py); the record changed: not downloading"
        )
