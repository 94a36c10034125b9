"""Training: layer-decay groups on timm's names, pretrained adaptation, schedule, splits,
augmentation, checkpoints and resume (real training runs on tiny simulated data)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from miffi.classify.models import checkpoint_metadata, load_classifier
from miffi.cli import main
from miffi.errors import MiffiError
from miffi.evaluate.label_files import read_labels
from miffi.intake import read_micrographs
from miffi.preprocess.config import PreprocessConfig
from miffi.preprocess.recipe import squares_to_tensor
from miffi.preprocess.squares import crop_size
from miffi.simulate.config import parse_detector
from miffi.simulate.dataset import simulate_dataset
from miffi.train import loop
from miffi.train.data import (
    augmented_tensor,
    labelled_samples,
    split,
    stratified_take,
    subset,
)
from miffi.train.layer_decay import describe, layer_of, parameter_groups
from miffi.train.loop import TrainConfig, learning_rate, preset_config, train
from miffi.train.pretrained import adapt_channels, load_pretrained


def test_layer_groups_follow_timm_names_for_convnext_small():
    model = timm.create_model("convnext_small", pretrained=False, in_chans=2, num_classes=11)
    depths = (3, 3, 27, 3)
    expected = {
        "stem.0.weight": 0,
        "stem.1.bias": 0,
        "stages.0.blocks.2.mlp.fc1.weight": 1,
        "stages.1.downsample.1.weight": 2,
        "stages.1.blocks.0.conv_dw.weight": 2,
        "stages.2.downsample.0.weight": 3,
        "stages.2.blocks.0.gamma": 3,
        "stages.2.blocks.2.norm.bias": 3,
        "stages.2.blocks.3.conv_dw.weight": 4,
        "stages.2.blocks.26.mlp.fc2.bias": 11,
        "stages.3.downsample.1.weight": 12,
        "stages.3.blocks.2.gamma": 12,
        "head.norm.weight": 13,
        "head.fc.weight": 13,
    }
    for name, layer in expected.items():
        assert layer_of(name, depths) == layer, name
    groups = parameter_groups(model, 0.9)
    assert sorted({g.layer for g in groups}) == list(range(14))
    assert sum(len(g.names) for g in groups) == len(list(model.parameters()))
    scale = {g.layer: g.lr_scale for g in groups}
    assert scale[13] == 1.0 and scale[0] == pytest.approx(0.9**13) and scale[4] == pytest.approx(0.9**9)
    no_decay = {n for g in groups if not g.decay for n in g.names}
    assert "head.fc.bias" in no_decay and "stages.2.blocks.0.gamma" in no_decay and "head.fc.weight" not in no_decay
    table = describe(model, 0.9, 1e-5)
    print(table)
    assert len(table.splitlines()) == 15 and "stem.0" in table.splitlines()[1]
    with pytest.raises(ValueError, match="not part of a timm ConvNeXt"):
        layer_of("downsample_layers.0.0.weight", depths)


def test_stage_two_spreads_over_nine_groups_for_small_models():
    model = timm.create_model("convnext_atto", pretrained=False, in_chans=1, num_classes=11)  # depths 2,2,6,2
    layers = {g.layer for g in parameter_groups(model, 0.9)}
    assert layers == {0, 1, 2, 3, 4, 6, 7, 9, 10, 12, 13}  # six blocks over layers 3..11


def test_pretrained_rgb_weights_adapted_as_the_paper_states(tmp_path):
    rgb = timm.create_model("convnext_atto", pretrained=False, in_chans=3, num_classes=1000)
    path = tmp_path / "convnext_atto.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(path))
    stem = rgb.state_dict()["stem.0.weight"]
    for channels, expected in ((2, stem[:, :2] * 1.5), (1, stem.sum(dim=1, keepdim=True))):
        model = timm.create_model("convnext_atto", pretrained=False, in_chans=channels, num_classes=11)
        fresh = load_pretrained(model, path, channels)
        assert fresh == ["head.fc.bias", "head.fc.weight"]
        torch.testing.assert_close(model.state_dict()["stem.0.weight"], expected)
        torch.testing.assert_close(
            model.state_dict()["stages.2.blocks.1.conv_dw.weight"], rgb.state_dict()["stages.2.blocks.1.conv_dw.weight"]
        )
    with pytest.raises(MiffiError, match="pretrained weights not found"):
        load_pretrained(model, tmp_path / "absent.safetensors", 1)
    small = timm.create_model("convnext_small", pretrained=False, in_chans=2, num_classes=11)
    with pytest.raises(MiffiError, match="do not fit this architecture"):
        load_pretrained(small, path, 2)
    assert adapt_channels(torch.ones(4, 2, 4, 4), 2).shape == (4, 2, 4, 4)


def test_presets_are_the_papers_and_finetuning_needs_weights():
    assert preset_config("finetune-2ch", pretrained="w.safetensors") == TrainConfig(
        channels=2,
        lr=1e-5,
        min_lr=1e-6,
        weight_decay=1e-8,
        layer_decay=0.9,
        epochs=10,
        warmup_epochs=0.0,
        pretrained="w.safetensors",
    )
    scratch = preset_config("scratch-1ch", arch="convnext_tiny")
    assert (
        scratch.channels,
        scratch.lr,
        scratch.weight_decay,
        scratch.epochs,
        scratch.warmup_epochs,
        scratch.arch,
    ) == (1, 4e-4, 0.05, 20, 5.0, "convnext_tiny")
    with pytest.raises(MiffiError, match="give --pretrained"):
        preset_config("finetune-1ch")
    with pytest.raises(MiffiError, match="unknown preset"):
        preset_config("finetune-3ch")


def test_cosine_schedule_with_warmup():
    config = TrainConfig(lr=1e-3, min_lr=1e-5)
    assert learning_rate(0, 100, 10, config) == pytest.approx(1e-4)
    assert learning_rate(9, 100, 10, config) == pytest.approx(1e-3)
    assert learning_rate(10, 100, 10, config) == pytest.approx(1e-3)
    assert learning_rate(55, 100, 10, config) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert learning_rate(100, 100, 10, config) == pytest.approx(1e-5)
    rates = [learning_rate(s, 100, 0, config) for s in range(100)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_stratified_subsets_keep_label_shares():
    strata = pd.Series(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    taken = stratified_take(strata, 20, np.random.default_rng(0))
    assert strata.iloc[taken].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
    assert len(set(taken)) == 20
    samples = pd.DataFrame({"micrograph": [f"m{i}" for i in range(100)], "stratum": strata})
    train, val = split(samples, 0.1, seed=1)
    assert len(val) == 10 and val["stratum"].value_counts().to_dict() == {"a": 6, "b": 3, "c": 1}
    assert set(train["micrograph"]).isdisjoint(val["micrograph"])
    assert subset(train, 9, seed=1)["stratum"].value_counts().to_dict() == {"a": 5, "b": 3, "c": 1}


def test_augmentation_crops_flips_then_computes_the_spectrum():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (300, 420)).astype(np.float32)
    config = PreprocessConfig(size=64)
    a = augmented_tensor(image, 1.0, config, np.random.default_rng(7))
    b = augmented_tensor(image, 1.0, config, np.random.default_rng(7))
    c = augmented_tensor(image, 1.0, config, np.random.default_rng(8))
    assert a.shape == (2, 64, 64) and torch.equal(a, b) and not torch.equal(a, c)
    # without crop/flip randomness the result is the inference recipe on that square
    square = image[:, :300]

    class NoFlip:
        def uniform(self, low, high):
            return 1.0

        def integers(self, low, high):
            return 0

        def random(self):
            return 0.9

    fixed = augmented_tensor(image, 1.0, config, NoFlip())
    offset = float(square[::4, ::4].mean())
    reference = squares_to_tensor(
        np.ascontiguousarray(square - offset)[None], crop_size(300, 1.0, 1.5), config, torch.device("cpu"), offset
    )[0]
    torch.testing.assert_close(fixed[0], reference[0], atol=1e-4, rtol=0)
    # a flipped crop flips the image; its power spectrum is the same point-symmetric pattern
    NoFlip.random = lambda self: 0.1
    flipped = augmented_tensor(image, 1.0, config, NoFlip())
    assert not torch.allclose(flipped[0], fixed[0], atol=1e-2)
    assert torch.allclose(flipped[1], fixed[1], atol=2e-2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    simulate_dataset(folder, 12, parse_detector("256x256@1.5"), seed=4, progress=False, workers=1)
    table = read_micrographs([str(folder / "micrographs.star")])
    samples = labelled_samples(table, read_labels(folder / "labels.csv"))
    return folder, samples


def test_training_writes_checkpoints_and_resumes_after_an_interruption(tiny, tmp_path, monkeypatch):
    _, samples = tiny
    train_samples, val_samples = split(samples, 0.25, seed=0)
    config = TrainConfig(
        arch="convnext_atto",
        size=64,
        epochs=2,
        batch_size=4,
        lr=1e-3,
        min_lr=0.0,
        weight_decay=0.05,
        layer_decay=0.8,
        warmup_epochs=0.5,
    )
    device = torch.device("cpu")
    history = train(train_samples, val_samples, config, tmp_path / "full", device, progress=False)
    assert history["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "val_film_accuracy", "images_per_s"} <= set(history)
    iterations = pd.read_csv(tmp_path / "full" / "iterations.tsv", sep="\t")
    assert len(iterations) == 2 * math.ceil(len(train_samples) / 4)
    assert iterations["lr"].iloc[0] < iterations["lr"].max()  # warm-up
    for epoch in (0, 1):
        meta = checkpoint_metadata(tmp_path / "full" / "checkpoints" / f"epoch_{epoch:03d}.safetensors")
        assert meta["epoch"] == epoch + 1 and meta["preprocess"]["size"] == 64 and meta["arch"] == "convnext_atto"
    classifier = load_classifier(tmp_path / "full" / "best.safetensors")
    assert classifier.config == config.preprocess and classifier.kind == "checkpoint"
    assert (tmp_path / "full" / "figures" / "loss.png").stat().st_size > 1000
    with pytest.raises(MiffiError, match="use --resume"):
        train(train_samples, val_samples, config, tmp_path / "full", device, progress=False)

    # interrupted during epoch 2's validation: epoch 1 is saved, --resume finishes the run identically
    real_validate = loop.validate
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*args)

    monkeypatch.setattr(loop, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(train_samples, val_samples, config, tmp_path / "cut", device, progress=False)
    monkeypatch.setattr(loop, "validate", real_validate)
    assert pd.read_csv(tmp_path / "cut" / "log.tsv", sep="\t")["epoch"].tolist() == [1]
    for name in ("log.tsv", "iterations.tsv", "best.safetensors"):  # what Snakemake removes of a failed job
        (tmp_path / "cut" / name).unlink()
    resumed = train(train_samples, val_samples, config, tmp_path / "cut", device, resume=True, progress=False)
    pd.testing.assert_frame_equal(
        resumed.drop(columns=["seconds", "images_per_s"]),
        history.drop(columns=["seconds", "images_per_s"]),
        atol=1e-5,
        rtol=0,
    )
    final = load_file(str(tmp_path / "cut" / "checkpoints" / "epoch_001.safetensors"))
    reference = load_file(str(tmp_path / "full" / "checkpoints" / "epoch_001.safetensors"))
    assert all(torch.allclose(final[k], reference[k], atol=1e-5) for k in reference)
    with pytest.raises(MiffiError, match="settings changed .*epochs"):
        train(
            train_samples,
            val_samples,
            TrainConfig(**{**config.to_dict(), "epochs": 3}),
            tmp_path / "cut",
            device,
            resume=True,
            progress=False,
        )


def test_train_cli_shows_groups_and_rejects_bad_labels(tiny, tmp_path, capsys):
    folder, _ = tiny
    assert (
        main(
            [
                "train",
                str(folder / "micrographs.star"),
                "--labels",
                str(folder / "labels.csv"),
                "--out",
                str(tmp_path / "m"),
                "--arch",
                "convnext_atto",
                "--show-groups",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["layer", "lr", "params", "names"] and "head.fc" in out
    binary = tmp_path / "binary.csv"
    binary.write_text("micrograph,good\n" + "".join(f"sim_{i:05d},good\n" for i in range(12)))
    assert main(["train", str(folder / "micrographs.star"), "--labels", str(binary), "--out", str(tmp_path / "m")]) == 2


@pytest.mark.slow
def test_two_channel_model_beats_one_channel_on_crystallinity(tmp_path):
    """The paper's ablation, small: a ConvNeXt trained from scratch on the CPU for about a
    minute on simulated micrographs (crystalline or not, some drifting) classifies a held-out
    set far above the majority class, and better with the power spectrum than without it,
    crystallinity included."""
    from miffi.simulate.config import SimulationConfig

    mix = SimulationConfig(
        mix={
            "film": {"no_film": 1.0},
            "drift": {"no_crack_drift": 0.7, "crack_drift_empty": 0.3},
            "crystallinity": {"not_crystalline": 0.5, "major_crystalline": 0.5},
            "contamination": {"minor_contamination": 1.0},
        }
    )
    detector = parse_detector("512x512@1.2")
    simulate_dataset(tmp_path / "train", 300, detector, mix, seed=41, workers=1, progress=False)
    truth = simulate_dataset(tmp_path / "test", 60, detector, mix, seed=42, workers=1, progress=False)
    scores = {}
    for channels in (2, 1):
        model = tmp_path / f"ch{channels}"
        assert (
            main(
                [
                    "train",
                    str(tmp_path / "train" / "micrographs.star"),
                    "--labels",
                    str(tmp_path / "train" / "labels.csv"),
                    "--out",
                    str(model),
                    "--preset",
                    "scratch-1ch",
                    "--channels",
                    str(channels),
                    "--arch",
                    "convnext_atto",
                    "--size",
                    "128",
                    "--epochs",
                    "8",
                    "--warmup-epochs",
                    "1",
                    "--batch-size",
                    "8",
                    "--lr",
                    "1e-3",
                    "--val-fraction",
                    "0.15",
                    "--no-progress",
                    "-q",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "run",
                    "--input",
                    str(tmp_path / "test" / "micrographs.star"),
                    "--model",
                    str(model / "best.safetensors"),
                    "--outdir",
                    str(model / "test"),
                    "--no-progress",
                    "-q",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "evaluate",
                    "--results",
                    str(model / "test" / "results.tsv"),
                    "--labels",
                    str(tmp_path / "test" / "labels.csv"),
                    "--out",
                    str(model / "evaluation"),
                    "-q",
                ]
            )
            == 0
        )
        evaluation = pd.read_csv(model / "evaluation" / "summary.tsv", sep="\t").set_index("method")
        scores[channels] = evaluation.loc[f"model:ch{channels}/best.safetensors"]
    print(
        {c: s[["accuracy", "crystallinity_good_bad_accuracy", "drift_accuracy"]].to_dict() for c, s in scores.items()}
    )
    good = (truth["drift"] == "no_crack_drift") & (truth["crystallinity"] == "not_crystalline")
    assert scores[2]["accuracy"] >= max(good.mean(), 1 - good.mean()) + 0.15
    assert scores[2]["accuracy"] >= scores[1]["accuracy"] + 0.1
    assert scores[2]["crystallinity_good_bad_accuracy"] >= scores[1]["crystallinity_good_bad_accuracy"] + 0.05


def test_learning_curve_trains_on_growing_stratified_subsets(tiny, tmp_path):
    from miffi.train.curves import learning_curve

    _, samples = tiny
    train_samples, val_samples = split(samples, 0.25, seed=0)
    config = TrainConfig(arch="convnext_atto", size=64, epochs=1, batch_size=4, lr=1e-3)
    curve = learning_curve(
        train_samples, val_samples, [3, 6, 100], config, tmp_path, torch.device("cpu"), progress=False
    )
    assert curve["train_size"].tolist() == [3, 6, len(train_samples)]
    for size in curve["train_size"]:
        split_table = pd.read_csv(tmp_path / f"n{size:05d}" / "split.tsv", sep="\t")
        assert (split_table["split"] == "train").sum() == size
        assert set(split_table.loc[split_table["split"] == "val", "micrograph"]) == set(val_samples["micrograph"])
    assert pd.read_csv(tmp_path / "curve.tsv", sep="\t")["train_size"].tolist() == curve["train_size"].tolist()
    assert {"learning_curve.png", "learning_curve.pdf", "loss_curves.png"} <= {
        p.name for p in (tmp_path / "figures").iterdir()
    }
