"""Small stand-ins for the published Miffi models."""

from __future__ import annotations

import warnings
from pathlib import Path


def save_torchscript(module, path: Path) -> Path:
    """Save a timm module as TorchScript, the format of the published Miffi models.

    (torch deprecates ``torch.jit.script``; the warning's class differs between releases.)
    """
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


def tiny_model(path: Path, channels: int = 2, seed: int = 0) -> Path:
    """A small TorchScript stand-in for a published file: timm ``convnext_atto`` with
    ``channels`` inputs and Miffi's 11 outputs, random weights from ``seed``."""
    import timm
    import torch

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = timm.create_model("convnext_atto", pretrained=False, in_chans=channels, num_classes=11).eval()
    return save_torchscript(module, path)
