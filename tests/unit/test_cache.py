"""The tensor cache: reuse, invalidation, atomic writes, and failures recorded per micrograph."""

from __future__ import annotations

import json
import os

import mrcfile
import numpy as np
import pytest
import torch

from miffi import atomic
from miffi.intake import read_micrographs
from miffi.preprocess.batch import preprocess_table
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig
from tests.support.micrographs import structured_image, write_mrc
from tests.support.spec_reference import max_difference, reference_variants

CPU = torch.device("cpu")


def _run(table, directory, config=PreprocessConfig(), **kwargs):
    return preprocess_table(table, TensorCache(directory, config), CPU, progress=False, **kwargs)


@pytest.fixture
def two_micrographs(tmp_path):
    """Different shapes and pixel sizes in one dataset."""
    a = write_mrc(tmp_path / "mics" / "a.mrc", structured_image((600, 900), 1), pixel_size=1.0)
    b = write_mrc(tmp_path / "mics" / "b.mrc", structured_image((700, 700), 2), pixel_size=0.75)
    return read_micrographs([a, b]), tmp_path / "cache"


def test_tensors_and_sidecars_are_written(two_micrographs):
    table, cache_dir = two_micrographs
    status = _run(table, cache_dir)
    assert status["status"].tolist() == ["computed", "computed"]
    assert status["squares"].tolist() == [2, 1]
    a = np.load(cache_dir / "a.npy")
    assert a.shape == (2, 2, 384, 384) and a.dtype == np.float32
    assert max_difference(a, reference_variants(structured_image((600, 900), 1), 1.0)) <= 1e-3
    meta = json.loads((cache_dir / "b.json").read_text())
    assert meta["status"] == "ok"
    assert meta["config"] == PreprocessConfig().to_dict()
    assert meta["layout"]["crop"] == 350 and meta["pixel_size"] == 0.75
    stat = os.stat(cache_dir / "b.npy")
    assert meta["tensor"] == {
        "file": "b.npy",
        "shape": [1, 2, 384, 384],
        "dtype": "float32",
        "stamp": {"inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
    }
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]


def test_unchanged_micrographs_are_reused(two_micrographs):
    table, cache_dir = two_micrographs
    _run(table, cache_dir)
    before = os.stat(cache_dir / "a.npy").st_mtime_ns
    again = _run(table, cache_dir)
    assert again["status"].tolist() == ["cached", "cached"]
    assert os.stat(cache_dir / "a.npy").st_mtime_ns == before
    assert _run(table, cache_dir, force=True)["status"].tolist() == ["computed", "computed"]


def test_changed_micrograph_is_recomputed(two_micrographs, tmp_path):
    table, cache_dir = two_micrographs
    _run(table, cache_dir)
    old = np.load(cache_dir / "a.npy")
    write_mrc(tmp_path / "mics" / "a.mrc", structured_image((600, 900), 99), pixel_size=1.0)
    status = _run(table, cache_dir)
    assert status["status"].tolist() == ["computed", "cached"]
    assert not np.allclose(np.load(cache_dir / "a.npy"), old)


def test_changed_config_or_pixel_size_is_recomputed(two_micrographs):
    table, cache_dir = two_micrographs
    _run(table, cache_dir)
    one_channel = PreprocessConfig(power_spectrum=False)
    assert _run(table, cache_dir, one_channel)["status"].tolist() == ["computed", "computed"]
    assert np.load(cache_dir / "a.npy").shape == (2, 1, 384, 384)
    assert _run(table, cache_dir, one_channel)["status"].tolist() == ["cached", "cached"]
    table.loc[1, "pixel_size"] = 0.5
    assert _run(table, cache_dir, one_channel)["status"].tolist() == ["cached", "computed"]


def test_load_refuses_a_cache_made_with_another_config(two_micrographs):
    table, cache_dir = two_micrographs
    _run(table, cache_dir)
    assert TensorCache(cache_dir, PreprocessConfig()).load("a").shape == (2, 2, 384, 384)
    with pytest.raises(ValueError, match="power_spectrum': True.*expected.*power_spectrum': False"):
        TensorCache(cache_dir, PreprocessConfig(power_spectrum=False)).load("a")


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def explode(handle, header):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", explode)
    with pytest.raises(KeyboardInterrupt):
        atomic.save_npy(tmp_path / "x.npy", np.zeros(3))
    assert list(tmp_path.iterdir()) == []


def _bad_files(folder):
    """One file for each way a micrograph can be broken, with the expected message."""
    good = structured_image((256, 320), 5)
    write_mrc(folder / "full.mrc", good)
    (folder / "truncated.mrc").write_bytes((folder / "full.mrc").read_bytes()[:40_000])
    (folder / "zero.mrc").touch()
    nan = good.copy()
    nan[10, 10] = np.nan
    write_mrc(folder / "nan.mrc", nan)
    inf = good.copy()
    inf[5, 7] = np.inf
    write_mrc(folder / "inf.mrc", inf)
    write_mrc(folder / "stack.mrc", np.stack([good] * 3))
    write_mrc(folder / "absurd.mrc", good)
    with mrcfile.open(folder / "absurd.mrc", mode="r+", permissive=True) as mrc:
        mrc.header.nx = 100_000
    write_mrc(folder / "flat.mrc", np.full((256, 256), 3.0, np.float32))
    write_mrc(folder / "nopixel.mrc", good, pixel_size=None)
    return {
        "truncated": "truncated or corrupt",
        "zero": "empty file (0 bytes)",
        "nan": "contains NaN or Inf values",
        "inf": "contains NaN or Inf values",
        "stack": "is a movie (3 frames)",
        "absurd": "header claims 100000×256×1",
        "flat": "constant values (no contrast)",
        "nopixel": "no pixel size in the header or the metadata",
        "missing": "file not found",
    }


def test_bad_micrographs_are_recorded_and_the_rest_goes_on(tmp_path):
    folder = tmp_path / "mics"
    expected = _bad_files(folder)
    write_mrc(folder / "good1.mrc", structured_image((300, 500), 6), pixel_size=1.2)
    write_mrc(folder / "good2.mrc", structured_image((400, 400), 7), pixel_size=0.9)
    listing = tmp_path / "list.txt"
    names = ["good1", *expected, "good2"]
    listing.write_text("\n".join(f"mics/{n}.mrc" for n in names))
    table = read_micrographs([listing])
    status = _run(table, tmp_path / "cache").set_index("micrograph")
    assert status.loc["good1", "status"] == status.loc["good2", "status"] == "computed"
    for name, message in expected.items():
        assert status.loc[name, "status"] == "failed", name
        assert message in status.loc[name, "error"], (name, status.loc[name, "error"])
        sidecar = json.loads((tmp_path / "cache" / f"{name}.json").read_text())
        assert sidecar["status"] == "failed" and message in sidecar["error"]
        assert not (tmp_path / "cache" / f"{name}.npy").exists()
    # a failure is retried on the next run, the good ones are reused
    again = _run(table, tmp_path / "cache").set_index("micrograph")
    assert again.loc["good1", "status"] == "cached" and again.loc["nan", "status"] == "failed"


def test_inputs_are_never_modified(two_micrographs, tmp_path):
    table, cache_dir = two_micrographs
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "mics").iterdir()}
    _run(table, cache_dir)
    assert before == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "mics").iterdir()}
