"""Montage of simulated micrographs (one per label) and their power spectra, beside real ones.

Writes docs/simulation_montage.png. Usage:
    python scripts/simulation_montage.py [--realdata ../shared/realdata] [--out docs/simulation_montage.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from miffi.preprocess.config import PreprocessConfig  # noqa: E402
from miffi.preprocess.recipe import squares_to_tensor  # noqa: E402
from miffi.preprocess.squares import layout_for  # noqa: E402
from miffi.simulate.config import SimulationConfig, parse_detector  # noqa: E402
from miffi.simulate.scene import draw_scene, render  # noqa: E402

GOOD = {
    "film": "no_film",
    "drift": "no_crack_drift",
    "crystallinity": "not_crystalline",
    "contamination": "minor_contamination",
}
CASES = [
    ("good", {}),
    ("minor film", {"film": "minor_film"}),
    ("major film", {"film": "major_film"}),
    ("film", {"film": "film"}),
    ("drift", {"drift": "crack_drift_empty", "_kind": "drift"}),
    ("crack", {"drift": "crack_drift_empty", "_kind": "crack"}),
    ("empty hole", {"drift": "crack_drift_empty", "_kind": "empty"}),
    ("minor crystalline", {"crystallinity": "minor_crystalline"}),
    ("major crystalline", {"crystallinity": "major_crystalline"}),
    ("major contamination", {"contamination": "major_contamination"}),
]


def scene_for(case: dict, seed: int, detector):
    kind = case.pop("_kind", None)
    labels = {**GOOD, **case}
    config = SimulationConfig(bad_drift_kinds={kind: 1.0}) if kind else SimulationConfig()
    return draw_scene("montage", seed, detector, config, labels)


def channels(image: np.ndarray, apix: float) -> tuple[np.ndarray, np.ndarray]:
    layout = layout_for(image.shape, apix)
    square = image[:, : layout.side][None].astype(np.float32) - image.mean()
    tensor = squares_to_tensor(square, layout.crop, PreprocessConfig(), torch.device("cpu"))
    return tensor[0, 0].numpy(), tensor[0, 1].numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realdata")
    parser.add_argument("--out", type=Path, default=Path("docs/simulation_montage.png"))
    parser.add_argument("--detector", default="2048x2048@1.0")
    args = parser.parse_args()
    detector = parse_detector(args.detector)
    real = sorted((args.realdata / "micassess_labeled_png").glob("*/*.png"))[::5]
    cols = len(CASES)
    fig, axes = plt.subplots(3, cols, figsize=(2.0 * cols, 6.4))
    for i, (title, case) in enumerate(CASES):
        scene = scene_for(dict(case), 100 + i, detector)
        image, spectrum = channels(render(scene), detector.pixel_size)
        axes[0, i].imshow(image, cmap="gray")
        axes[0, i].set_title(title, fontsize=9)
        axes[1, i].imshow(spectrum, cmap="gray")
    for i in range(cols):
        for row in range(3):
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
        if i < len(real):
            axes[2, i].imshow(np.asarray(Image.open(real[i]).convert("L")), cmap="gray")
            axes[2, i].set_title("real: " + real[i].parent.name[1:].replace("_", " ")[:22], fontsize=7)
        else:
            axes[2, i].axis("off")
    axes[0, 0].set_ylabel("simulated image", fontsize=9)
    axes[1, 0].set_ylabel("power spectrum", fontsize=9)
    axes[2, 0].set_ylabel("real (MicAssess)", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
