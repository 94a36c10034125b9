"""``miffi download`` against a local server that speaks the Zenodo record API."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from miffi.classify.download import download_models, fetch_record
from miffi.errors import MiffiError


def test_record_lists_models(zenodo):
    files = fetch_record(zenodo.record_url)
    assert [f.model for f in files] == ["miffi_v1", "miffi_no_ps_v1"]
    assert files[0].md5 == hashlib.md5(zenodo.files["miffi_v1.pt"]).hexdigest()


def test_download_verifies_and_skips_what_is_there(zenodo, tmp_path):
    [path] = download_models(tmp_path, ["miffi_v1"], zenodo.record_url, progress=False)
    assert path == tmp_path / "miffi_v1.pt"
    assert path.read_bytes() == zenodo.files["miffi_v1.pt"]
    assert not list(tmp_path.glob("*.part"))
    download_models(tmp_path, ["miffi_v1"], zenodo.record_url, progress=False)
    assert len(zenodo.downloads("miffi_v1.pt")) == 1  # checksum ok: not fetched again


def test_dropped_connection_resumes_with_range(zenodo, tmp_path):
    zenodo.drop_after["miffi_v1.pt"] = 300_000
    [path] = download_models(tmp_path, ["miffi_v1"], zenodo.record_url, retries=3, progress=False)
    assert path.read_bytes() == zenodo.files["miffi_v1.pt"]
    ranges = [rng for _, rng in zenodo.downloads("miffi_v1.pt")]
    assert ranges == [None, "bytes=300000-"]


def test_checksum_mismatch_never_leaves_a_final_file(zenodo, tmp_path):
    zenodo.corrupt.add("miffi_no_ps_v1.pt")
    with pytest.raises(MiffiError, match="checksum does not match"):
        download_models(tmp_path, ["miffi_no_ps_v1"], zenodo.record_url, retries=1, progress=False)
    assert not (tmp_path / "miffi_no_ps_v1.pt").exists()
    assert len(zenodo.downloads("miffi_no_ps_v1.pt")) == 2


def test_unknown_model_and_unreachable_record(zenodo, tmp_path):
    with pytest.raises(MiffiError, match="unknown model.*miffi_v2.*miffi_no_ps_v1, miffi_v1"):
        download_models(tmp_path, ["miffi_v2"], zenodo.record_url, progress=False)
    with pytest.raises(MiffiError, match="cannot read the model record"):
        fetch_record("http://127.0.0.1:9/api/records/1", timeout=2, retries=0)


def test_cli_downloads_all(zenodo, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "miffi",
            "download",
            "--all",
            "--dir",
            str(tmp_path),
            "--record-url",
            zenodo.record_url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["miffi_no_ps_v1.pt", "miffi_v1.pt"]
