"""Batched transforms and the overlapped stages of preprocessing change no result.

A GPU transforms several micrographs at once, the CPU transforms them side by side, and
the metrics and cache writes run in background threads; each micrograph must still get
exactly what it gets on its own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from miffi.device import available_cores
from miffi.intake import read_micrographs
from miffi.preprocess.batch import Stages, preprocess_table
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import Transformed, load_squares, preprocess_loaded, transform_batch
from tests.support.micrographs import structured_image, write_mrc

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Micrographs of two sizes (one transposed), with detector-count offsets, one
    constant, one with a NaN, one truncated file."""
    folder = tmp_path_factory.mktemp("mixed")
    for i, offset in enumerate((0.0, 6800.0, -350.0, 12.5)):
        write_mrc(folder / f"wide_{i}.mrc", structured_image((900, 1400), seed=i) + offset, pixel_size=1.2)
    write_mrc(folder / "tall.mrc", structured_image((1100, 800), seed=9), pixel_size=1.0)
    write_mrc(folder / "flat.mrc", np.full((900, 1400), 5.0, np.float32), pixel_size=1.2)
    nan = structured_image((900, 1400), seed=5)
    nan[400, 700] = np.nan
    write_mrc(folder / "nan.mrc", nan, pixel_size=1.2)
    good = (folder / "wide_0.mrc").read_bytes()
    (folder / "truncated.mrc").write_bytes(good[: len(good) // 2])
    return folder


def test_a_batch_gives_each_micrograph_its_own_tensor_metrics_and_error(mixed_folder):
    names = ["wide_0", "wide_1", "flat", "wide_2", "nan", "wide_3"]
    loaded = [load_squares(mixed_folder / f"{n}.mrc", None, PreprocessConfig()) for n in names]
    batched = transform_batch(loaded, PreprocessConfig(), CPU)
    kinds = [type(r).__name__ for r in batched]
    assert kinds == ["Transformed", "Transformed", "MicrographError", "Transformed", "MicrographError", "Transformed"]
    assert "constant values" in str(batched[2]) and "flat.mrc" in str(batched[2])
    assert "NaN or Inf" in str(batched[4]) and "nan.mrc" in str(batched[4])
    for one, result in zip(loaded, batched):
        if isinstance(result, Transformed):
            alone = preprocess_loaded(one, PreprocessConfig(), CPU)
            finished = result.finish()
            np.testing.assert_allclose(finished.tensor, alone.tensor, rtol=0, atol=1e-6)
            for ours, theirs in zip(finished.square_metrics, alone.square_metrics):
                assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9, nan_ok=True)


def test_a_batch_must_share_square_size_and_crop(mixed_folder):
    loaded = [load_squares(mixed_folder / f"{n}.mrc", None, PreprocessConfig()) for n in ("wide_0", "tall")]
    with pytest.raises(ValueError, match="share square side, crop and coarse block"):
        transform_batch(loaded, PreprocessConfig(), CPU)


def _entries(folder, stages, cache_dir):
    table = read_micrographs([str(folder)])
    status = preprocess_table(table, TensorCache(cache_dir, PreprocessConfig()), CPU, progress=False, stages=stages)
    tensors = {m: np.load(cache_dir / f"{m}.npy") for m in status.loc[status["status"] == "computed", "micrograph"]}
    sidecars = {m: json.loads((cache_dir / f"{m}.json").read_text()) for m in status["micrograph"]}
    return status.drop(columns="seconds").set_index("micrograph"), tensors, sidecars


@pytest.fixture(scope="module")
def narrow_entries(mixed_folder, tmp_path_factory):
    return _entries(mixed_folder, Stages(readers=1, batch=1, finishers=1), tmp_path_factory.mktemp("narrow"))


@pytest.mark.parametrize(
    "wide_stages",
    [
        Stages(readers=3, batch=4, finishers=3),  # (a GPU's shape)
        Stages(readers=2, batch=1, finishers=2, transformers=3),  # (the CPU's: micrographs side by side)
    ],
    ids=["batches", "side-by-side"],
)
def test_wide_overlapped_stages_give_what_one_at_a_time_gives(mixed_folder, narrow_entries, wide_stages, tmp_path):
    threads = torch.get_num_threads()
    narrow = narrow_entries
    wide = _entries(mixed_folder, wide_stages, tmp_path / "wide")
    assert torch.get_num_threads() == threads  # (the transforms' share of the cores, then as before)
    status = narrow[0]
    assert (status["status"] == "computed").sum() == 5
    assert status.loc[["flat", "nan", "truncated"], "status"].tolist() == ["failed"] * 3
    assert status.loc["truncated", "error"]  # a reader's error is recorded like a transform's
    columns = ["status", "error", "squares"]
    assert wide[0][columns].equals(status[columns])
    assert narrow[1].keys() == wide[1].keys()
    for name, tensor in narrow[1].items():
        np.testing.assert_allclose(wide[1][name], tensor, rtol=0, atol=1e-6)
    for name, sidecar in narrow[2].items():
        assert wide[2][name].get("error") == sidecar.get("error")
        for ours, theirs in zip(wide[2][name].get("square_metrics", []), sidecar.get("square_metrics", [])):
            assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9, nan_ok=True)


def test_errors_in_the_background_stages(mixed_folder, tmp_path, monkeypatch, caplog):
    """A failed cache write of one micrograph fails it alone, unless the cache's folder is
    the problem (then the run stops); a batch that fails as a whole (a GPU out of memory)
    is done one micrograph at a time, with a warning."""
    import miffi.preprocess.batch as batch_module
    from miffi.errors import OutputError

    table = read_micrographs([str(mixed_folder)])
    wide = Stages(readers=2, batch=4, finishers=2)
    store = TensorCache.store

    def broken_store(self, micrograph, *args, **kwargs):
        if micrograph == "wide_2":
            raise RuntimeError("write failed")
        return store(self, micrograph, *args, **kwargs)

    monkeypatch.setattr(TensorCache, "store", broken_store)
    status = preprocess_table(table, TensorCache(tmp_path / "a", PreprocessConfig()), CPU, progress=False, stages=wide)
    status = status.set_index("micrograph")
    assert status.loc["wide_2", "error"] == "RuntimeError: write failed"
    assert (status["status"] == "computed").sum() == 4

    def full_disk(self, micrograph, *args, **kwargs):
        raise OutputError(tmp_path / "b", "no space left on device")

    monkeypatch.setattr(TensorCache, "store", full_disk)
    with pytest.raises(OutputError, match="no space left"):
        preprocess_table(table, TensorCache(tmp_path / "b", PreprocessConfig()), CPU, progress=False, stages=wide)

    monkeypatch.setattr(TensorCache, "store", store)
    transform = batch_module.transform_batch

    def no_batches(members, *args):
        if len(members) > 1:
            raise RuntimeError("CUDA out of memory")
        return transform(members, *args)

    monkeypatch.setattr(batch_module, "transform_batch", no_batches)
    status = preprocess_table(table, TensorCache(tmp_path / "c", PreprocessConfig()), CPU, progress=False, stages=wide)
    assert (status["status"] == "computed").sum() == 5
    assert "one at a time from here on" in caplog.text and "CUDA out of memory" in caplog.text


def test_a_stage_of_width_zero_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        Stages(readers=1, batch=0, finishers=1)
    with pytest.raises(ValueError, match="at least 1"):
        Stages(readers=1, batch=1, finishers=1, transformers=0)


@pytest.mark.parametrize(
    ("cores", "transformers", "workers"), [(1, 1, 1), (2, 2, 1), (8, 8, 1), (12, 6, 2), (16, 8, 2), (20, 6, 3)]
)
def test_the_cpu_transforms_micrographs_side_by_side_sharing_the_cores(cores, transformers, workers):
    stages = Stages.for_device(CPU, cores)
    assert (stages.batch, stages.transformers, stages.workers(cores)) == (1, transformers, workers)
    gpu = Stages.for_device(torch.device("cuda"), cores)
    assert (gpu.transformers, gpu.workers(cores)) == (1, cores)  # (one thread queues the GPU's kernels)


@pytest.mark.parametrize("rows", [slice(None), slice(0, 64), slice(130, 500)], ids=["all", "first", "inner"])
def test_a_tall_micrographs_square_rows_are_its_transposed_columns(tmp_path, rows, monkeypatch):
    # A tall micrograph is read in strips of the file's rows, transposed in the cache
    # (strips of 50 here, so that blocks and strips do not line up).
    import miffi.preprocess.recipe as recipe

    monkeypatch.setattr(recipe, "ROW_BLOCK", 50)
    image = structured_image((1400, 900), seed=4) + 3000.0
    loaded = load_squares(write_mrc(tmp_path / "tall.mrc", image, pixel_size=1.2), None, PreprocessConfig())
    assert loaded.layout.transposed and loaded.layout.count == 2
    side = loaded.layout.side
    span = range(side)[rows]
    out = np.full((2, len(span), side), np.nan, np.float32)
    loaded.square_rows(rows, out)
    for i, (start, stop) in enumerate(loaded.layout.columns):
        expected = image.T[span.start : span.stop, start:stop].astype(np.float32) - np.float32(loaded.offset)
        np.testing.assert_array_equal(out[i], expected)


def test_after_a_batch_fails_as_a_whole_the_rest_goes_one_at_a_time(tmp_path, monkeypatch, caplog):
    # More micrographs than readers + 2 batches: the fallback must take effect at once
    # and the reads ahead must not be asked for a negative number of micrographs.
    import miffi.preprocess.batch as batch_module

    for i in range(14):
        write_mrc(tmp_path / f"m_{i:02d}.mrc", structured_image((300, 450), seed=i), pixel_size=1.2)
    sizes = []
    transform = batch_module.transform_batch

    def no_batches(members, *args):
        sizes.append(len(members))
        if len(members) > 1:
            raise RuntimeError("CUDA out of memory")
        return transform(members, *args)

    monkeypatch.setattr(batch_module, "transform_batch", no_batches)
    table = read_micrographs([str(tmp_path)])
    stages = Stages(readers=2, batch=4, finishers=2)
    cache = TensorCache(tmp_path / "cache", PreprocessConfig())
    status = preprocess_table(table, cache, CPU, progress=False, stages=stages)
    assert (status["status"] == "computed").sum() == 14
    assert sizes[0] == 4 and set(sizes[1:]) == {1}  # (the failed batch's four, then each alone)
    assert caplog.text.count("one at a time from here on") == 1


def test_fewer_micrographs_than_transformers_share_all_cores(mixed_folder, tmp_path, monkeypatch):
    import miffi.preprocess.batch as batch_module

    workers = []
    transform = batch_module.transform_batch

    def record(members, config, device, count):
        workers.append(count)
        return transform(members, config, device, count)

    monkeypatch.setattr(batch_module, "transform_batch", record)
    table = read_micrographs([str(mixed_folder / "wide_0.mrc")])
    stages = Stages(readers=1, batch=1, finishers=1, transformers=4)
    preprocess_table(table, TensorCache(tmp_path, PreprocessConfig()), CPU, progress=False, stages=stages)
    assert workers == [available_cores()]  # (one micrograph: one transformer, every core)


def test_overlapping_runs_leave_torchs_threads_as_they_were(mixed_folder, tmp_path):
    # The review server preprocesses from several threads at once; torch's thread count is
    # the process's, taken by every new thread, so it must come back whatever the order.
    import threading

    threads = torch.get_num_threads()
    stages = Stages(readers=1, batch=1, finishers=1, transformers=2)
    names = ["wide_0", "wide_1", "wide_2", "wide_3"]

    def run(name: str) -> None:
        table = read_micrographs([str(mixed_folder / f"{name}.mrc"), str(mixed_folder / "tall.mrc")])
        preprocess_table(table, TensorCache(tmp_path / name, PreprocessConfig()), CPU, progress=False, stages=stages)

    runs = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    seen = []
    fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert seen == [threads] and torch.get_num_threads() == threads
