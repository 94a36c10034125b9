"""What a simulated dataset contains: detector, optics and the mix of defects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miffi.errors import SettingError
from miffi.labels import GROUPS
from miffi.preprocess.config import reject_unknown_fields
from miffi.textfiles import read_yaml_mapping


@dataclass(frozen=True)
class Detector:
    """Micrograph size (rows × columns, as stored) and pixel size."""

    name: str
    height: int
    width: int
    pixel_size: float


DETECTORS = {
    "k3": Detector("k3", 4092, 5760, 0.83),
    "k2": Detector("k2", 3710, 3838, 1.06),
    "falcon": Detector("falcon", 4096, 4096, 0.73),
}


def parse_detector(text: str) -> Detector:
    """``k3``, ``k2``, ``falcon`` or ``WxH@APIX`` (e.g. ``1024x768@1.0``)."""
    key = text.strip().lower()
    if key in DETECTORS:
        return DETECTORS[key]
    match = re.fullmatch(r"(\d+)x(\d+)@(\d+(?:\.\d*)?)", key)
    if not match:
        raise SettingError(f"detector {text!r} is not k3, k2, falcon or WxH@APIX (e.g. 1024x1024@1.0)")
    width, height, apix = int(match[1]), int(match[2]), float(match[3])
    if min(width, height) < 128 or not apix > 0:
        raise SettingError(f"detector {text!r}: sides must be >= 128 px and the pixel size > 0")
    return Detector(f"{width}x{height}", height, width, apix)


def _default_mix() -> dict[str, dict[str, float]]:
    return {
        "film": {"no_film": 0.55, "minor_film": 0.15, "major_film": 0.15, "film": 0.15},
        "drift": {"no_crack_drift": 0.7, "crack_drift_empty": 0.3},
        "crystallinity": {"not_crystalline": 0.6, "minor_crystalline": 0.2, "major_crystalline": 0.2},
        "contamination": {"minor_contamination": 0.75, "major_contamination": 0.25},
    }


@dataclass(frozen=True)
class SimulationConfig:
    """The mix of labels and the ranges of the physical parameters.

    ``mix`` gives, per Miffi group, the probability of each label (normalised).
    ``bad_drift_kinds`` splits ``crack_drift_empty`` into drift / crack / empty.
    Ranges are ``(low, high)`` and sampled uniformly.
    """

    mix: dict[str, dict[str, float]] = field(default_factory=_default_mix)
    bad_drift_kinds: dict[str, float] = field(default_factory=lambda: {"drift": 0.5, "crack": 0.25, "empty": 0.25})
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.1
    dose: tuple[float, float] = (40.0, 60.0)  # e⁻/Å², summed
    defocus: tuple[float, float] = (5000.0, 30000.0)  # Å (0.5–3 µm)
    astigmatism: tuple[float, float] = (0.0, 600.0)  # Å, |dfU − dfV|
    bfactor: tuple[float, float] = (40.0, 140.0)  # Å²
    ice_thickness: tuple[float, float] = (20.0, 60.0)  # nm
    particle_diameter: tuple[float, float] = (80.0, 250.0)  # Å
    particle_density: tuple[float, float] = (300.0, 1500.0)  # particles per µm²
    drift_length: tuple[float, float] = (12.0, 60.0)  # Å, bad drift
    residual_drift: tuple[float, float] = (0.0, 1.0)  # Å, left after motion correction

    def __post_init__(self) -> None:
        for group, probabilities in self.mix.items():
            if group not in GROUPS:
                raise SettingError(f"mix: unknown group {group!r} (groups: {', '.join(GROUPS)})")
            unknown = set(probabilities) - set(GROUPS[group])
            if unknown:
                raise SettingError(f"mix.{group}: unknown label(s) {sorted(unknown)}; allowed: {list(GROUPS[group])}")
            if any(p < 0 for p in probabilities.values()) or sum(probabilities.values()) <= 0:
                raise SettingError(f"mix.{group}: probabilities must be >= 0 and not all zero")
        missing = set(GROUPS) - set(self.mix)
        if missing:
            raise SettingError(f"mix: missing group(s) {sorted(missing)}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimulationConfig:
        """Read a YAML file whose keys are this class's fields (any subset)."""
        data: Any = read_yaml_mapping(path, "simulation settings file")
        try:
            reject_unknown_fields(cls, data, "simulation setting(s)")
        except ValueError as exc:
            raise SettingError(f"{path}: {exc}") from None
        if "mix" in data:
            data["mix"] = {**_default_mix(), **data["mix"]}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise SettingError(f"{path}: {exc}") from None
