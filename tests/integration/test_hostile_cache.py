"""Cache identity: an entry is reused only for the same file and content, and runs
sharing a cache (one after the other, or at the same time) never get each other's
tensors, metrics or predictions."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch

from miffi.intake import read_micrographs
from miffi.preprocess.batch import preprocess_table
from miffi.preprocess.cache import SHARED_NAME, CacheConflict, TensorCache, predict_reusing
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.squares import layout_for
from tests.support.micrographs import structured_image, write_mrc
from tests.support.runners import miffi, one_error_line

CPU = torch.device("cpu")


def _preprocess(paths, cache_dir, **cache_options):
    cache = TensorCache(cache_dir, PreprocessConfig(), **cache_options)
    table = read_micrographs([str(p) for p in paths], pixel_size=1.2)
    return preprocess_table(table, cache, CPU, progress=False), cache


@pytest.fixture
def twin_datasets(tmp_path):
    """ds1/x.mrc and ds2/x.mrc: same name, size and mtime, different pixels."""
    a = write_mrc(tmp_path / "ds1" / "x.mrc", structured_image((512, 512), 1), pixel_size=1.2)
    b = write_mrc(tmp_path / "ds2" / "x.mrc", structured_image((512, 512), 2), pixel_size=1.2)
    os.utime(b, ns=(os.stat(a).st_atime_ns, os.stat(a).st_mtime_ns))
    assert os.stat(a).st_size == os.stat(b).st_size
    return a, b


def test_two_datasets_sharing_a_cache_get_their_own_tensors(twin_datasets, tmp_path):
    a, b = twin_datasets
    shared = tmp_path / "shared"
    own_a = np.load(_preprocess([a], tmp_path / "own_a")[1].tensor_path("x"))
    own_b = np.load(_preprocess([b], tmp_path / "own_b")[1].tensor_path("x"))
    status, cache = _preprocess([a], shared)
    assert status["status"].tolist() == ["computed"]
    status, cache = _preprocess([b], shared)
    assert status["status"].tolist() == ["computed"]  # not ds1's entry
    np.testing.assert_array_equal(cache.load("x", b), own_b)
    with pytest.raises(CacheConflict, match="was made from .*ds2/x.mrc, not .*ds1/x.mrc"):
        cache.load("x", a)
    status, cache = _preprocess([a], shared)
    assert status["status"].tolist() == ["computed"]
    np.testing.assert_array_equal(cache.load("x", a), own_a)


@pytest.mark.parametrize("full_hash", [False, True])
def test_rsync_copy_with_equal_size_and_mtime_is_recomputed(twin_datasets, tmp_path, full_hash):
    """`rsync -a` of other pixels over a micrograph (size and mtime kept): not reused."""
    a, b = twin_datasets
    _preprocess([a], tmp_path / "cache", full_hash=full_hash)
    stat = os.stat(a)
    shutil.copyfile(b, a)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    status, _ = _preprocess([a], tmp_path / "cache", full_hash=full_hash)
    assert status["status"].tolist() == ["computed"]


def test_full_hash_sees_a_single_changed_pixel(twin_datasets, tmp_path):
    a, _ = twin_datasets
    _preprocess([a], tmp_path / "cache", full_hash=True)
    stat = os.stat(a)
    with open(a, "r+b") as handle:  # one pixel between the sampled blocks, mtime restored
        handle.seek(1024 + 4 * (512 * 300 + 17))
        handle.write(np.float32(42.0).tobytes())
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _preprocess([a], tmp_path / "cache", full_hash=True)[0]["status"].tolist() == ["computed"]


def test_a_tensor_replaced_behind_the_sidecar_is_never_used(twin_datasets, tmp_path):
    a, b = twin_datasets
    _, cache = _preprocess([a], tmp_path / "cache")
    other = _preprocess([b], tmp_path / "other")[1].tensor_path("x")
    shutil.copyfile(other, cache.tensor_path("x"))  # same size, other pixels, new inode
    with pytest.raises(CacheConflict, match="keeps being replaced"):
        cache.load("x", a)
    assert _preprocess([a], tmp_path / "cache")[0]["status"].tolist() == ["computed"]


def test_stored_predictions_follow_the_entry_they_were_made_from(twin_datasets, tmp_path):
    a, _ = twin_datasets
    _, cache = _preprocess([a], tmp_path / "cache")
    calls = []

    def run(names):
        calls.append(list(names))
        return pd.DataFrame({"micrograph": names, "square": 0, "score": float(len(calls))})

    store = tmp_path / "cache" / "predictions" / "m"
    assert predict_reusing(run, ["x"], cache, store)[1] == 1
    assert predict_reusing(run, ["x"], cache, store)[1] == 0
    # the entry is remade: its predictions are stale
    preprocess_table(read_micrographs([str(a)], pixel_size=1.2), cache, CPU, force=True, progress=False)
    predictions, evaluated = predict_reusing(run, ["x"], cache, store)
    assert evaluated == 1 and predictions["score"].tolist() == [2.0]


def _writer(directory: str, source: str, value: float, seconds: float) -> None:
    """Rewrite entry ``x`` from ``source`` with a tensor of ``value`` for ``seconds``."""
    cache = TensorCache(directory, PreprocessConfig())
    layout = layout_for((512, 512), 1.2)
    tensor = np.full((1, 2, 384, 384), value, np.float32)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cache.store("x", source, 1.2, tensor, layout, [{"value": value}])


def test_concurrent_writers_never_expose_a_partial_or_foreign_entry(twin_datasets, tmp_path):
    """Two processes rewrite entry x from two files as fast as they can; every read
    for file A returns A's tensor exactly, or says the entry is not A's."""
    a, b = twin_datasets
    cache = TensorCache(tmp_path / "cache", PreprocessConfig())
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_writer, args=(str(tmp_path / "cache"), str(src), value, 3.0))
        for src, value in ((a, 1.0), (b, 2.0))
    ]
    for writer in writers:
        writer.start()
    seen = {"A": 0, "conflict": 0}
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        try:
            tensor = cache.load("x", a)
        except (CacheConflict, FileNotFoundError):
            seen["conflict"] += 1
            continue
        assert tensor.shape == (1, 2, 384, 384) and np.all(tensor == 1.0), np.unique(tensor)
        seen["A"] += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert seen["A"] > 0 and sum(seen.values()) > 20, seen


def test_concurrent_runs_on_a_shared_cache_are_right_or_say_why(twin_datasets, tmp_path):
    """Two `miffi run`s at once, one cache, same micrograph names: each result equals
    the run with its own cache, or the run fails naming the clash (never a mix)."""
    a, b = twin_datasets
    for folder, seed in ((a.parent, 10), (b.parent, 20)):
        for i in range(3):
            write_mrc(folder / f"m{i}.mrc", structured_image((512, 512), seed + i), pixel_size=1.2)
    alone = {}
    for name in ("ds1", "ds2"):
        result = miffi(
            "run",
            "--input",
            tmp_path / name,
            "--outdir",
            tmp_path / f"alone_{name}",
            "--no-progress",
            "--device",
            "cpu",
        )
        assert result.returncode == 0, result.stderr
        alone[name] = pd.read_parquet(tmp_path / f"alone_{name}" / "results.parquet")
    import subprocess

    from tests.support.runners import BIN

    runs = {
        name: subprocess.Popen(
            [
                str(BIN / "miffi"),
                "run",
                "--input",
                str(tmp_path / name),
                "--outdir",
                str(tmp_path / f"shared_{name}"),
                "--cache",
                str(tmp_path / "shared_cache"),
                "--no-progress",
                "--device",
                "cpu",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("ds1", "ds2")
    }
    for name, process in runs.items():
        err = process.communicate(timeout=300)[1]
        assert "Traceback" not in err
        if process.returncode == 0:
            shared = pd.read_parquet(tmp_path / f"shared_{name}" / "results.parquet")
            columns = [
                "micrograph",
                "path",
                "category",
                "film",
                "drift",
                "crystallinity",
                "contamination",
                "flatness",
                "anisotropy",
            ]
            pd.testing.assert_frame_equal(shared[columns], alone[name][columns])
        else:
            assert process.returncode == 2, err
            assert SHARED_NAME in one_error_line(err)
