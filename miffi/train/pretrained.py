"""ImageNet-pretrained ConvNeXt weights from a local file, adapted to 1 or 2 channels.

No network access is assumed: the weights come from a file the user has, e.g. timm's
``convnext_small.in12k`` checkpoint (``model.safetensors`` or ``pytorch_model.bin``) or
Meta's ``convnext_small_22k_224.pth`` (its parameter names are mapped to timm's). As in
the paper, the stem's RGB kernels become ``1.5 ×`` the first two kernels for two
channels, and their sum for one channel. The classifier head is not taken (it is
re-initialised for the 11 Miffi outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from miffi.errors import MiffiError

STEM = "stem.0.weight"


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch file (weights only, never pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise MiffiError(
            f"{path}: pretrained weights not found (miffi never downloads them: fetch e.g. timm's "
            "convnext_small.in12k model.safetensors once and give its path)"
        )
    weights: Any  # a file's content: checked below
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path))
        else:
            weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MiffiError(f"{path}: not a weights file ({type(error).__name__}: {str(error)[:200]})") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(weights, dict) and isinstance(weights.get(key), dict):
            weights = weights[key]
            break
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise MiffiError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in weights.items()}


def adapt_channels(stem: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB stem kernels ``[C, 3, k, k]`` → ``channels`` input channels (the paper's rule)."""
    if stem.shape[1] == channels:
        return stem
    if stem.shape[1] != 3:
        raise MiffiError(f"pretrained stem has {stem.shape[1]} input channels; expected 3 (RGB) or {channels}")
    if channels == 2:
        return stem[:, :2] * 1.5
    if channels == 1:
        return stem.sum(dim=1, keepdim=True)
    raise MiffiError(f"cannot adapt RGB weights to {channels} channels")


def load_pretrained(model: torch.nn.Module, path: str | Path, channels: int) -> list[str]:
    """Load backbone weights into a timm ConvNeXt; return the model keys left as initialised."""
    weights = read_weights(path)
    if STEM not in weights and "downsample_layers.0.0.weight" in weights:  # Meta's names → timm's
        from timm.models.convnext import checkpoint_filter_fn

        weights = {k: v for k, v in weights.items() if not k.startswith("head.")}
        weights = checkpoint_filter_fn(weights, model)
    if STEM not in weights:
        raise MiffiError(f"{path}: no {STEM}: not a ConvNeXt checkpoint (timm or Meta)")
    weights[STEM] = adapt_channels(weights[STEM], channels)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if not k.startswith("head.fc.") and k in own}
    mismatched = [k for k, v in usable.items() if v.shape != own[k].shape]
    if mismatched:
        raise MiffiError(
            f"{path}: weights do not fit this architecture (e.g. {mismatched[0]}: "
            f"{tuple(usable[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)})"
        )
    if len(usable) < len(own) // 2:
        raise MiffiError(f"{path}: only {len(usable)} of {len(own)} weights match this architecture")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
