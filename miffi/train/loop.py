"""The training loop: AdamW with layer-wise decay, a per-iteration cosine schedule,
the sum of the four groups' cross-entropies, per-epoch checkpoints and resume.

Validation runs the model on every square of each validation micrograph (the
inference recipe, from a tensor cache under the output folder), combines the squares
with Miffi's rule and scores good-vs-bad accuracy against the labels; the best epoch
is the one with the highest validation accuracy (ties: lower validation loss).

Output folder::

    config.json            the training settings
    split.tsv              which micrograph trained and which validated
    checkpoints/epoch_NNN.safetensors   every epoch (weights + preprocessing + metrics)
    best.safetensors       the best epoch, ready for ``miffi run --model``
    log.tsv                per epoch: losses, validation accuracy (overall, per group), lr, images/s
    iterations.tsv         per iteration: loss and learning rate
    state.pt               optimizer state and progress, for --resume (weights only, no pickled code)
    figures/loss.png|pdf   loss and accuracy curves
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from miffi import atomic
from miffi.classify.combine import combine
from miffi.classify.inference import group_softmax
from miffi.classify.models import build_convnext, save_checkpoint
from miffi.classify.registry import DEFAULT_ARCH
from miffi.errors import MiffiError
from miffi.evaluate.scores import Counts
from miffi.labels import GOOD, GROUPS, LABELS, SLICES
from miffi.preprocess.batch import preprocess_table
from miffi.preprocess.cache import TensorCache
from miffi.preprocess.config import PreprocessConfig, reject_unknown_fields
from miffi.train.data import TARGETS, AugmentedMicrographs
from miffi.train.layer_decay import optimizer_groups
from miffi.train.pretrained import load_pretrained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the presets are the paper's three cases (Table 3)."""

    arch: str = DEFAULT_ARCH
    channels: int = 2
    size: int = 384
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-5
    min_lr: float = 1e-6
    weight_decay: float = 1e-8
    layer_decay: float = 0.9
    warmup_epochs: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    crop_min: float = 0.8
    bf16: bool = True
    workers: int = 0
    rule: str = "miffi"

    def __post_init__(self) -> None:
        if self.channels not in (1, 2):
            raise MiffiError(f"channels must be 1 or 2, got {self.channels}")
        if self.epochs < 1 or self.batch_size < 1:
            raise MiffiError("epochs and batch size must be at least 1")
        if not (0 < self.crop_min <= 1 and 0 < self.layer_decay <= 1 and self.lr > 0 and self.min_lr >= 0):
            raise MiffiError("need 0 < crop_min <= 1, 0 < layer_decay <= 1, lr > 0, min_lr >= 0")

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(power_spectrum=self.channels == 2, size=self.size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        try:
            reject_unknown_fields(cls, data, "training setting(s)")
        except ValueError as error:
            raise MiffiError(str(error)) from None
        return cls(**data)


FINETUNE = {"lr": 1e-5, "min_lr": 1e-6, "weight_decay": 1e-8, "layer_decay": 0.9, "epochs": 10, "warmup_epochs": 0.0}
PRESETS: dict[str, dict[str, Any]] = {
    "scratch-1ch": {
        "channels": 1,
        "lr": 4e-4,
        "min_lr": 1e-6,
        "weight_decay": 0.05,
        "layer_decay": 1.0,
        "epochs": 20,
        "warmup_epochs": 5.0,
    },
    "finetune-1ch": {"channels": 1, **FINETUNE},
    "finetune-2ch": {"channels": 2, **FINETUNE},
}


def preset_config(preset: str | None, **overrides: Any) -> TrainConfig:
    """A preset with ``overrides`` (keys whose value is None are left at the preset's)."""
    if preset is not None and preset not in PRESETS:
        raise MiffiError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    settings = {**(PRESETS[preset] if preset else {}), **{k: v for k, v in overrides.items() if v is not None}}
    config = TrainConfig.from_dict(settings)
    if preset and preset.startswith("finetune") and not config.pretrained:
        raise MiffiError(
            f"preset {preset} fine-tunes ImageNet weights: give --pretrained FILE "
            "(e.g. timm's convnext_small.in12k model.safetensors)"
        )
    return config


def best_epoch(history: pd.DataFrame) -> pd.Series:
    """The best row of a training log: highest validation accuracy, then lowest validation loss."""
    return history.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]


def _one_core_per_worker(worker_id: int) -> None:
    """Data-loading workers each get one core (the augmentation's FFTs would otherwise
    start a thread per core in every worker)."""
    import os

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[worker_id % len(cores)]})


def learning_rate(step: int, total: int, warmup: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine to ``min_lr`` at ``total`` steps."""
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def group_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the four label groups of the mean cross-entropy."""
    total = sum(F.cross_entropy(logits[:, part].float(), targets[:, i]) for i, part in enumerate(SLICES.values()))
    assert isinstance(total, torch.Tensor)  # (four groups: never the empty sum's 0)
    return total


def build_model(config: TrainConfig) -> torch.nn.Module:
    torch.manual_seed(config.seed)
    model = build_convnext(config.arch, config.channels)
    if config.pretrained:
        fresh = load_pretrained(model, config.pretrained, config.channels)
        log.info("pretrained weights from %s (initialised here: %s)", config.pretrained, ", ".join(fresh) or "none")
    return model


@dataclass
class Validation:
    """The usable validation micrographs and the cache holding their tensors (read per
    epoch, not kept in memory: a tenth of a large dataset is gigabytes)."""

    cache: TensorCache
    samples: pd.DataFrame


def prepare_validation(samples: pd.DataFrame, config: TrainConfig, out: Path, progress: bool) -> Validation:
    """Preprocess the validation micrographs (all squares, no augmentation) into a cache."""
    cache = TensorCache(out / "cache", config.preprocess)
    status = preprocess_table(samples, cache, torch.device("cpu"), progress=progress)
    failed = status[status["status"] == "failed"]
    for row in failed.itertuples():
        log.warning("validation micrograph left out: %s: %s", row.path, row.error)
    usable = samples[samples["micrograph"].isin(status.loc[status["status"] != "failed", "micrograph"])]
    if usable.empty:
        raise MiffiError("no validation micrograph could be preprocessed")
    return Validation(cache, usable.reset_index(drop=True))


def validate(
    model: torch.nn.Module, validation: Validation, config: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """Validation loss (per square) and accuracy (per micrograph, squares combined)."""
    model.eval()
    names, squares, probabilities, losses = [], [], [], []
    targets = dict(zip(validation.samples["micrograph"], validation.samples[TARGETS].to_numpy(dtype=np.int64)))
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda"),
    ):
        for micrograph in validation.samples["micrograph"]:
            tensor = np.array(validation.cache.load(micrograph))  # a writable copy of the memory map
            logits = model(torch.from_numpy(tensor).to(device)).float()
            target = torch.as_tensor(targets[micrograph]).expand(len(tensor), -1).to(device)
            losses.append(float(group_loss(logits, target)) * len(tensor))
            probabilities.append(group_softmax(logits).cpu().numpy())
            names += [micrograph] * len(tensor)
            squares += list(range(len(tensor)))
    predictions = pd.concat(
        [
            pd.DataFrame({"micrograph": names, "square": squares}),
            pd.DataFrame(np.concatenate(probabilities), columns=list(LABELS)),
        ],
        axis=1,
    )
    combined = combine(predictions, config.rule).set_index("micrograph").loc[validation.samples["micrograph"]]
    truth = validation.samples.set_index("micrograph")

    def good(frame: pd.DataFrame) -> np.ndarray:
        result: np.ndarray = np.logical_and.reduce([frame[g].isin(GOOD[g]).to_numpy() for g in GROUPS])
        return result

    counts = Counts.of(good(truth), good(combined))
    result = {
        "val_loss": sum(losses) / len(names),
        "val_accuracy": counts.metrics()["accuracy"],
        "val_tp": counts.tp,
        "val_fp": counts.fp,
        "val_tn": counts.tn,
        "val_fn": counts.fn,
    }
    for group in GROUPS:
        result[f"val_{group}_accuracy"] = float((combined[group].to_numpy() == truth[group].to_numpy()).mean())
    return result


class Checkpoints:
    """Where a run's files live, and saving/restoring its progress."""

    def __init__(self, out: Path):
        self.out = out

    def epoch(self, epoch: int) -> Path:
        return self.out / "checkpoints" / f"epoch_{epoch:03d}.safetensors"

    @property
    def best(self) -> Path:
        return self.out / "best.safetensors"

    @property
    def state(self) -> Path:
        return self.out / "state.pt"

    def save_state(
        self,
        optimizer: torch.optim.Optimizer,
        epoch: int,
        step: int,
        history: list[dict[str, Any]],
        iterations: list[dict[str, Any]],
    ) -> None:
        """Progress after a finished epoch (the logs too: a workflow manager may delete
        log.tsv and best.safetensors of an interrupted job, which resume then rewrites)."""
        with atomic.temporary_path(self.state) as tmp:
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "history": history,
                    "iterations": iterations,
                },
                tmp,
            )

    def keep_best(self, history: list[dict[str, Any]]) -> None:
        """Copy the best epoch's checkpoint to best.safetensors."""
        epoch = int(best_epoch(pd.DataFrame(history))["epoch"])
        with atomic.atomic_open(self.best, "wb") as handle:
            handle.write(self.epoch(epoch - 1).read_bytes())

    def load_state(self) -> dict[str, Any]:
        state: dict[str, Any] = torch.load(self.state, map_location="cpu", weights_only=True)
        return state


def _write_logs(out: Path, history: list[dict[str, Any]], iterations: list[dict[str, Any]]) -> None:
    atomic.write_text(out / "log.tsv", pd.DataFrame(history).to_csv(sep="\t", index=False))
    atomic.write_text(out / "iterations.tsv", pd.DataFrame(iterations).to_csv(sep="\t", index=False))


def _resume(
    out: Path, config: TrainConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, checkpoints: Checkpoints
) -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Restore weights, optimizer and logs of the last finished epoch; (next epoch, step, logs)."""
    saved = json.loads((out / "config.json").read_text())
    if saved != config.to_dict():
        changed = sorted(k for k in saved.keys() | config.to_dict().keys() if saved.get(k) != config.to_dict().get(k))
        raise MiffiError(f"{out}: cannot resume: settings changed ({', '.join(changed)}); use another --out")
    state = checkpoints.load_state()
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(checkpoints.epoch(state["epoch"]))))
    optimizer.load_state_dict(state["optimizer"])
    history, iterations = state["history"], state["iterations"]
    log.info("resuming after epoch %d (step %d)", state["epoch"] + 1, state["step"])
    return state["epoch"] + 1, state["step"], history, iterations


def train(
    train_samples: pd.DataFrame,
    val_samples: pd.DataFrame,
    config: TrainConfig,
    out: str | Path,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Train, validate each epoch, checkpoint; returns the per-epoch log (``log.tsv``)."""
    out = Path(out)
    checkpoints = Checkpoints(out)
    if not resume and checkpoints.state.exists():
        raise MiffiError(f"{out} holds a training run already: use --resume to continue it, or another --out")
    if len(train_samples) == 0:
        raise MiffiError("no training micrographs")
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.layer_decay, config.weight_decay), lr=config.lr)
    history: list[dict[str, Any]] = []
    iterations: list[dict[str, Any]] = []
    start_epoch, step = 0, 0
    if resume and checkpoints.state.exists():
        start_epoch, step, history, iterations = _resume(out, config, model, optimizer, checkpoints)
    else:
        atomic.write_text(out / "config.json", json.dumps(config.to_dict(), indent=1))
        split_table = pd.concat([train_samples.assign(split="train"), val_samples.assign(split="val")])
        atomic.write_text(
            out / "split.tsv", split_table[["micrograph", "split", *GROUPS]].to_csv(sep="\t", index=False)
        )
    validation = prepare_validation(val_samples, config, out, progress)
    dataset = AugmentedMicrographs(train_samples, config.preprocess, config.seed, (config.crop_min, 1.0))
    per_epoch = math.ceil(len(dataset) / config.batch_size)
    total, warmup = config.epochs * per_epoch, round(config.warmup_epochs * per_epoch)
    autocast = config.bf16 and device.type == "cuda"
    for epoch in range(start_epoch, config.epochs):
        model.train()
        dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            num_workers=config.workers,
            drop_last=False,
            worker_init_fn=_one_core_per_worker if config.workers else None,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
            pin_memory=device.type == "cuda",
        )
        started, seen, epoch_loss = time.perf_counter(), 0, 0.0
        with tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress) as bar:
            for images, targets in bar:
                lr = learning_rate(step, total, warmup, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = group_loss(model(images), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = loss.item()
                iterations.append({"step": step, "epoch": epoch + 1, "loss": value, "lr": lr})
                epoch_loss += value * len(images)
                seen += len(images)
                step += 1
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2e}")
        seconds = time.perf_counter() - started
        scores = validate(model, validation, config, device)
        row = {
            "epoch": epoch + 1,
            "train_loss": epoch_loss / seen,
            **scores,
            "lr": lr,
            "seconds": seconds,
            "images_per_s": seen / seconds,
        }
        history.append(row)
        save_checkpoint(
            model,
            checkpoints.epoch(epoch),
            config.arch,
            config.preprocess,
            {"epoch": epoch + 1, "validation": scores, "training": config.to_dict()},
        )
        is_best = int(best_epoch(pd.DataFrame(history))["epoch"]) == row["epoch"]
        if is_best:
            checkpoints.keep_best(history)
        _write_logs(out, history, iterations)
        checkpoints.save_state(optimizer, epoch, step, history, iterations)
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.3f (%.1f images/s)%s",
            epoch + 1,
            config.epochs,
            row["train_loss"],
            row["val_loss"],
            row["val_accuracy"],
            row["images_per_s"],
            " *best*" if is_best else "",
        )
    from miffi.report import figures
    from miffi.train.plots import loss_figure

    figures.save(loss_figure(pd.DataFrame(history), pd.DataFrame(iterations)), out / "figures", "loss", pdf=True)
    return pd.DataFrame(history)
