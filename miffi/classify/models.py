"""Loading and saving classifiers: published TorchScript models, timm state dicts, our checkpoints.

Every loaded model carries the preprocessing config its inputs must be made with;
inference refuses a cache made with another one.

Formats
-------
TorchScript (``miffi_v1.pt`` etc., Zenodo record 8342009)
    loaded with ``torch.jit.load``; a published model's preprocessing comes from the
    registry (:mod:`miffi.classify.registry`, matched by name or file name) and is
    checked against its stem weights; another file's input channels are read from them.
    A registry name (``miffi_v1``) stands for its downloaded file in the models folder.
timm state dict (``.pth``/``.pt``)
    ``torch.load(weights_only=True)`` into ``timm.create_model(arch, in_chans, 11)``.
miffi checkpoint (``.safetensors``)
    weights plus metadata: architecture, input channels, label groups, preprocessing config.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from miffi import atomic
from miffi.classify import registry
from miffi.errors import MiffiError, ModelError
from miffi.labels import GROUPS
from miffi.preprocess.config import PreprocessConfig

NUM_OUTPUTS = sum(len(labels) for labels in GROUPS.values())
STEM_WEIGHT = "stem.0.weight"
HEAD_WEIGHT = "head.fc.weight"
CHECKPOINT_KEY = "miffi"


@dataclass
class Classifier:
    """A loaded model and what its inputs must look like."""

    module: torch.nn.Module
    config: PreprocessConfig
    kind: str  # torchscript | state_dict | checkpoint
    arch: str | None
    path: str

    @property
    def channels(self) -> int:
        return self.config.channels


def build_convnext(arch: str, in_chans: int, num_classes: int = NUM_OUTPUTS) -> torch.nn.Module:
    """A timm model without pretrained weights (those come from files, never the network)."""
    import timm

    try:
        return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=num_classes)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise MiffiError(f"unknown architecture {arch!r} ({exc})") from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _input_channels(weights: Mapping[str, torch.Tensor], path: Path) -> int:
    stem = weights.get(STEM_WEIGHT)
    if stem is None or stem.ndim != 4:
        raise ModelError(path, f"no {STEM_WEIGHT} tensor: not a timm ConvNeXt")
    if stem.shape[1] not in (1, 2):
        raise ModelError(path, f"model takes {stem.shape[1]} input channels; Miffi inputs have 1 or 2")
    return int(stem.shape[1])


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            path, "not a model file (neither TorchScript, a state dict of tensors, nor a miffi .safetensors checkpoint)"
        )
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _load_into(arch: str, weights: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    in_chans = _input_channels(weights, path)
    head = weights.get(HEAD_WEIGHT)
    if head is not None and head.shape[0] != NUM_OUTPUTS:
        raise ModelError(path, f"head has {head.shape[0]} outputs; Miffi models have {NUM_OUTPUTS}")
    module = build_convnext(arch, in_chans)
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise ModelError(path, f"weights do not fit architecture {arch!r} (use --arch): {detail[:300]}") from None
    return module


def load_classifier(
    path: str | Path, arch: str = registry.DEFAULT_ARCH, device: torch.device | str = "cpu"
) -> Classifier:
    """Load any supported model file onto ``device``, in eval mode.

    ``path`` is a file, or a published model's registry name (``miffi_v1``, also as
    ``Path("miffi_v1")``), which stands for its downloaded file in the models folder
    (:func:`miffi.classify.registry.resolve_model`). ``arch`` names the timm architecture
    for plain state dicts (checkpoints and TorchScript files carry their own).
    """
    published = registry.get_model(str(path)) if registry.is_model_name(path) else None
    path = registry.resolve_model(path)
    published = published or registry.by_file_name(path.name)
    if not path.is_file():
        raise ModelError(path, "model file not found (download the published models with `miffi download`)")
    device = torch.device(device)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # the published models are TorchScript, deprecated or not
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors on damaged archives
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(path, f"TorchScript archive cannot be loaded ({first[:200]})") from None
        channels = _input_channels(dict(module.state_dict()), path)
        if published is None:
            config, arch_name = PreprocessConfig(power_spectrum=channels == 2), None
        elif channels != published.channels:
            raise ModelError(
                path,
                f"takes {channels} input channel(s), but the published model "
                f"{published.name!r} takes {published.channels}: not that model's file",
            )
        else:
            config, arch_name = published.preprocess, published.arch
        return Classifier(module.eval(), config, "torchscript", arch_name, str(path))
    if _is_safetensors(path):
        return _load_checkpoint(path, device)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, refused globals
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(path, f"not a model file ({type(exc).__name__}: {first[:200]})") from None
    module = _load_into(arch, _unwrap_state_dict(obj, path), path)
    config = PreprocessConfig(power_spectrum=_input_channels(module.state_dict(), path) == 2)
    return Classifier(module.to(device).eval(), config, "state_dict", arch, str(path))


def save_checkpoint(
    module: torch.nn.Module,
    path: str | Path,
    arch: str,
    config: PreprocessConfig,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save weights as safetensors with what is needed to use them again."""
    from safetensors.torch import save_file

    weights = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    meta = {
        "arch": arch,
        "labels": {g: list(v) for g, v in GROUPS.items()},
        "preprocess": config.to_dict(),
        **(extra or {}),
    }
    with atomic.temporary_path(path) as tmp:
        save_file(weights, str(tmp), metadata={CHECKPOINT_KEY: json.dumps(meta)})


def checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The miffi metadata of a .safetensors checkpoint, checked to have what loading needs."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(CHECKPOINT_KEY)
    except (OSError, SafetensorError) as exc:
        raise ModelError(path, f"damaged safetensors file ({exc})") from None
    if raw is None:
        raise ModelError(path, "safetensors file without miffi metadata (architecture, labels, preprocessing)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(path, f"miffi metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(path, "miffi metadata is not a mapping")
    missing = [key for key in ("arch", "labels", "preprocess") if key not in meta]
    if missing:
        raise ModelError(path, f"miffi metadata lacks {', '.join(missing)}")
    if (
        not isinstance(meta["arch"], str)
        or not isinstance(meta["labels"], dict)
        or not isinstance(meta["preprocess"], dict)
    ):
        raise ModelError(path, "miffi metadata has an arch, labels or preprocess entry of the wrong type")
    return meta


def _load_checkpoint(path: Path, device: torch.device) -> Classifier:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = checkpoint_metadata(path)
    try:
        weights = load_file(str(path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelError(path, f"unreadable checkpoint ({exc})") from None
    labels = {g: tuple(v) if isinstance(v, list) else v for g, v in meta["labels"].items()}
    if labels != GROUPS:
        raise ModelError(path, f"checkpoint labels {labels} differ from Miffi's {dict(GROUPS)}")
    try:
        config = PreprocessConfig.from_dict(meta["preprocess"])
    except (TypeError, ValueError) as exc:
        raise ModelError(path, f"checkpoint's preprocessing config is not usable ({exc})") from None
    module = _load_into(meta["arch"], weights, path)
    if _input_channels(weights, path) != config.channels:
        raise ModelError(path, "checkpoint's input channels do not match its preprocessing config")
    return Classifier(module.to(device).eval(), config, "checkpoint", meta["arch"], str(path))
