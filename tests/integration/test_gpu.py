"""GPU preprocessing gives the CPU's tensors. Skipped on machines without a CUDA GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import Transformed, load_squares, preprocess_loaded, transform_batch
from tests.support.micrographs import structured_image, write_mrc
from tests.support.spec_reference import max_difference, reference_variants


@pytest.mark.gpu
@pytest.mark.parametrize(("shape", "apix"), [((4092, 5760), 0.83), ((3710, 3838), 1.06), ((1001, 2500), 1.0)])
def test_gpu_matches_reference_and_cpu(tmp_path, cuda, shape, apix):
    image = structured_image(shape, seed=11)
    path = write_mrc(tmp_path / "m.mrc", image, pixel_size=apix)
    loaded = load_squares(path, None, PreprocessConfig())
    on_gpu = preprocess_loaded(loaded, PreprocessConfig(), cuda).tensor
    on_cpu = preprocess_loaded(loaded, PreprocessConfig(), torch.device("cpu")).tensor
    reference = reference_variants(image, apix)
    assert max_difference(on_gpu, reference) <= 1e-3
    assert max_difference(on_cpu, reference) <= 1e-3
    assert np.abs(on_gpu[:, 0] - on_cpu[:, 0]).max() <= 1e-3


@pytest.mark.gpu
def test_gpu_inference_matches_cpu(tmp_path, cuda):
    import timm

    from miffi.classify.inference import predict
    from miffi.classify.models import load_classifier, save_checkpoint
    from miffi.labels import LABELS
    from miffi.preprocess.cache import TensorCache
    from miffi.preprocess.squares import layout_for

    torch.manual_seed(0)
    module = timm.create_model("convnext_small", pretrained=False, in_chans=2, num_classes=11).eval()
    save_checkpoint(module, tmp_path / "m.safetensors", "convnext_small", PreprocessConfig())
    cache = TensorCache(tmp_path / "cache", PreprocessConfig())
    source = write_mrc(tmp_path / "s.mrc", structured_image((64, 64)))
    rng = np.random.default_rng(1)
    for name in "abc":
        tensor = np.clip(rng.normal(size=(2, 2, 384, 384)), -2.5, 2.5).astype(np.float32)
        cache.store(name, source, None, tensor, layout_for((384, 768), 1.5), [{}, {}])
    results = {}
    for device, bf16 in ((torch.device("cpu"), False), (cuda, False), (cuda, True)):
        classifier = load_classifier(tmp_path / "m.safetensors", device=device)
        results[(device.type, bf16)] = predict(classifier, cache, list("abc"), device, bf16=bf16, progress=False)[
            list(LABELS)
        ].to_numpy()
    assert np.abs(results[("cuda", False)] - results[("cpu", False)]).max() < 1e-3
    assert np.abs(results[("cuda", True)] - results[("cpu", False)]).max() < 0.05


@pytest.mark.gpu
def test_training_runs_on_the_gpu_with_bf16(tmp_path, cuda):
    from miffi.evaluate.label_files import read_labels
    from miffi.intake import read_micrographs
    from miffi.simulate.config import parse_detector
    from miffi.simulate.dataset import simulate_dataset
    from miffi.train.data import labelled_samples, split
    from miffi.train.loop import TrainConfig, train

    simulate_dataset(tmp_path / "sim", 16, parse_detector("512x512@1.2"), seed=2, progress=False, workers=1)
    samples = labelled_samples(
        read_micrographs([str(tmp_path / "sim" / "micrographs.star")]), read_labels(tmp_path / "sim" / "labels.csv")
    )
    train_samples, val_samples = split(samples, 0.25, seed=0)
    config = TrainConfig(arch="convnext_atto", epochs=2, batch_size=8, lr=1e-3, workers=2, bf16=True)
    history = train(train_samples, val_samples, config, tmp_path / "run", cuda, progress=False)
    assert history["epoch"].tolist() == [1, 2] and np.isfinite(history["train_loss"]).all()
    assert (tmp_path / "run" / "best.safetensors").is_file()


@pytest.mark.gpu
def test_a_gpu_batch_matches_the_cpu_one_micrograph_at_a_time(tmp_path, cuda):
    """Several K3 micrographs (different offsets) transformed at once on the GPU, their
    squares read into pinned memory as the readers do; the CPU reads the same files'
    memory maps."""
    config = PreprocessConfig()
    images = [structured_image((4092, 5760), seed=20 + i) + 6800.0 * i for i in range(3)]
    loaded = [
        load_squares(write_mrc(tmp_path / f"m{i}.mrc", image, pixel_size=0.83), None, config, pin=True)
        for i, image in enumerate(images)
    ]
    assert all(m.pinned is not None and m.pinned.is_pinned() for m in loaded)
    batched = transform_batch(loaded, config, cuda)
    for image, one, result in zip(images, loaded, batched):
        assert isinstance(result, Transformed)
        on_gpu = result.finish()
        on_cpu = preprocess_loaded(one, config, torch.device("cpu"))
        assert max_difference(on_gpu.tensor, reference_variants(image, 0.83)) <= 1e-3
        assert np.abs(on_gpu.tensor[:, 0] - on_cpu.tensor[:, 0]).max() <= 1e-3
        for ours, theirs in zip(on_gpu.square_metrics, on_cpu.square_metrics):
            assert ours == pytest.approx(theirs, rel=1e-3, abs=1e-6, nan_ok=True)
