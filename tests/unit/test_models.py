"""Model files in every supported format give the same probabilities; bad files are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from miffi.classify.inference import group_softmax, predict
from miffi.classify.models import load_classifier, save_checkpoint
from miffi.errors import MiffiError, ModelError
from miffi.labels import LABELS, SLICES
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig
from tests.support.models import save_torchscript

CPU = torch.device("cpu")


def write_all_formats(folder, arch, in_chans=2, seed=0):
    torch.manual_seed(seed)
    module = timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=11).eval()
    paths = {
        "torchscript": folder / f"{arch}.pt",
        "state_dict": folder / f"{arch}_sd.pth",
        "checkpoint": folder / f"{arch}.safetensors",
    }
    save_torchscript(module, paths["torchscript"])
    torch.save(module.state_dict(), paths["state_dict"])
    save_checkpoint(module, paths["checkpoint"], arch, PreprocessConfig(power_spectrum=in_chans == 2))
    return module, paths


@pytest.fixture
def cache_with_tensors(tmp_path):
    """A cache with three micrographs of 1, 2 and 3 squares of random normalised input."""
    cache = TensorCache(tmp_path / "cache", PreprocessConfig())
    rng = np.random.default_rng(0)
    source = tmp_path / "src.mrc"
    source.write_bytes(b"x")
    from miffi.preprocess.squares import layout_for

    for name, count in (("a", 1), ("b", 2), ("c", 3)):
        tensor = np.clip(rng.normal(size=(count, 2, 384, 384)), -2.5, 2.5).astype(np.float32)
        layout = layout_for((384, 384 * count), 1.5)
        cache.store(name, source, None, tensor, layout, [{}] * count)
    return cache


@pytest.mark.parametrize("arch", ["convnext_atto", "convnext_small"])
def test_every_format_gives_the_same_probabilities(tmp_path, cache_with_tensors, arch):
    module, paths = write_all_formats(tmp_path, arch)
    tables = {}
    for kind, path in paths.items():
        classifier = load_classifier(path, arch=arch)
        assert classifier.kind == kind and classifier.config == PreprocessConfig()
        tables[kind] = predict(classifier, cache_with_tensors, ["a", "b", "c"], CPU, batch_size=4, progress=False)
    reference = tables["state_dict"]
    assert reference["micrograph"].tolist() == ["a", "b", "b", "c", "c", "c"]
    assert reference["square"].tolist() == [0, 0, 1, 0, 1, 2]
    for kind, table in tables.items():
        assert np.abs(table[list(LABELS)].to_numpy() - reference[list(LABELS)].to_numpy()).max() < 1e-5, kind
    # and the same as running the timm module directly on the cached tensors
    with torch.no_grad():
        direct = group_softmax(module(torch.from_numpy(np.array(cache_with_tensors.load("b"))))).numpy()
    assert np.abs(reference[list(LABELS)].to_numpy()[1:3] - direct).max() < 1e-5
    for part in SLICES.values():
        assert np.allclose(reference[list(LABELS)].to_numpy()[:, part].sum(axis=1), 1, atol=1e-5)


def test_batching_does_not_change_results(tmp_path, cache_with_tensors):
    _, paths = write_all_formats(tmp_path, "convnext_atto")
    classifier = load_classifier(paths["checkpoint"])
    one = predict(classifier, cache_with_tensors, ["c", "a", "b"], CPU, batch_size=1, progress=False)
    many = predict(classifier, cache_with_tensors, ["c", "a", "b"], CPU, batch_size=64, progress=False)
    assert np.abs(one[list(LABELS)].to_numpy() - many[list(LABELS)].to_numpy()).max() < 1e-5


def test_one_channel_model_reads_its_config(tmp_path):
    _, paths = write_all_formats(tmp_path, "convnext_atto", in_chans=1)
    for path in paths.values():
        assert load_classifier(path, arch="convnext_atto").config == PreprocessConfig(power_spectrum=False)


def test_a_cache_from_another_config_is_refused(tmp_path, cache_with_tensors):
    _, paths = write_all_formats(tmp_path, "convnext_atto", in_chans=1)
    classifier = load_classifier(paths["torchscript"])
    with pytest.raises(MiffiError) as info:
        predict(classifier, cache_with_tensors, ["a"], CPU, progress=False)
    message = str(info.value)
    assert str(paths["torchscript"]) in message and str(cache_with_tensors.directory) in message
    assert "'power_spectrum': False" in message and "'power_spectrum': True" in message


def test_a_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("this is not a model")
    with pytest.raises(ModelError, match=f"{junk}: not a model file"):
        load_classifier(junk)
    tensors = tmp_path / "tensors.pt"
    torch.save([torch.zeros(3)], tensors)
    with pytest.raises(ModelError, match="not a model file"):
        load_classifier(tensors)
    with pytest.raises(ModelError, match="model file not found"):
        load_classifier(tmp_path / "missing.pt")


def test_a_state_dict_of_another_architecture(tmp_path):
    _, paths = write_all_formats(tmp_path, "convnext_atto")
    with pytest.raises(ModelError, match="weights do not fit architecture 'convnext_small'"):
        load_classifier(paths["state_dict"], arch="convnext_small")
    wrong_head = timm.create_model("convnext_atto", pretrained=False, in_chans=2, num_classes=5)
    torch.save(wrong_head.state_dict(), tmp_path / "five.pth")
    with pytest.raises(ModelError, match="head has 5 outputs"):
        load_classifier(tmp_path / "five.pth", arch="convnext_atto")


def test_a_pickle_with_code_is_not_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open('" + str(tmp_path / "pwned") + "', 'w').write('x')",))

    path = tmp_path / "evil.pth"
    torch.save({"stem.0.weight": Boom()}, path)
    with pytest.raises(ModelError, match="not a model file"):
        load_classifier(path)
    assert not (tmp_path / "pwned").exists()


def test_the_background_reader_stops_cleanly_when_the_consumer_stops(cache_with_tensors):
    import threading

    from miffi.classify.inference import _in_background

    def tensors(names):
        return ((m, cache_with_tensors.load(m)) for m in names)

    before = threading.active_count()
    reader = _in_background(tensors(["a", "b", "c"] * 20), depth=1)
    assert next(reader)[0] == "a"
    reader.close()  # the consumer gives up after one item
    assert threading.active_count() == before
    with pytest.raises(FileNotFoundError, match="no valid cache entry"):
        list(_in_background(tensors(["a", "missing"])))


def test_batches_share_squares_across_micrographs_and_count_finished_ones():
    from miffi.classify.inference import batches

    rng = np.random.default_rng(0)
    tensors = [(name, rng.normal(size=(k, 2, 8, 8)).astype(np.float32)) for name, k in (("a", 2), ("b", 1), ("c", 3))]
    out = list(batches(iter(tensors), batch_size=4))
    assert [b.count for b in out] == [4, 2]
    assert out[0].micrographs == ["a", "a", "b", "c"] and out[0].squares == [0, 1, 0, 0]
    assert out[1].micrographs == ["c", "c"] and out[1].squares == [1, 2]
    assert [b.finished for b in out] == [2, 1]
    stacked = np.concatenate([t for _, t in tensors])
    assert np.array_equal(torch.cat([b.inputs[: b.count] for b in out]).numpy(), stacked)
    assert not out[1].inputs[2:].any()  # the short batch's unused rows are zero
    exact = list(batches(iter([("a", tensors[0][1]), ("b", tensors[0][1])]), batch_size=2))
    assert [(b.micrographs, b.finished) for b in exact] == [(["a", "a"], 1), (["b", "b"], 1)]
