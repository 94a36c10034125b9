"""Layer-wise learning-rate decay for timm's ConvNeXt, grouped as in the ConvNeXt paper.

Layers are numbered 0-13: the stem is 0; stage 0 is 1; stage 1 (with the downsampling
before it) is 2; stage 2's blocks are spread evenly over 3-11 (three blocks per layer
for the 27 blocks of convnext_small/base/large) with its downsampling at 3; stage 3
(with its downsampling) is 12; the head (final norm and classifier) is 13. Layer ``i``
learns at ``base_lr * decay ** (13 - i)``. Meta's reference code names these layers
``downsample_layers.*`` / ``stages.N.M``; timm calls them ``stem.*``,
``stages.N.downsample.*``, ``stages.N.blocks.M.*`` and ``head.*``, which is what this
module maps (Miffi's training code used Meta's names on a timm model, so there every
parameter fell into the top layer).

Norm weights and biases (1-D parameters) get no weight decay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from miffi.errors import SettingError

BODY_LAYERS = 12  # groups 0-12 below the head; the head is group 13
HEAD = BODY_LAYERS + 1


def layer_of(name: str, stage_depths: tuple[int, ...]) -> int:
    """Layer id (0-13) of a timm ConvNeXt parameter name."""
    if name.startswith("stem."):
        return 0
    match = re.match(r"stages\.(\d+)\.(downsample|blocks)\.?(\d+)?", name)
    if match:
        stage, part, block = int(match[1]), match[2], match[3]
        if stage in (0, 1):
            return stage + 1
        if stage == 3:
            return BODY_LAYERS
        if part == "downsample":
            return 3
        return 3 + int(block) * 9 // stage_depths[2]  # stage 2 over layers 3..11
    if name.startswith(("head.", "norm_pre.")):
        return HEAD
    raise SettingError(f"parameter {name!r} is not part of a timm ConvNeXt")


@dataclass(frozen=True)
class ParamGroup:
    layer: int
    decay: bool
    lr_scale: float
    names: tuple[str, ...]


def parameter_groups(model: torch.nn.Module, layer_decay: float) -> list[ParamGroup]:
    """Groups by (layer, weight decay or not), each with its learning-rate scale."""
    stages: Any = model.stages  # a timm ConvNeXt's nn.Sequential of stages, each with its .blocks
    depths = tuple(len(stage.blocks) for stage in stages)
    if len(depths) != 4:
        raise SettingError(f"expected a ConvNeXt with 4 stages, found {len(depths)}")
    grouped: dict[tuple[int, bool], list[str]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decay = parameter.ndim > 1 and not name.endswith(".bias")
        grouped.setdefault((layer_of(name, depths), decay), []).append(name)
    return [
        ParamGroup(layer, decay, layer_decay ** (HEAD - layer), tuple(names))
        for (layer, decay), names in sorted(grouped.items())
    ]


def optimizer_groups(model: torch.nn.Module, layer_decay: float, weight_decay: float) -> list[dict[str, Any]]:
    """``torch.optim`` parameter groups (with an ``lr_scale`` key the schedule applies)."""
    parameters = dict(model.named_parameters())
    return [
        {
            "params": [parameters[n] for n in group.names],
            "lr_scale": group.lr_scale,
            "weight_decay": weight_decay if group.decay else 0.0,
            "layer": group.layer,
        }
        for group in parameter_groups(model, layer_decay)
    ]


def describe(model: torch.nn.Module, layer_decay: float, base_lr: float) -> str:
    """A table of the layer groups: layer, learning rate, parameter count, first/last name."""
    lines = [f"{'layer':>5} {'lr':>10} {'params':>10}  names"]
    by_layer: dict[int, list[ParamGroup]] = {}
    for group in parameter_groups(model, layer_decay):
        by_layer.setdefault(group.layer, []).append(group)
    parameters = dict(model.named_parameters())
    for layer, groups in by_layer.items():
        names = [n for g in groups for n in g.names]
        count = sum(parameters[n].numel() for n in names)
        span = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        lines.append(f"{layer:>5} {base_lr * groups[0].lr_scale:>10.3g} {count:>10,}  {span}")
    return "\n".join(lines)
