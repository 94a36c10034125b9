"""Real-space metrics of the real MicAssess example micrographs, per human label.

The PNGs have no pixel size (they are downsampled, contrast-normalised 8-bit images),
so only the real-space metrics apply, with the image width taken as 4000 Å. Prints a
Markdown table (median and range per class) for docs/metrics.md.

Usage: python scripts/micassess_metrics.py [--realdata ../shared/realdata]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from miffi.preprocess.metrics import realspace_metrics

SHOWN = ("dark_fraction", "dark_count", "bright_fraction", "film_edge", "film_side_fraction")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realdata")
    args = parser.parse_args()
    rows = []
    for png in sorted((args.realdata / "micassess_labeled_png").glob("*/*.png")):
        image = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
        rows.append({"class": png.parent.name, **realspace_metrics(image, None)})
    table = pd.DataFrame(rows)
    print("| MicAssess class | n | " + " | ".join(SHOWN) + " |")
    print("|---|---|" + "---|" * len(SHOWN))
    for name, group in table.groupby("class"):
        cells = [f"{group[m].median():.3g} ({group[m].min():.3g}–{group[m].max():.3g})" for m in SHOWN]
        print(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
